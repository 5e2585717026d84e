"""CUB-200-2011 bird images labelled with their 312 binary attributes (multi-label)."""
import os.path as osp
from typing import List, Optional, Tuple

import numpy as np
from mmpretrain.registry import DATASETS

from .base import MultiLabelCLIPDataset, ParsedAnnotations
from .list_format import read_numbered_lines

CUB_SPLITS = ('train', 'test')
CUB_CLASS_NAMES = ('readable', 'raw')
CUB_CERTAINTIES = (1, 2, 3, 4)  # not visible, guessing, probably, definitely
LABEL_COLUMNS = 'image_id attribute_id is_present certainty_id'


def _numbered_pairs(path: str, what: str) -> List[Tuple[int, int, str]]:
    """``(line_no, int id, rest)`` of ``"<id> <rest>"`` lines; one-line errors."""
    out = []
    for line_no, line in read_numbered_lines(path, what):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f'{path}: line {line_no}: expected "<id> <value>", '
                             f'got {line!r}')
        out.append((line_no, int(parts[0]), parts[1].strip()))
    return out


def _check_ids(path: str, entries, what: str, consecutive: bool = False):
    seen = set()
    for expected, (line_no, idx, _) in enumerate(entries, 1):
        if idx in seen:
            raise ValueError(f'{path}: line {line_no}: {what} id {idx} listed twice')
        if consecutive and idx != expected:
            raise ValueError(f'{path}: line {line_no}: {what} id {idx}, expected '
                             f'{expected} (ids must run 1, 2, ... in order)')
        seen.add(idx)


def readable_attribute_name(raw: str) -> str:
    """``'has_bill_shape::curved_(up_or_down)'`` -> ``'curved (up or down) bill shape'``.

    The value first, then the part it describes: the words a caption would use, which
    is what CLIP's text tower has seen.
    """
    group, sep, value = raw.partition('::')
    if not sep:
        return raw.replace('_', ' ')
    if group.startswith('has_'):
        group = group[len('has_'):]
    return f"{value.replace('_', ' ')} {group.replace('_', ' ')}".strip()


def _line_of_row(path: str, row: int) -> int:
    """File line number (1-based) of the ``row``-th non-empty line (0-based)."""
    seen, line_no = -1, 0
    with open(path, encoding='utf-8', errors='replace') as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == row:
                    return line_no
    return line_no


def _first_malformed_line(path: str) -> str:
    """Describe the first line that is not 4+ whitespace-separated integers (slow path,
    only run once parsing has failed)."""
    with open(path, encoding='utf-8', errors='replace') as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4:
                return (f'line {line_no}: {len(fields)} fields, expected at least 4 '
                        f'({LABEL_COLUMNS} [time]): {line.strip()!r}')
            for name, token in zip(LABEL_COLUMNS.split(), fields):
                try:
                    value = int(token)
                except ValueError:
                    value = None
                if value is None or not -2**31 <= value < 2**31:
                    return (f'line {line_no}: {name} {token!r} is not an integer '
                            f'(32-bit): {line.strip()!r}')
    return 'unreadable content'


def read_attribute_labels(path: str) -> np.ndarray:
    """``image_attribute_labels.txt`` -> int32 (M, 4): image_id, attribute_id, is_present,
    certainty_id. Extra columns (the time, and the stray extra fields a few lines of the
    real file have) are ignored. One numpy parse: ~0.4 s for a generated full-size file
    (3,677,856 lines) on the 2-core dev machine when idle."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'CUB attribute label file not found: {path}')
    try:
        table = np.loadtxt(path, usecols=(0, 1, 2, 3), dtype=np.int32, ndmin=2,
                           comments=None, encoding='utf-8')
    except (ValueError, OverflowError):
        raise ValueError(f'{path}: {_first_malformed_line(path)}') from None
    if table.size == 0:
        raise ValueError(f'{path}: no attribute labels')
    return table


@DATASETS.register_module()
class CUB200Attributes(MultiLabelCLIPDataset):
    """CUB-200-2011 with the 312 attributes as classes (single-positive benchmarks).

    Layout of the official archive (``data_root`` = the ``CUB_200_2011`` folder)::

        images.txt                               "<image_id> <relative path>"
        train_test_split.txt                     "<image_id> <1 train | 0 test>"
        attributes/image_attribute_labels.txt    "<image_id> <attribute_id>
                                                  <is_present> <certainty_id> <time>"
        images/<class folder>/<file>.jpg
        ../attributes.txt                        "<attribute_id> <name>" (the archive
                                                  puts it beside CUB_200_2011/; some
                                                  copies have attributes/attributes.txt)

    Splits: ``'train'`` 5,994 images, ``'test'`` 5,794, in ``images.txt`` order.

    Label rule: an attribute is positive when ``is_present`` is 1 and negative
    otherwise, whatever the annotator's certainty: the rule of the single-positive
    CUB benchmark's data script (Cole et al., CVPR 2021, whose data code LargeLoss
    uses). ``min_certainty`` (2, 3 or 4)
    makes the entries annotated with a lower certainty unknown (-1) instead (1 = not
    visible, 2 = guessing, 3 = probably, 4 = definitely).

    Every (image, attribute) pair of the selected images must appear exactly once.

    Args:
        data_root (str): the ``CUB_200_2011`` folder.
        split (str): ``'train'`` or ``'test'``.
        ann_file (str): the attribute label file.
        images_file, split_file (str): ``images.txt`` and ``train_test_split.txt``.
        attributes_file (str | None): the attribute names; None looks for
            ``attributes/attributes.txt``, then ``attributes.txt``, then
            ``../attributes.txt`` (relative to ``data_root``).
        min_certainty (int): 1 (default: certainty ignored) .. 4.
        class_names (str): ``'readable'`` (``'curved (up or down) bill shape'``, for
            the text prompts) or ``'raw'`` (``'has_bill_shape::curved_(up_or_down)'``).
        **kwargs: options of :class:`MultiLabelCLIPDataset`; ``data_prefix``
            ``img_path`` defaults to ``images``.
    """

    def __init__(self, data_root: str = '', split: str = 'train',
                 ann_file: str = 'attributes/image_attribute_labels.txt',
                 images_file: str = 'images.txt',
                 split_file: str = 'train_test_split.txt',
                 attributes_file: Optional[str] = None, min_certainty: int = 1,
                 class_names: str = 'readable', data_prefix: Optional[dict] = None,
                 **kwargs):
        if split not in CUB_SPLITS:
            raise ValueError(f"CUB200Attributes: split must be 'train' or 'test', "
                             f'got {split!r}')
        if isinstance(min_certainty, bool) or min_certainty not in CUB_CERTAINTIES:
            raise ValueError(f'CUB200Attributes: min_certainty must be 1, 2, 3 or 4, got '
                             f'{min_certainty!r}')
        if class_names not in CUB_CLASS_NAMES:
            raise ValueError(f"CUB200Attributes: class_names must be 'readable' or "
                             f"'raw', got {class_names!r}")
        self.split = split
        self.images_file = images_file
        self.split_file = split_file
        self.attributes_file = attributes_file
        self.min_certainty = min_certainty
        self.class_names = class_names
        prefix = dict(img_path='images')
        prefix.update(data_prefix or {})
        super().__init__(data_root=data_root, ann_file=ann_file, data_prefix=prefix,
                         **kwargs)

    # ----------------------------------------------------------------- files
    def _attribute_names_path(self) -> str:
        if self.attributes_file is not None:
            return self.resolve_path(self.attributes_file)
        candidates = [self.resolve_path(p) for p in
                      ('attributes/attributes.txt', 'attributes.txt',
                       osp.join('..', 'attributes.txt'))]
        for path in candidates:
            if osp.isfile(path):
                return path
        raise FileNotFoundError(f'CUB attribute names not found; looked for '
                                f'{", ".join(candidates)} (set attributes_file)')

    def _read_attribute_names(self) -> List[str]:
        path = self._attribute_names_path()
        entries = _numbered_pairs(path, 'CUB attribute names')
        _check_ids(path, entries, 'attribute', consecutive=True)
        raw = [name for _, _, name in entries]
        if self.class_names == 'raw':
            return raw
        names = [readable_attribute_name(name) for name in raw]
        if len(set(names)) != len(names):  # a renaming must not merge two columns
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f'{path}: two attributes read as {dup!r}; use '
                             f"class_names='raw'")
        return names

    def _read_split_images(self) -> Tuple[np.ndarray, List[str], np.ndarray]:
        """Image ids and relative paths of ``self.split`` (images.txt order), and the
        ids of all listed images."""
        images_path = self.resolve_path(self.images_file)
        images = _numbered_pairs(images_path, 'CUB image list')
        _check_ids(images_path, images, 'image')
        if not images:
            raise ValueError(f'{images_path}: no images listed')
        split_path = self.resolve_path(self.split_file)
        is_train = {}
        for line_no, idx, value in _numbered_pairs(split_path, 'CUB train/test split'):
            if value not in ('0', '1'):
                raise ValueError(f'{split_path}: line {line_no}: is_training_image must '
                                 f'be 0 or 1, got {value!r}')
            if idx in is_train:
                raise ValueError(f'{split_path}: line {line_no}: image id {idx} listed '
                                 'twice')
            is_train[idx] = value == '1'
        want = self.split == 'train'
        ids, paths = [], []
        for line_no, idx, rel in images:
            if idx not in is_train:
                raise ValueError(f'{split_path}: image id {idx} (from {images_path} line '
                                 f'{line_no}) has no train/test entry')
            if is_train[idx] == want:
                ids.append(idx)
                paths.append(rel)
        all_ids = np.asarray([idx for _, idx, _ in images], dtype=np.int64)
        return np.asarray(ids, dtype=np.int64), paths, all_ids

    # --------------------------------------------------------------- labels
    def _label_matrix(self, image_ids: np.ndarray, num_attributes: int,
                      all_ids: np.ndarray) -> np.ndarray:
        path = self.ann_file
        table = read_attribute_labels(path)
        # contiguous columns: the checks below run several passes over each
        img, att, present, certainty = (np.ascontiguousarray(col) for col in table.T)

        def fail(bad: np.ndarray, why: str, nth: int = 0):
            row = int(np.flatnonzero(bad)[nth])
            raise ValueError(f'{path}: line {_line_of_row(path, row)}: {why} '
                             f'({" ".join(map(str, table[row]))})')

        listed = np.zeros(int(all_ids.max()) + 1, dtype=bool)
        listed[all_ids] = True
        in_range = ((img >= 1) & (img < len(listed)) & (att >= 1) &
                    (att <= num_attributes) & (present >= 0) & (present <= 1) &
                    (certainty >= 1) & (certainty <= 4))
        if not in_range.all():  # name the first problem (error path only)
            for bad, why in [
                    ((img < 1) | (img >= len(listed)), 'image_id not in the image list'),
                    ((att < 1) | (att > num_attributes),
                     f'attribute_id out of range 1..{num_attributes}'),
                    ((present != 0) & (present != 1), 'is_present must be 0 or 1'),
                    ((certainty < 1) | (certainty > 4), 'certainty_id must be 1..4')]:
                if bad.any():
                    fail(bad, why)
        if not listed[img].all():
            fail(~listed[img], 'image_id not in the image list')

        row_of = np.full(len(listed), -1, dtype=np.int32)
        row_of[image_ids] = np.arange(len(image_ids))
        rows = row_of[img]
        mine = np.flatnonzero(rows >= 0)          # lines of this split's images
        flat = rows[mine].astype(np.int64) * num_attributes + (att[mine] - 1)
        counts = np.bincount(flat, minlength=len(image_ids) * num_attributes)
        if counts.max() > 1:
            dup = int(np.flatnonzero(counts > 1)[0])
            fail(np.isin(np.arange(len(img)), mine[flat == dup]),
                 'repeats an (image_id, attribute_id) pair', nth=1)
        if counts.min() == 0:
            gap = int(np.flatnonzero(counts == 0)[0])
            raise ValueError(f'{path}: no label for image_id '
                             f'{image_ids[gap // num_attributes]}, attribute_id '
                             f'{gap % num_attributes + 1}')
        labels = np.empty(len(image_ids) * num_attributes, dtype=np.float32)
        labels[flat] = present[mine]
        if self.min_certainty > 1:
            labels[flat[certainty[mine] < self.min_certainty]] = -1
        return labels.reshape(len(image_ids), num_attributes)

    def load_annotations(self) -> ParsedAnnotations:
        classes = self._read_attribute_names()
        image_ids, rel_paths, all_ids = self._read_split_images()
        labels = self._label_matrix(image_ids, len(classes), all_ids)
        samples = [dict(img_path=self.image_path(rel), img_id=int(idx))
                   for idx, rel in zip(image_ids, rel_paths)]
        return ParsedAnnotations(classes, samples, labels)
