"""NUS-WIDE as a multi-label dataset: a simple list format and the official layout."""
import logging
import os.path as osp
from typing import Optional

import numpy as np
from mmengine.fileio import join_path
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS

from .base import MultiLabelCLIPDataset, ParsedAnnotations
from .list_format import (check_label_file_convention, read_class_names,
                          read_image_list, read_label_matrix, read_lines)


def read_concept_column(path: str, num_images: int) -> np.ndarray:
    """One official ``Labels_<concept>[_<split>].txt``: one 0/1 per line -> (N,)."""
    lines = read_lines(path, 'NUS-WIDE concept label')
    if len(lines) != num_images:
        raise ValueError(f'{path}: {len(lines)} lines but {num_images} images')
    column = np.empty(num_images, dtype=np.float32)
    for i, token in enumerate(lines):
        try:
            value = int(token)
        except ValueError:
            raise ValueError(f'{path}: line {i + 1}: {token!r} is not 0/1') from None
        if value not in (0, 1):
            # A stray value is reported in one official file: keep it unknown, loudly.
            print_log(f'{path}: line {i + 1}: value {value} is not 0/1; label set to '
                      f'unknown (-1)', logger='current', level=logging.WARNING)
            value = -1
        column[i] = value
    return column


@DATASETS.register_module()
class NUSWIDE(MultiLabelCLIPDataset):
    """NUS-WIDE (81 concepts, or 1006 = 925 tags + 81 concepts for zero-shot).

    Two layouts; give exactly one of ``label_file`` / ``label_dir``.

    **List format** (``label_file``)::

        ann_file      image list, one relative path per line
        label_file    label matrix, one row per image: C values 1/0 (-1 = unknown)
                      separated by spaces/tabs; with ``label_convention='mkt'``
                      1/-1 (0 = unknown), as MKT / BiAM / LESA write them
        classes_file  one class name per line, in column order (81 or 1006 names)

    **Official release** (``label_dir``)::

        ann_file      ImageList/TrainImagelist.txt (or TestImagelist.txt, Imagelist.txt);
                      Windows separators ("actor\\0001_2124494179.jpg") are converted
        classes_file  Concepts81.txt (the 81 concepts, one per line)
        label_dir     Groundtruth/TrainTestLabels, holding Labels_<concept>_<split>.txt
                      (one 0/1 per line, aligned with the image list); with
                      ``split=None`` the files are Labels_<concept>.txt
                      (Groundtruth/AllLabels with ImageList/Imagelist.txt)
        tag_file      optional NUS_WID_Tags/{Train,Test}_Tags1k.dat (0/1 matrix, one row
                      per image, 1000 columns) with tag_list_file NUS_WID_Tags/
                      TagList1k.txt: then the classes are the 925 tags that are not
                      concepts (TagList1k order) followed by the 81 concepts (labels from
                      the ground truth) = the 1006-label zero-shot setting.
                      ``label_set`` then picks the columns: ``'all'`` (1006, GZSL
                      test), ``'tags'`` (the 925 tags: zero-shot training) or
                      ``'concepts'`` (the 81 concepts: ZSL test).

    Images are joined with ``data_prefix['img_path']`` (e.g. ``Flickr``). Image-less
    rows are kept unless ``drop_no_positive=True`` (the usual ~150k/~100k protocol).

    Args:
        ann_file (str): image list.
        classes_file (str): class names (list format) or Concepts81.txt (official).
        label_file (str | None): label matrix of the list format.
        label_dir (str | None): per-concept label folder of the official layout.
        split (str | None): ``'Train'`` / ``'Test'`` suffix of the official label files.
        tag_file, tag_list_file (str | None): official 1k-tag matrix and names.
        label_set (str): with tag files, ``'all'``, ``'tags'`` or ``'concepts'``.
        label_convention (str): values of ``label_file``: ``'ours'`` (1/0/-1 =
            positive/negative/unknown) or ``'mkt'`` (1/-1/0). List format only.
        **kwargs: options of :class:`MultiLabelCLIPDataset`. Relative file paths are
            joined with ``data_root``.
    """

    def __init__(self, data_root: str = '', ann_file: str = '', classes_file: str = '',
                 label_file: Optional[str] = None, label_dir: Optional[str] = None,
                 split: Optional[str] = 'Train', tag_file: Optional[str] = None,
                 tag_list_file: Optional[str] = None, label_set: str = 'all',
                 label_convention: str = 'ours', **kwargs):
        if (label_file is None) == (label_dir is None):
            raise ValueError('NUSWIDE needs exactly one of label_file (list format) '
                             'and label_dir (official Groundtruth layout)')
        if (tag_file is None) != (tag_list_file is None):
            raise ValueError('NUSWIDE: tag_file and tag_list_file go together')
        if tag_file is not None and label_dir is None:
            raise ValueError('NUSWIDE: tag_file is for the official layout (label_dir)')
        if not classes_file:
            raise ValueError('NUSWIDE needs classes_file')
        if label_set not in ('all', 'tags', 'concepts'):
            raise ValueError(f"NUSWIDE label_set must be 'all', 'tags' or 'concepts', "
                             f'got {label_set!r}')
        if label_set != 'all' and tag_file is None:
            raise ValueError(f'NUSWIDE label_set={label_set!r} needs tag_file and '
                             'tag_list_file (the 1006-label setting)')
        self.label_convention = check_label_file_convention('NUSWIDE', label_convention,
                                                            label_file)
        self.label_set = label_set
        self.classes_file = classes_file
        self.label_file = label_file
        self.label_dir = label_dir
        self.split = split
        self.tag_file = tag_file
        self.tag_list_file = tag_list_file
        super().__init__(data_root=data_root, ann_file=ann_file, **kwargs)

    def load_annotations(self) -> ParsedAnnotations:
        rel_paths = read_image_list(self.ann_file)
        classes = read_class_names(self.resolve_path(self.classes_file))
        if self.label_file is not None:
            labels = read_label_matrix(self.resolve_path(self.label_file),
                                       len(rel_paths), len(classes), self.label_convention)
        else:
            classes, labels = self._load_official(classes, len(rel_paths))
        samples = [dict(img_path=self.image_path(p)) for p in rel_paths]
        return ParsedAnnotations(classes, samples, labels)

    def _load_official(self, concepts, num_images):
        label_dir = self.resolve_path(self.label_dir)
        if not osp.isdir(label_dir):
            raise FileNotFoundError(f'NUS-WIDE label folder not found: {label_dir}')
        suffix = f'_{self.split}' if self.split else ''
        labels = np.stack([
            read_concept_column(join_path(label_dir, f'Labels_{c}{suffix}.txt'), num_images)
            for c in concepts], axis=1)
        if self.tag_file is None:
            return concepts, labels
        tags = read_class_names(self.resolve_path(self.tag_list_file))
        tag_labels = read_label_matrix(self.resolve_path(self.tag_file),
                                       num_images, len(tags))
        concept_set = set(concepts)
        tag_columns = [j for j, tag in enumerate(tags) if tag not in concept_set]
        tag_names = [tags[j] for j in tag_columns]
        if self.label_set == 'concepts':
            return concepts, labels
        if self.label_set == 'tags':
            return tag_names, tag_labels[:, tag_columns]
        classes = tag_names + list(concepts)
        return classes, np.concatenate([tag_labels[:, tag_columns], labels], axis=1)
