"""Multi-label evaluation: mAP, CP/CR/CF1/OP/OR/OF1, P/R/F1@K, class subsets (ZSL/GZSL).

Importing this package registers the metrics into mmpretrain's ``METRICS``.
"""
from .base import MultiLabelBaseMetric
from .functional import (average_precision_per_class, check_scores_target,
                         mean_average_precision, precision_recall_at_k,
                         reduce_average_precision, threshold_metrics, topk_mask)
from .metrics import MultiLabelMAP, MultiLabelPRF, MultiLabelRecognitionMetric, TopKPRF
from .table import format_metrics_table

__all__ = [
    'average_precision_per_class', 'mean_average_precision', 'reduce_average_precision',
    'threshold_metrics', 'precision_recall_at_k', 'topk_mask', 'check_scores_target',
    'MultiLabelBaseMetric', 'MultiLabelMAP', 'MultiLabelPRF', 'TopKPRF',
    'MultiLabelRecognitionMetric', 'format_metrics_table'
]
