from .aggregation import dense_text_similarity, spatial_softmax
from .base_head import BasePairLogitHead, BasePromptHead, BaseSingleLogitHead
from .dualcoop import DualCoOpHead, class_specific_region_aggregation
from .dualcoop_pp import (DualCoOpPlusPlusHead, evidence_attention,
                          evidence_guided_aggregation, winner_take_all)
from .mkt import MKTTwoStreamHead, two_stream_scores
from .semantic_decoupling import (SemanticDecoupling, SemanticDecouplingHead,
                                  SemanticDecouplingPairHead)

__all__ = [
    'BasePromptHead', 'BasePairLogitHead', 'BaseSingleLogitHead', 'DualCoOpHead',
    'DualCoOpPlusPlusHead', 'class_specific_region_aggregation', 'dense_text_similarity',
    'evidence_attention', 'evidence_guided_aggregation', 'spatial_softmax',
    'winner_take_all', 'MKTTwoStreamHead', 'two_stream_scores', 'SemanticDecoupling',
    'SemanticDecouplingHead', 'SemanticDecouplingPairHead'
]
from .trm_ml import CategoryAwareRegionDecoder, TRMMLHead  # noqa: E402

__all__ += ['CategoryAwareRegionDecoder', 'TRMMLHead']
