"""Visual Genome VG-200 (SARB-style list files) as a multi-label dataset."""
from typing import Optional

import numpy as np
from mmpretrain.registry import DATASETS

from .base import MultiLabelCLIPDataset, ParsedAnnotations
from .list_format import (check_label_file_convention, parse_index_line,
                          read_class_names, read_image_list, read_label_matrix,
                          read_numbered_lines)


@DATASETS.register_module()
class VisualGenome200(MultiLabelCLIPDataset):
    """VG-200: Visual Genome images labelled with the 200 most frequent object classes.

    Files (relative paths are joined with ``data_root``)::

        classes_file  200 class names, one per line, in column order
        ann_file      either an image list (one relative path per line) used with
                      ``label_file`` (label matrix, one row of C values 1/0/-1 per
                      image, whitespace separated),
                      or, without ``label_file``, one image per line as
                      ``"<path> <idx> <idx> ..."`` with 0-based positive class indices
                      (every other class negative)

    Images are joined with ``data_prefix['img_path']`` (e.g. ``VG_100K``).

    Args:
        ann_file (str): image list or index-list file.
        classes_file (str): the class names.
        label_file (str | None): label matrix aligned with the image list.
        label_convention (str): values of ``label_file``: ``'ours'`` (1/0/-1 =
            positive/negative/unknown) or ``'mkt'`` (1/-1/0, MKT / BiAM / LESA).
        **kwargs: options of :class:`MultiLabelCLIPDataset`.
    """

    def __init__(self, data_root: str = '', ann_file: str = '', classes_file: str = '',
                 label_file: Optional[str] = None, label_convention: str = 'ours',
                 **kwargs):
        if not classes_file:
            raise ValueError('VisualGenome200 needs classes_file')
        self.label_convention = check_label_file_convention(
            'VisualGenome200', label_convention, label_file)
        self.classes_file = classes_file
        self.label_file = label_file
        super().__init__(data_root=data_root, ann_file=ann_file, **kwargs)

    def load_annotations(self) -> ParsedAnnotations:
        classes = read_class_names(self.resolve_path(self.classes_file))
        if self.label_file is not None:
            rel_paths = read_image_list(self.ann_file)
            labels = read_label_matrix(self.resolve_path(self.label_file),
                                       len(rel_paths), len(classes), self.label_convention)
        else:
            lines = read_numbered_lines(self.ann_file, 'VG-200 list')
            rel_paths = []
            labels = np.zeros((len(lines), len(classes)), dtype=np.float32)
            for row, (line_no, line) in enumerate(lines):
                path, indices = parse_index_line(
                    line, len(classes), f'{self.ann_file} line {line_no}')
                rel_paths.append(path)
                labels[row, indices] = 1
        samples = [dict(img_path=self.image_path(p)) for p in rel_paths]
        return ParsedAnnotations(classes, samples, labels)
