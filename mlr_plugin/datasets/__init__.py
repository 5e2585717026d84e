"""Multi-label datasets, label simulations and loading transforms (registers them)."""
from . import transforms  # noqa: F401  (registers LoadImageCV2)
from .base import MultiLabelCLIPDataset, ParsedAnnotations
from .coco import CocoMultiLabel
from .cub import CUB200Attributes
from .feature_cache import CachedFeatureDataset
from .generic import GenericMultiLabel
from .holdout import HoldOut
from .label_simulation import (LABEL_SIMULATIONS, AssumeNegative, HideClasses,
                               PartialLabels, SinglePositiveLabel,
                               build_label_simulations)
from .nus_wide import NUSWIDE
from .open_images import OpenImagesMultiLabel
from .sparse_labels import SparseLabels
from .splits import (COCO_CLASSES, COCO_SEEN_48, COCO_UNSEEN_17, COCO_ZSL_65,
                     VOC_CLASSES, get_class_split)
from .visual_genome import VisualGenome200
from .voc import VOCMultiLabel

__all__ = [
    'MultiLabelCLIPDataset', 'ParsedAnnotations', 'CocoMultiLabel', 'VOCMultiLabel',
    'CachedFeatureDataset',
    'NUSWIDE', 'VisualGenome200', 'GenericMultiLabel', 'LABEL_SIMULATIONS',
    'PartialLabels', 'SinglePositiveLabel', 'HideClasses', 'build_label_simulations',
    'COCO_CLASSES', 'COCO_SEEN_48', 'COCO_UNSEEN_17', 'COCO_ZSL_65', 'VOC_CLASSES',
    'get_class_split', 'CUB200Attributes', 'AssumeNegative', 'HoldOut',
    'OpenImagesMultiLabel', 'SparseLabels'
]
