"""Shared base of every multi-label dataset: class subsets, label simulation, filters.

A format file only parses its annotations into :class:`ParsedAnnotations`; this base
turns them into mmengine data infos::

    dict(img_path=str, gt_score=np.float32 (C,) in {1, 0, -1}[, img_id=...])

and sets ``metainfo['classes']`` (tuple of names in column order).
"""
import os.path as osp
from typing import Callable, List, NamedTuple, Optional, Sequence, Union

import numpy as np
from mmengine.fileio import join_path
from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset

from .holdout import build_holdout
from .image_check import check_image_files, resolve_check_mode
from .label_simulation import apply_label_simulations, build_label_simulations
from .list_format import check_label_values
from .seeding import sample_seed, seeded_rng
from .splits import get_class_split


class ParsedAnnotations(NamedTuple):
    """What a format parser returns.

    classes: all class names of the annotation, in column order.
    samples: one dict per image with ``img_path`` (full path) and optionally ``img_id``.
    labels:  float32 (N, C) matrix in {1, 0, -1}, rows aligned with ``samples``.
    """
    classes: Sequence[str]
    samples: List[dict]
    labels: np.ndarray


def resolve_class_subset(classes) -> Optional[tuple]:
    """``classes`` option -> None (keep all) or a tuple of names to keep, in order."""
    if classes is None:
        return None
    if isinstance(classes, str):
        return get_class_split(classes)
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f'classes must be None, a split name or a list of class names, '
                         f'got {classes!r}')
    if len(set(classes)) != len(classes):
        dup = next(c for c in classes if list(classes).count(c) > 1)
        raise ValueError(f'classes lists {dup!r} twice')
    if not classes:
        raise ValueError('classes is an empty list')
    return tuple(classes)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f'{name} must be True or False, got {value!r}')
    return bool(value)


class MultiLabelCLIPDataset(BaseDataset):
    """Base class of the multi-label datasets (mmengine lazy_init / pipeline semantics).

    Subclasses set their own attributes and then call ``super().__init__`` (loading may
    happen inside it), and implement :meth:`load_annotations`.

    Loading order: parse -> keep ``classes`` columns -> ``drop_no_positive`` ->
    ``label_simulation`` (in order) -> ``holdout`` -> ``drop_empty`` -> ``check_images``.

    Args:
        ann_file (str): the annotation file (joined with ``data_root`` if relative).
        classes (None | str | Sequence[str]): None keeps all classes; a list/tuple keeps
            those columns in the given order; a string names a built-in split
            (``'coco_seen48'``, ``'coco_unseen17'``, ``'coco_zsl65'``).
        label_simulation (None | dict | list[dict]): configs of ``LABEL_SIMULATIONS``
            (``PartialLabels``, ``SinglePositiveLabel``, ``AssumeNegative``,
            ``HideClasses``) applied in order
            to the whole (N, C) label matrix after loading.
        drop_empty (bool): drop images left with no known label (all -1) after the
            simulations. Default False: they stay (they add nothing to the loss).
        drop_no_positive (bool): drop images without any positive among the kept
            classes *before* the simulations (e.g. the NUS-WIDE protocol).
        holdout (None | dict): keep only one part of a seeded train/val division of
            the rows, e.g. ``dict(part='val', fraction=0.2, seed=1200)`` (the
            LargeLoss validation set; see ``holdout.HoldOut``). Applied after the
            simulations, which see the whole split.
        check_images (bool | str): check every image at load time, so a missing or
            corrupt file fails now (naming it and the annotation file) rather than
            when first sampled. ``True`` / ``'header'`` (default): the file exists and
            its header gives a size (~0.03 s per 1,000 images on the 2-core dev
            machine, warm cache); ``'exists'``: existence only (~0.005 s / 1,000);
            ``'decode'``: a full OpenCV decode (~1.7 s per 1,000 640 x 480 JPEGs);
            ``False``: no check. The cost is logged (see ``image_check``).
        **kwargs: ``data_root``, ``data_prefix``, ``pipeline``, ``test_mode``,
            ``lazy_init``, ``indices``, ``serialize_data``, ``metainfo``... as in
            :class:`mmpretrain.datasets.BaseDataset`.
    """

    def __init__(self,
                 ann_file: str = '',
                 classes: Union[None, str, Sequence[str]] = None,
                 label_simulation: Union[None, dict, Sequence[dict]] = None,
                 drop_empty: bool = False,
                 drop_no_positive: bool = False,
                 holdout: Optional[dict] = None,
                 check_images: Union[bool, str] = True,
                 metainfo: Optional[dict] = None,
                 **kwargs):
        self.class_subset = resolve_class_subset(classes)
        self.label_simulations: List[Callable] = build_label_simulations(label_simulation)
        self.drop_empty = _check_bool(drop_empty, 'drop_empty')
        self.drop_no_positive = _check_bool(drop_no_positive, 'drop_no_positive')
        self.holdout = build_holdout(holdout)
        self.check_images = check_images
        self._check_mode = resolve_check_mode(check_images)
        metainfo = dict(metainfo or {})
        if self.class_subset is not None:
            # Known before loading, so lazy_init datasets already expose the classes.
            metainfo['classes'] = self.class_subset
        super().__init__(ann_file=ann_file, metainfo=metainfo, **kwargs)

    # ----------------------------------------------------------- format interface
    def load_annotations(self) -> ParsedAnnotations:
        """Parse the annotation files into all classes, samples and labels."""
        raise NotImplementedError

    def resolve_path(self, path: Optional[str]) -> Optional[str]:
        """Join a secondary file (class list, label matrix...) with ``data_root``."""
        if path is None or osp.isabs(path) or not self.data_root:
            return path
        return join_path(self.data_root, path)

    def image_path(self, relative: str) -> str:
        """Full image path: ``data_prefix['img_path']`` joined with ``relative``."""
        prefix = self.data_prefix.get('img_path', '')
        return join_path(prefix, relative) if prefix else relative

    # ----------------------------------------------------------------- loading
    def load_data_list(self) -> List[dict]:
        classes, samples, labels = self.load_annotations()
        classes = tuple(classes)
        labels = np.asarray(labels, dtype=np.float32).reshape(len(samples), len(classes))
        check_label_values(labels, self.ann_file)
        self._check_not_empty(samples, 'has no images')

        if self.class_subset is not None:
            index = {name: i for i, name in enumerate(classes)}
            for name in self.class_subset:
                if name not in index:
                    raise ValueError(f'class {name!r} is not in {self.ann_file} '
                                     f'({len(classes)} classes)')
            labels = labels[:, [index[name] for name in self.class_subset]]
            classes = self.class_subset

        if self.drop_no_positive:
            samples, labels = self._keep_rows(samples, labels, (labels == 1).any(axis=1))
            self._check_not_empty(samples, 'has no image with a positive label')

        labels = apply_label_simulations(labels, classes, self.label_simulations)
        check_label_values(labels, f'{self.ann_file} after label_simulation')

        if self.holdout is not None:
            samples, labels = self._keep_rows(samples, labels,
                                              self.holdout.keep_mask(len(samples)))
            self._check_not_empty(samples, f'keeps no image in {self.holdout!r}')

        if self.drop_empty:
            samples, labels = self._keep_rows(samples, labels, (labels != -1).any(axis=1))
            self._check_not_empty(samples, 'has no image with a known label after '
                                  'label_simulation (drop_empty=True)')

        checked = ''
        if self._check_mode is not None:
            seconds = check_image_files((s['img_path'] for s in samples), self._check_mode,
                                        self.ann_file)
            checked = f', images checked ({self._check_mode}) in {seconds:.2f} s'

        self._metainfo['classes'] = classes
        known = float((labels != -1).mean())
        print_log(f'{type(self).__name__}: {len(samples)} images, {len(classes)} classes, '
                  f'{known:.1%} labels known{checked} ({self.ann_file})', logger='current')
        return [dict(sample, gt_score=labels[i].copy()) for i, sample in enumerate(samples)]

    @staticmethod
    def _keep_rows(samples, labels, keep):
        return [s for s, k in zip(samples, keep) if k], labels[keep]

    def _check_not_empty(self, samples, why):
        if len(samples) == 0:
            raise ValueError(f'{type(self).__name__}: {self.ann_file} {why}; '
                             f'the dataset is empty')

    # ---------------------------------------------------------------- sampling
    def __getitem__(self, idx: int) -> dict:
        """mmengine's ``__getitem__``; a :class:`SeededIndex` (from
        ``EpochSeededSampler``) seeds the augmentation from (seed, epoch, index) so it
        does not depend on the worker's RNG history. Plain ints: unchanged."""
        epoch = getattr(idx, 'epoch', None)
        if epoch is None:
            return super().__getitem__(idx)
        with seeded_rng(sample_seed(idx.seed, epoch, int(idx))):
            return super().__getitem__(int(idx))

    # ---------------------------------------------------------------- accessors
    def get_label_matrix(self) -> np.ndarray:
        """All labels, float32 (N, C) in {1, 0, -1}, in dataset order."""
        num_classes = len(self.metainfo['classes'])
        if len(self) == 0:
            return np.zeros((0, num_classes), dtype=np.float32)
        return np.stack([self.get_data_info(i)['gt_score'] for i in range(len(self))])

    def get_gt_labels(self) -> np.ndarray:
        """Same as :meth:`get_label_matrix` (N, C) (mmpretrain name)."""
        return self.get_label_matrix()

    def get_cat_ids(self, idx: int) -> List[int]:
        """Positive class indices of image ``idx`` (used by class-aware samplers)."""
        return np.flatnonzero(self.get_data_info(idx)['gt_score'] == 1).tolist()

    def extra_repr(self) -> List[str]:
        body = super().extra_repr()
        if self.label_simulations:
            body.append(f'Label simulation: \t{self.label_simulations}')
        if self.holdout is not None:
            body.append(f'Rows kept: \t{self.holdout}')
        return body
