"""Users' own multi-label data: a JSON or TXT/CSV list plus a class-name file."""
import csv
import os.path as osp

import numpy as np
from mmpretrain.registry import DATASETS

from .base import MultiLabelCLIPDataset, ParsedAnnotations
from .list_format import read_class_names, read_json, read_numbered_lines

_HEADER_NAMES = ('img_path', 'path', 'image', 'image_path')


class _ClassLookup:
    """Class name / index -> column, with errors naming the file and record."""

    def __init__(self, classes, ann_file):
        self.index = {name: j for j, name in enumerate(classes)}
        self.num_classes = len(classes)
        self.ann_file = ann_file

    def __call__(self, label, where: str, digits_are_indices: bool) -> int:
        if isinstance(label, bool):  # bool is an int: refuse it explicitly
            raise ValueError(f'{self.ann_file}: {where}: label {label!r} is not a class')
        if isinstance(label, str):
            if label in self.index:
                return self.index[label]
            if not (digits_are_indices and label.isdigit()):
                raise ValueError(f'{self.ann_file}: {where}: unknown class {label!r}')
            label = int(label)
        if isinstance(label, int):
            if not 0 <= label < self.num_classes:
                raise ValueError(f'{self.ann_file}: {where}: class index {label} out of '
                                 f'range [0, {self.num_classes})')
            return label
        raise ValueError(f'{self.ann_file}: {where}: label {label!r} is neither a class '
                         f'name nor an index')


@DATASETS.register_module()
class GenericMultiLabel(MultiLabelCLIPDataset):
    """A simple multi-label format for your own data.

    ``classes_file``: one class name per line (column order).

    ``ann_file`` as **JSON** (``.json``): a list of records::

        [{"img_path": "imgs/a.jpg", "labels": ["cat", 3], "unknown": ["dog"]},
         {"img_path": "imgs/b.jpg", "labels": [], "img_id": 7}, ...]

    ``labels`` are the positives (names, or 0-based indices as JSON integers);
    ``unknown`` (optional) the classes whose label is unknown (-1); every other class is
    negative. ``img_id`` is passed through when present.

    ``ann_file`` as **TXT/TSV** (tab separated) or **CSV** (``.csv``, quoted fields)::

        imgs/a.jpg<TAB>cat,3<TAB>dog          # path, positives, optional unknowns
        imgs/b.jpg                            # no positive: all negative

    Positives and unknowns are comma-separated names; a token that is not a class
    name but is all digits is a 0-based index. Blank lines, ``#`` comments and a
    header row (first field ``img_path``/``path``) are skipped.

    Image paths are joined with ``data_prefix['img_path']`` (then ``data_root``).

    Args:
        ann_file (str): the annotation list (.json, .txt, .tsv or .csv).
        classes_file (str): the class names (joined with ``data_root`` if relative).
        **kwargs: options of :class:`MultiLabelCLIPDataset`.
    """

    def __init__(self, data_root: str = '', ann_file: str = '', classes_file: str = '',
                 **kwargs):
        if not classes_file:
            raise ValueError('GenericMultiLabel needs classes_file')
        self.classes_file = classes_file
        super().__init__(data_root=data_root, ann_file=ann_file, **kwargs)

    def load_annotations(self) -> ParsedAnnotations:
        classes = read_class_names(self.resolve_path(self.classes_file))
        lookup = _ClassLookup(classes, self.ann_file)
        if osp.splitext(self.ann_file)[1].lower() == '.json':
            records = self._read_json(lookup)
        else:
            records = self._read_table(lookup)
        labels = np.zeros((len(records), len(classes)), dtype=np.float32)
        samples = []
        for row, (where, sample, positives, unknowns) in enumerate(records):
            both = set(positives) & set(unknowns)
            if both:
                raise ValueError(f'{self.ann_file}: {where}: class '
                                 f'{classes[min(both)]!r} is both positive and unknown')
            labels[row, positives] = 1
            labels[row, unknowns] = -1
            samples.append(sample)
        return ParsedAnnotations(classes, samples, labels)

    def _read_json(self, lookup):
        data = read_json(self.ann_file, list, 'annotation file (a list of records)')
        records = []
        for i, record in enumerate(data):
            where = f'record {i}'
            if not isinstance(record, dict) or 'img_path' not in record:
                raise ValueError(f'{self.ann_file}: {where} has no field "img_path"')
            where = f'record {i} ({record["img_path"]})'
            columns = []
            for field in ('labels', 'unknown'):
                value = record.get(field, [])
                if not isinstance(value, list):
                    raise ValueError(f'{self.ann_file}: {where}: "{field}" must be a list')
                columns.append([lookup(v, where, digits_are_indices=False) for v in value])
            sample = dict(img_path=self.image_path(record['img_path']))
            if 'img_id' in record:
                sample['img_id'] = record['img_id']
            records.append((where, sample, *columns))
        return records

    def _read_table(self, lookup):
        is_csv = osp.splitext(self.ann_file)[1].lower() == '.csv'
        records = []
        for line_no, line in read_numbered_lines(self.ann_file, 'annotation'):
            if line.startswith('#'):
                continue
            fields = next(csv.reader([line])) if is_csv else line.split('\t')
            fields = [f.strip() for f in fields]
            if not records and fields[0].lower() in _HEADER_NAMES:
                continue
            if len(fields) > 3:
                raise ValueError(f'{self.ann_file} line {line_no}: expected at most 3 '
                                 f'fields (path, positives, unknowns), got {len(fields)}')
            where = f'line {line_no} ({fields[0]})'
            columns = []
            for text in (fields[1:] + ['', ''])[:2]:
                names = [t.strip() for t in text.split(',') if t.strip()]
                columns.append([lookup(n, where, digits_are_indices=True) for n in names])
            records.append((where, dict(img_path=self.image_path(fields[0])), *columns))
        return records
