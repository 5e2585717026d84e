"""Registered multi-label metrics (mmpretrain ``METRICS``).

Every metric reads ``data_sample['pred_score']`` (C,) and ``data_sample['gt_score']``
(C,) in ``{1, 0, -1}`` and returns numbers in %. Ties are handled deterministically:
AP is tie-aware (tied scores form one operating point, as in
``sklearn.metrics.average_precision_score``, so the order of tied images does not
matter) and top-k predictions (``*_top<k>``, ``P@k``) break ties by class index (the
lower index wins). The three building blocks
(``_map_metrics``, ``_prf_metrics``, ``_topk_metrics``) are shared by the single-purpose
metrics and by :class:`MultiLabelRecognitionMetric`, which configs use as one entry.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmpretrain.registry import METRICS

from .base import MultiLabelBaseMetric, as_k_tuple
from .functional import (CF1_MODES, EMPTY_CLASS_MODES, average_precision_per_class,
                         precision_recall_at_k, reduce_average_precision,
                         threshold_metrics)


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')
    return value


def _check_number(value, name) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f'{name} must be a number, got {value!r}')
    return float(value)


def _map_metrics(scores, target, class_names, empty_class, per_class) -> dict:
    """``mAP`` and, with ``per_class``, ``AP/<class name>`` (NaN: no positive)."""
    aps = average_precision_per_class(scores, target)
    metrics = {'mAP': reduce_average_precision(aps, empty_class)}
    if per_class:
        metrics.update({f'AP/{name}': float(ap) * 100 for name, ap in zip(class_names, aps)})
    return metrics


def _prf_metrics(scores, target, thr, topk, cf1) -> dict:
    """CP..OF1 at ``thr`` plus ``CP_top<k>``.. for every k in ``topk``."""
    metrics = threshold_metrics(scores, target, thr=thr, cf1=cf1)
    for k in topk:
        top = threshold_metrics(scores, target, topk=k, cf1=cf1)
        metrics.update({f'{key}_top{k}': value for key, value in top.items()})
    return metrics


def _topk_metrics(scores, target, ks) -> dict:
    """``P@k, R@k, F1@k`` for every k in ``ks``."""
    metrics = {}
    for k in ks:
        metrics.update(precision_recall_at_k(scores, target, k))
    return metrics


@METRICS.register_module()
class MultiLabelMAP(MultiLabelBaseMetric):
    """Mean average precision ignoring ``-1`` labels.

    Args:
        empty_class (str): ``'exclude'`` (default) drops classes without a positive from
            the mean; ``'zero'`` counts them as AP 0 (DualCoOp / MKT numbers).
        per_class (bool): also report ``AP/<class name>`` (all classes only, not
            repeated per subset).
        class_subsets, collect_device, prefix, collect_dir: see
            :class:`MultiLabelBaseMetric`.
    """

    def __init__(self,
                 empty_class: str = 'exclude',
                 per_class: bool = False,
                 class_subsets: Optional[Dict[str, List[str]]] = None,
                 **kwargs) -> None:
        super().__init__(class_subsets=class_subsets, **kwargs)
        self.empty_class = _check_choice(empty_class, EMPTY_CLASS_MODES, 'empty_class')
        self.per_class = bool(per_class)

    def _compute(self, scores, target, class_names, is_subset=False) -> dict:
        return _map_metrics(scores, target, class_names, self.empty_class,
                            self.per_class and not is_subset)


@METRICS.register_module()
class MultiLabelPRF(MultiLabelBaseMetric):
    """CP, CR, CF1, OP, OR, OF1 at a score threshold and for top-k predictions.

    Args:
        thr (float): predict a class when ``pred_score > thr``.
        topk (int | Sequence[int] | None): also report ``CP_top<k>`` ... ``OF1_top<k>``
            with each image predicting its top-k classes.
        cf1 (str): ``'harmonic'`` (ML-GCN, default) or ``'mean'`` (DualCoOp).
    """

    def __init__(self,
                 thr: float = 0.5,
                 topk: Union[None, int, Sequence[int]] = (3, ),
                 cf1: str = 'harmonic',
                 class_subsets: Optional[Dict[str, List[str]]] = None,
                 **kwargs) -> None:
        super().__init__(class_subsets=class_subsets, **kwargs)
        self.thr = _check_number(thr, 'thr')
        self.topk = as_k_tuple(topk, 'topk')
        self.cf1 = _check_choice(cf1, CF1_MODES, 'cf1')

    def _compute(self, scores, target, class_names, is_subset=False) -> dict:
        return _prf_metrics(scores, target, self.thr, self.topk, self.cf1)


@METRICS.register_module()
class TopKPRF(MultiLabelBaseMetric):
    """Zero-shot P@K, R@K, F1@K (micro over all images, images without positives kept).

    Args:
        ks (int | Sequence[int]): the K values, e.g. ``(3, 5)`` or ``(10, 20)``.
    """

    def __init__(self,
                 ks: Union[int, Sequence[int]] = (3, 5),
                 class_subsets: Optional[Dict[str, List[str]]] = None,
                 **kwargs) -> None:
        super().__init__(class_subsets=class_subsets, **kwargs)
        self.ks = as_k_tuple(ks, 'ks')
        if not self.ks:
            raise ValueError('ks must name at least one K')

    def _compute(self, scores, target, class_names, is_subset=False) -> dict:
        return _topk_metrics(scores, target, self.ks)


@METRICS.register_module()
class MultiLabelRecognitionMetric(MultiLabelBaseMetric):
    """mAP + CP..OF1 (+ top-k variants) (+ P/R/F1@K) as one evaluator entry.

    Args:
        empty_class, per_class: as in :class:`MultiLabelMAP`.
        thr, topk, cf1: as in :class:`MultiLabelPRF`; ``topk=None`` skips the top-k
            CP..OF1 variants.
        ks (int | Sequence[int] | None): K values for P/R/F1@K; ``None`` skips them.
        drop_empty_rows (bool): score each class set (all classes and every
            ``class_subsets`` entry) only on the images with a positive among its
            classes; the COCO zero-shot protocol (ZSL on images with an unseen class,
            GZSL on images with one of the 65). Default False: all images.
        class_subsets, collect_device, prefix, collect_dir: see
            :class:`MultiLabelBaseMetric`.

    AP is tie-aware (tied scores are one threshold); top-k breaks ties by class index.
    """

    def __init__(self,
                 empty_class: str = 'exclude',
                 per_class: bool = False,
                 thr: float = 0.5,
                 topk: Union[None, int, Sequence[int]] = (3, ),
                 cf1: str = 'harmonic',
                 ks: Union[None, int, Sequence[int]] = None,
                 class_subsets: Optional[Dict[str, List[str]]] = None,
                 **kwargs) -> None:
        super().__init__(class_subsets=class_subsets, **kwargs)
        self.empty_class = _check_choice(empty_class, EMPTY_CLASS_MODES, 'empty_class')
        self.per_class = bool(per_class)
        self.thr = _check_number(thr, 'thr')
        self.topk = as_k_tuple(topk, 'topk')
        self.cf1 = _check_choice(cf1, CF1_MODES, 'cf1')
        self.ks = as_k_tuple(ks, 'ks')

    def _compute(self, scores, target, class_names, is_subset=False) -> dict:
        metrics = _map_metrics(scores, target, class_names, self.empty_class,
                               self.per_class and not is_subset)
        metrics.update(_prf_metrics(scores, target, self.thr, self.topk, self.cf1))
        metrics.update(_topk_metrics(scores, target, self.ks))
        return metrics
