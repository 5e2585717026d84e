from .aggregation import (class_specific_region_aggregation, dense_text_similarity,
                          evidence_attention, evidence_guided_aggregation,
                          spatial_softmax, winner_take_all)
from .base_pair_head import BasePairLogitHead
from .dualcoop import DualCoOpHead
from .dualcoop_pp import DualCoOpPlusPlusHead

__all__ = [
    'BasePairLogitHead', 'DualCoOpHead', 'DualCoOpPlusPlusHead',
    'class_specific_region_aggregation', 'dense_text_similarity', 'evidence_attention',
    'evidence_guided_aggregation', 'spatial_softmax', 'winner_take_all'
]
