"""Shared plumbing of the multi-label metrics: gather scores, resolve class subsets.

A subclass only implements ``_compute(scores, target, class_names) -> dict``; this base
collects ``pred_score`` / ``gt_score`` from the data samples, stacks them to ``(N, C)``
and runs ``_compute`` once on all classes and once per named class subset (keys
prefixed ``<subset>/``), so one GZSL test run also reports ZSL on the unseen classes.

With ``drop_empty_rows=True`` each class set is scored only on the images holding a
positive among *its* classes (the zero-shot reference protocol: ZSL on the val images
with an unseen class, GZSL on those with one of the 65 classes).

Memory (Open Images: 125k images x 7,586 classes, docs/scaling.md): each sample is kept
as a numpy score vector in ``score_dtype`` plus an int8 label vector (no tensors, no
float32 labels), which is also all that travels between processes when mmengine
collects the results; ``compute_metrics`` copies them into one (N, C) array each,
dropping every sample as it goes, and the metrics work in chunks.
"""
import ctypes
import ctypes.util
import functools
from abc import abstractmethod
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from .functional import row_chunks


def as_k_tuple(ks: Union[None, int, Sequence[int]], name: str) -> tuple:
    """Normalise ``None | int | sequence of int`` to a tuple of positive ints."""
    if ks is None:
        return ()
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = (ks, )
    if not isinstance(ks, (list, tuple)):
        raise ValueError(f'{name} must be an int or a sequence of ints, got {ks!r}')
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f'{name} must contain positive ints, got {k!r}')
    return tuple(int(k) for k in ks)


DATASET_SUBSET_PREFIX = 'dataset:'


def _check_class_subsets(class_subsets) -> Dict[str, List[str]]:
    if class_subsets is None:
        return {}
    if not isinstance(class_subsets, dict):
        raise ValueError(f'class_subsets must be a dict name -> list of class names or a split name, '
                         f'got {type(class_subsets).__name__}')
    checked = {}
    for name, names in class_subsets.items():
        if isinstance(names, str) and names.startswith(DATASET_SUBSET_PREFIX):
            # 'dataset:unseen': the dataset's metainfo['class_subsets']['unseen'],
            # resolved once the Runner hands over dataset_meta (Open Images splits)
            if not names[len(DATASET_SUBSET_PREFIX):]:
                raise ValueError(f'class_subsets[{name!r}]: {names!r} names no subset')
            checked[name] = names
            continue
        if isinstance(names, str):
            # a built-in split name, e.g. 'coco_unseen17' (configs hold no Python objects)
            from mlr_plugin.datasets.splits import get_class_split
            names = get_class_split(names)
        if not isinstance(name, str) or not name:
            raise ValueError(f'class_subsets key must be a non-empty str, got {name!r}')
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f'class_subsets[{name!r}] must be a non-empty list of '
                             f'class names, got {names!r}')
        if len(set(names)) != len(names):
            raise ValueError(f'class_subsets[{name!r}] has duplicate class names')
        checked[name] = list(names)
    return checked


SCORE_DTYPES = ('float32', 'float16')
_TRIM_EVERY = 4096  # samples stacked between two heap releases


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc's ``malloc_trim``; a no-op
    elsewhere). Per-sample vectors are small heap blocks: without this, the memory of
    the samples already stacked stays resident next to the stacked arrays."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim
    except (OSError, AttributeError):
        return None


def _labels_int8(target: torch.Tensor) -> np.ndarray:
    """(C,) labels in {1, 0, -1} as int8 (checked first: a cast must not round)."""
    bad = (target != 1) & (target != 0) & (target != -1)
    if bool(bad.any()):
        raise ValueError(f'gt_score must be in {{1, 0, -1}}, found {float(target[bad][0])!r}')
    return target.numpy().astype(np.int8)


def _to_vector(value, key: str) -> torch.Tensor:
    """Detached float32 CPU view (or copy) of a per-sample vector."""
    tensor = torch.as_tensor(value).detach().to('cpu', torch.float32)
    if tensor.dim() != 1:
        raise ValueError(f'data_sample[{key!r}] must be a (C,) vector, '
                         f'got shape {tuple(tensor.shape)}')
    return tensor


class MultiLabelBaseMetric(BaseMetric):
    """Base of the registered multi-label metrics.

    Args:
        class_subsets (dict[str, list[str] | str], optional): extra evaluations on a
            subset of the columns, e.g. ``dict(zsl=[...17 unseen names...])`` gives
            ``zsl/mAP``. Names are looked up in ``dataset_meta['classes']``. A string
            value is a built-in split (``'coco_unseen17'``) or ``'dataset:<key>'``: the
            names in the dataset's ``metainfo['class_subsets'][key]`` (Open Images).
        drop_empty_rows (bool): for every evaluated class set (all classes, and each
            entry of ``class_subsets``), drop the images without a positive (``1``)
            among that set's classes before computing its metrics (COCO/NUS-WIDE
            zero-shot protocol of the reference code). Default False: every image.
        score_dtype (str): ``'float32'`` (default, exact) or ``'float16'``: how the
            scores are kept until the end of the evaluation. float16 halves their memory
            (Open Images: 1.9 GB instead of 3.8 GB of scores); scores that round to the
            same float16 then tie (measured effect in docs/scaling.md).
        collect_device, prefix, collect_dir: as in :class:`mmengine.evaluator.BaseMetric`.
            Without ``prefix`` the keys are bare (``mAP``, ``CF1``, ``zsl/P@3``).
    """
    # '' instead of None: bare keys, and no "prefix is not set" warning from mmengine.
    default_prefix: Optional[str] = ''

    def __init__(self,
                 class_subsets: Optional[Dict[str, List[str]]] = None,
                 drop_empty_rows: bool = False,
                 score_dtype: str = 'float32',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        self.class_subsets = _check_class_subsets(class_subsets)
        if not isinstance(drop_empty_rows, (bool, np.bool_)):
            raise ValueError(f'drop_empty_rows must be True or False, got {drop_empty_rows!r}')
        self.drop_empty_rows = bool(drop_empty_rows)
        if score_dtype not in SCORE_DTYPES:
            raise ValueError(f'score_dtype must be one of {SCORE_DTYPES}, got {score_dtype!r}')
        self.score_dtype = np.dtype(score_dtype)
        self._subset_index_cache = None

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        # Resolve subsets as soon as the Runner hands us the classes: a typo in a
        # config fails before the whole test set has been run.
        self._dataset_meta = dataset_meta
        self._subset_index_cache = None
        if self.class_subsets and dataset_meta is not None:
            self._subset_indices(self._class_names(None))

    # ----------------------------------------------------------------- process
    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each sample's ``pred_score`` (C,) (as ``score_dtype``) and ``gt_score``
        (C,) (as int8) in numpy arrays on CPU.

        ``gt_score`` holds ``1 / 0 / -1``; samples that only carry mmpretrain's
        ``gt_label`` (positive indices) are turned into a 0/1 vector of length C.
        Samples with ``pred_streams`` (S, C) (heads whose scores depend on the classes
        scored together, MKT) also keep each class subset's re-fused scores.
        """
        for sample in data_samples:
            if sample.get('pred_score') is None:
                raise ValueError("data_sample has no 'pred_score'")
            score = _to_vector(sample.get('pred_score'), 'pred_score')
            if sample.get('gt_score') is not None:
                target = _to_vector(sample.get('gt_score'), 'gt_score')
            elif sample.get('gt_label') is not None:
                target = torch.zeros_like(score)
                target[torch.as_tensor(sample.get('gt_label')).long().cpu()] = 1
            else:
                raise ValueError("data_sample has neither 'gt_score' nor 'gt_label'")
            if target.shape != score.shape:
                raise ValueError(f'gt_score has {target.numel()} classes but pred_score '
                                 f'has {score.numel()}')
            with np.errstate(over='ignore'):  # reported below, in one line
                stored = score.numpy().astype(self.score_dtype)  # always a copy
            if not np.isfinite(stored).all():
                beyond = bool(torch.isfinite(score).all())  # finite, but not as float16
                raise ValueError('pred_score has NaN or inf' + (
                    f' as {self.score_dtype} (use score_dtype=\'float32\')' if beyond else ''))
            result = dict(pred_score=stored, gt_score=_labels_int8(target))
            if sample.get('pred_streams') is not None and self.class_subsets:
                result['subset_scores'] = self._subset_scores_from_streams(
                    sample.get('pred_streams'), score.numel())
            self.results.append(result)

    def _subset_scores_from_streams(self, streams, num_classes: int) -> Dict[str, np.ndarray]:
        """Each subset's scores from a sample's raw ``pred_streams`` (S, C): every stream
        L2-normalised across the subset's classes, then averaged (MKT's ZSL scoring;
        mlr_plugin.models.heads.mkt.fuse_streams). Only these columns are kept."""
        streams = torch.as_tensor(streams).detach().float().cpu()
        if streams.dim() != 2 or streams.shape[1] != num_classes:
            raise ValueError(f'pred_streams must be (streams, {num_classes}), got shape '
                             f'{tuple(streams.shape)}')
        if self._subset_index_cache is None:
            self._subset_index_cache = {
                name: torch.as_tensor(index, dtype=torch.long) for name, index in
                self._subset_indices(self._class_names(num_classes)).items()}
        from mlr_plugin.models.heads.mkt import fuse_streams  # the head's rule, once
        out = {}
        for name, index in self._subset_index_cache.items():
            out[name] = fuse_streams(streams[:, index]).numpy().astype(self.score_dtype)
            if not np.isfinite(out[name]).all():
                raise ValueError(f'pred_streams give NaN or inf scores on '
                                 f'class_subsets[{name!r}] (a stream is all zero there)')
        return out

    # ----------------------------------------------------------------- compute
    def compute_metrics(self, results: list) -> dict:
        """Stack the results to ``(N, C)`` and compute all + per-subset metrics."""
        if not results:
            raise ValueError(f'{type(self).__name__}: no results to evaluate')
        num_classes = {np.size(r['pred_score']) for r in results}
        if len(num_classes) != 1:
            raise ValueError(f'pred_score lengths differ between samples: {sorted(num_classes)}')
        if results is not self.results:
            # mmengine passes a collected copy of the list (same arrays in one process):
            # our own references go now, so each sample is freed once it is stacked
            self.results.clear()
        refused = {subset: np.stack([r['subset_scores'][subset] for r in results])
                   for subset in (results[0].get('subset_scores') or {})}
        if refused and not all('subset_scores' in r for r in results):
            raise ValueError('pred_streams: some samples have them and some do not')
        scores, target = self._stack(results, num_classes.pop())
        class_names = self._class_names(scores.shape[1])

        metrics = self._compute(*self._rows(scores, target, 'all classes'), class_names)
        for subset, index in self._subset_indices(class_names).items():
            # scores that depend on the class set (pred_streams) are re-fused per subset
            sub_scores = refused[subset] if subset in refused else scores[:, index]
            sub_scores, sub_target = self._rows(sub_scores, target[:, index],
                                                f'class_subsets[{subset!r}]')
            sub_metrics = self._compute(sub_scores, sub_target,
                                        [class_names[i] for i in index], is_subset=True)
            metrics.update({f'{subset}/{key}': value for key, value in sub_metrics.items()})
        # summary numbers first, the long per-class list (``AP/<name>``) last.
        return dict(sorted(metrics.items(), key=lambda item: item[0].startswith('AP/')))

    def _stack(self, results: list, num_classes: int):
        """(N, C) scores and int8 labels; each result is dropped once copied, so the
        peak is one copy of the data, not two."""
        scores = np.empty((len(results), num_classes), dtype=self.score_dtype)
        target = np.empty((len(results), num_classes), dtype=np.int8)
        for i, result in enumerate(results):
            scores[i] = result['pred_score']
            target[i] = result['gt_score']
            results[i] = None
            if i % _TRIM_EVERY == _TRIM_EVERY - 1:
                _release_free_heap()
        _release_free_heap()
        return scores, target

    def _rows(self, scores: np.ndarray, target: np.ndarray, what: str):
        """The rows one class set is scored on (all, or those with a positive)."""
        if not self.drop_empty_rows:
            return scores, target
        keep = np.concatenate([(target[rows] == 1).any(axis=1)  # no (N, C) bool mask
                               for rows in row_chunks(*target.shape)])
        if not keep.any():
            raise ValueError(f'{type(self).__name__}: drop_empty_rows=True leaves no image '
                             f'for {what} (no image has a positive among its classes)')
        return scores[keep], target[keep]

    @abstractmethod
    def _compute(self, scores: np.ndarray, target: np.ndarray, class_names: List[str],
                 is_subset: bool = False) -> dict:
        """Metrics for ``scores`` / ``target`` ``(N, C')`` with ``C'`` class names."""

    # ----------------------------------------------------------------- classes
    def _class_names(self, num_classes: Optional[int]) -> List[str]:
        """Class names from ``dataset_meta['classes']``; index strings without them."""
        classes = (self.dataset_meta or {}).get('classes')
        if classes is None:
            if self.class_subsets:
                raise ValueError("class_subsets needs dataset_meta['classes'], "
                                 'which the dataset did not provide')
            return [str(i) for i in range(num_classes or 0)]
        classes = [str(name) for name in classes]
        if num_classes is not None and len(classes) != num_classes:
            raise ValueError(f"dataset_meta['classes'] has {len(classes)} names but "
                             f'pred_score has {num_classes} classes')
        return classes

    def _dataset_subset(self, subset: str, key: str) -> List[str]:
        """Class names of ``dataset_meta['class_subsets'][key]``."""
        subsets = (self.dataset_meta or {}).get('class_subsets') or {}
        if key not in subsets:
            raise ValueError(f'class_subsets[{subset!r}]: the dataset defines no class '
                             f'subset {key!r} (it has {sorted(subsets)})')
        return list(subsets[key])

    def _subset_indices(self, class_names: List[str]) -> Dict[str, List[int]]:
        position = {name: i for i, name in enumerate(class_names)}
        indices = {}
        for subset, names in self.class_subsets.items():
            if isinstance(names, str):
                names = self._dataset_subset(subset, names[len(DATASET_SUBSET_PREFIX):])
            missing = [name for name in names if name not in position]
            if missing:
                raise ValueError(f'class_subsets[{subset!r}]: unknown class name '
                                 f'{missing[0]!r} (not in dataset classes)')
            indices[subset] = [position[name] for name in names]
        return indices
