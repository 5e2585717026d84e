"""Open Images image-level labels (v4 2018_04 .. v7 CSV layout) for open-vocabulary
multi-label recognition (MKT / BiAM / LESA protocol: 7,186 seen, 400 unseen classes).

Files (see docs/protocols.md, "Open Images")::

    ann_file             <split>-annotations-human-imagelabels.csv:
                         ImageID,Source,LabelName,Confidence  (header optional)
                         Confidence 1 = positive, 0 = negative (human-verified absent);
                         an (image, class) pair without a row is unknown (-1).
    class_desc_file      class-descriptions.csv (v4, no header) or
                         oidv6/oidv7-class-descriptions.csv (header LabelName,DisplayName)
    seen_classes_file    one LabelName (MID) per line, e.g. 2018_04 classes-trainable.txt
    unseen_classes_file  one LabelName per line (the 400 unseen classes), or the
                         protocol's unseen_labels.pkl (a pickled sequence of MIDs, read
                         by a restricted unpickler) together with
    unseen_index_file    top_400_unseen.csv: no header, first column = row indices into
                         the pickled sequence; the unseen classes in that order
    images               <data_prefix.img_path>/<ImageID><image_ext>

Scale: labels are parsed in one streaming pass (csv module, no pandas) into a CSR
:class:`SparseLabels`; ImageIDs are kept once, as one fixed-width bytes array, and image
paths are built on access. Nothing is held per image as a Python object.
"""
import copy
import csv
import hashlib
import json
import logging
import os
import os.path as osp
import pickle
import re
import time
from array import array
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine import fileio
from mmengine.dataset import force_full_init
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS

from ..fileio import atomic_open
from .base import MultiLabelCLIPDataset, _check_bool
from .image_check import check_image_files
from .sparse_labels import SparseLabels

CLASS_SUBSETS = ('all', 'seen', 'unseen')
_CONFIDENCE = {'1': 1, '0': 0, '1.0': 1, '0.0': 0}
_RUN_CHUNK = 1 << 20  # image-id runs turned into one numpy bytes array at a time


def _open_csv(path: str, what: str):
    if not osp.isfile(path):
        raise FileNotFoundError(f'Open Images {what} file not found: {path}')
    return open(path, newline='', encoding='utf-8-sig')  # a BOM is not data


def read_class_descriptions(path: str) -> Dict[str, str]:
    """``LabelName,DisplayName`` rows -> ordered dict MID -> display name.

    The first row is skipped when it is the header ``LabelName,DisplayName`` (v6/v7
    files); v4's ``class-descriptions.csv`` has none.
    """
    names: Dict[str, str] = {}
    with _open_csv(path, 'class-description') as f:
        reader = csv.reader(f)
        for row in reader:
            if reader.line_num == 1 and [c.strip().lower() for c in row[:2]] == \
                    ['labelname', 'displayname']:
                continue
            if not row or not ''.join(row).strip():
                continue
            if len(row) < 2:
                raise ValueError(f'{path}: line {reader.line_num}: expected '
                                 f'LabelName,DisplayName, got {row!r}')
            mid, name = row[0].strip(), row[1].strip()
            if mid in names:
                raise ValueError(f'{path}: line {reader.line_num}: LabelName {mid!r} '
                                 'is listed twice')
            names[mid] = name
    if not names:
        raise ValueError(f'{path}: no classes')
    return names


def check_label_names(mids: Sequence[str], where: Sequence[str],
                      vocabulary: Dict[str, str]) -> List[str]:
    """``mids`` as a list after checking that each is in the class descriptions and
    none comes twice; ``where[k]`` says where ``mids[k]`` was read (for the error)."""
    first: Dict[str, str] = {}
    for mid, place in zip(mids, where):
        if mid not in vocabulary:
            raise ValueError(f'{place}: LabelName {mid!r} is not in the class descriptions')
        if mid in first:
            raise ValueError(f'{place}: LabelName {mid!r} is listed twice (also at '
                             f'{first[mid]})')
        first[mid] = place
    return list(mids)


def read_label_name_list(path: str, vocabulary: Dict[str, str]) -> List[str]:
    """One LabelName (MID) per line (a CSV line's first field); each must be in the
    class descriptions, none twice."""
    mids, where = [], []
    with _open_csv(path, 'class-list') as f:
        for line_no, line in enumerate(f, 1):
            mid = line.split(',', 1)[0].strip()
            if mid:
                mids.append(mid)
                where.append(f'{path}: line {line_no}')
    if not mids:
        raise ValueError(f'{path}: no classes')
    return check_label_names(mids, where, vocabulary)


def _numpy_pickle_globals() -> Dict[Tuple[str, str], object]:
    """The globals numpy's own pickles of a string / object array name, under both
    module spellings (``numpy.core`` before numpy 2, ``numpy._core`` since)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 1.26 has no numpy._core
        from numpy.core import multiarray, numeric
    import _codecs
    allowed = {('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype,
               # protocol 2 stores bytes as _codecs.encode(str, 'latin1')
               ('_codecs', 'encode'): _codecs.encode}
    for core in ('numpy.core', 'numpy._core'):
        allowed[core + '.multiarray', '_reconstruct'] = multiarray._reconstruct
        allowed[core + '.multiarray', 'scalar'] = multiarray.scalar  # np.str_ items
        allowed[core + '.numeric', '_frombuffer'] = numeric._frombuffer  # protocol 5
    return allowed


class RefusedPickleGlobal(pickle.UnpicklingError, ValueError):
    """A pickle names a global that a list / array of strings never needs."""


class _LabelListUnpickler(pickle.Unpickler):
    """Unpickles a list / tuple of str or a numpy str / bytes / object array and
    nothing else: every other global (the only way a pickle reaches code) is refused
    before anything is called."""

    def __init__(self, file, path: str):
        # latin1: arrays pickled by Python 2 carry their raw buffer as a py2 str
        super().__init__(file, encoding='latin1')
        self.path = path
        self.allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str):
        found = self.allowed.get((module, name))
        if found is None:
            raise RefusedPickleGlobal(
                f'{self.path}: refused global {module}.{name} (only a list of str or a '
                'numpy string array is read from this pickle)')
        return found

    def persistent_load(self, pid):
        raise RefusedPickleGlobal(f'{self.path}: refused persistent id {pid!r}')


def _as_label_name(item, path: str, k: int) -> str:
    if isinstance(item, (bytes, np.bytes_)):
        try:
            item = item.decode('ascii')
        except UnicodeDecodeError:
            raise ValueError(f'{path}: entry {k} {item!r} is not ASCII') from None
    if not isinstance(item, str) or not item.strip():
        raise ValueError(f'{path}: entry {k} is {item!r}; expected a non-empty LabelName '
                         'string')
    return str(item.strip())


def read_pickled_label_names(path: str) -> List[str]:
    """The MIDs of a pickled 1-D sequence (list / tuple of str, numpy str / bytes /
    object array), read with :class:`_LabelListUnpickler` (never plain pickle.load)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'Open Images unseen-label pickle not found: {path}')
    with open(path, 'rb') as f:
        try:
            data = _LabelListUnpickler(f, path).load()
        except RefusedPickleGlobal:
            raise
        except Exception as err:  # truncated / not a pickle / bad reduce arguments
            reason = ' '.join(f'{type(err).__name__}: {err}'.split())
            raise ValueError(f'{path}: not a readable pickle ({reason})') from None
    if isinstance(data, np.ndarray):
        if data.ndim != 1 or data.dtype.kind not in 'USO':
            raise ValueError(f'{path}: expected a 1-D array of LabelName strings, got '
                             f'shape {data.shape} dtype {data.dtype}')
        data = data.tolist()
    elif not isinstance(data, (list, tuple)):
        raise ValueError(f'{path}: expected a list of LabelName strings, got '
                         f'{type(data).__name__}')
    if not data:
        raise ValueError(f'{path}: no LabelNames')
    return [_as_label_name(item, path, k) for k, item in enumerate(data)]


_INTEGER = re.compile(r'[+-]?[0-9]+')


def read_row_indices(path: str, size: int) -> List[Tuple[int, int]]:
    """(line, index) pairs of a header-less CSV whose first column holds distinct
    integers in ``[0, size)`` (other columns ignored, blank lines skipped)."""
    pairs: List[Tuple[int, int]] = []
    first_line: Dict[int, int] = {}
    with _open_csv(path, 'index') as f:
        reader = csv.reader(f)
        for row in reader:
            if not row or not ''.join(row).strip():
                continue
            line, text = reader.line_num, row[0].strip()
            if not _INTEGER.fullmatch(text):
                raise ValueError(f'{path}: line {line}: {text!r} is not an integer index')
            index = int(text)
            if not 0 <= index < size:
                raise ValueError(f'{path}: line {line}: index {index} is out of range for '
                                 f'{size} pickled LabelNames')
            if index in first_line:
                raise ValueError(f'{path}: line {line}: index {index} repeats line '
                                 f'{first_line[index]}')
            first_line[index] = line
            pairs.append((line, index))
    if not pairs:
        raise ValueError(f'{path}: no indices')
    return pairs


def read_indexed_label_names(pickle_file: str, index_file: str,
                             vocabulary: Dict[str, str]) -> List[str]:
    """The protocol's unseen classes: ``unseen_labels[i] for i in top_400_unseen``
    (in index-file order), each in the class descriptions, none twice."""
    pool = read_pickled_label_names(pickle_file)
    pairs = read_row_indices(index_file, len(pool))
    return check_label_names(
        [pool[i] for _, i in pairs],
        [f'{index_file}: line {line} (entry {i} of {pickle_file})' for line, i in pairs],
        vocabulary)


def _is_pickle(path: Optional[str]) -> bool:
    return path is not None and str(path).lower().endswith(('.pkl', '.pickle'))


def _header_columns(row: Sequence[str]) -> Optional[Tuple[int, int, int]]:
    """(ImageID, LabelName, Confidence) positions from a header row; None: no header."""
    names = [c.strip() for c in row]
    if not names or names[0] != 'ImageID':
        return None
    try:
        return names.index('ImageID'), names.index('LabelName'), names.index('Confidence')
    except ValueError:
        raise ValueError(f'header {row!r} lacks ImageID, LabelName or Confidence') from None


def read_image_labels(path: str, column_of: Dict[str, int],
                      vocabulary) -> Tuple[np.ndarray, SparseLabels, dict]:
    """Stream an image-level label CSV into sorted ImageIDs + CSR labels.

    Args:
        path: the CSV (``ImageID,Source,LabelName,Confidence``; header optional).
        column_of: LabelName -> column of the classes being loaded.
        vocabulary: every valid LabelName (rows of valid classes outside
            ``column_of`` are skipped; any other LabelName is an error).

    Returns:
        (ImageIDs as a sorted ``S<n>`` array, labels with one row per ImageID,
        dict(rows, skipped, conflicts)). Every ImageID of the file is kept, also one
        whose rows are all skipped (its labels are then all unknown).
    """
    rows, cols, vals = array('i'), array('i'), array('b')
    run_chunks, runs = [], []
    prev, run = None, -1
    skipped = 0
    with _open_csv(path, 'image-label') as f:
        reader = csv.reader(f)
        id_col, mid_col, conf_col = 0, 2, 3
        for row in reader:
            if reader.line_num == 1:
                try:
                    header = _header_columns(row)
                except ValueError as err:
                    raise ValueError(f'{path}: line 1: {err}') from None
                if header is not None:
                    id_col, mid_col, conf_col = header
                    continue
            try:
                image_id, mid, conf = row[id_col], row[mid_col], row[conf_col]
            except IndexError:
                if not row:
                    continue
                raise ValueError(f'{path}: line {reader.line_num}: expected ImageID,Source,'
                                 f'LabelName,Confidence, got {row!r}') from None
            if image_id != prev:  # the official files are grouped by ImageID: one run each
                prev = image_id
                run += 1
                runs.append(image_id)
                if len(runs) == _RUN_CHUNK:
                    run_chunks.append(_as_bytes(runs, path))
                    runs = []
            col = column_of.get(mid)
            if col is None:
                if mid not in vocabulary:
                    raise ValueError(f'{path}: line {reader.line_num}: LabelName {mid!r} '
                                     'is not in the class descriptions')
                skipped += 1
                continue
            value = _CONFIDENCE.get(conf)
            if value is None:
                raise ValueError(f'{path}: line {reader.line_num}: Confidence {conf!r} is '
                                 'not 0 or 1 (only verified labels are supported)')
            rows.append(run)
            cols.append(col)
            vals.append(value)
    if runs:
        run_chunks.append(_as_bytes(runs, path))
    if not run_chunks:
        raise ValueError(f'{path}: no label rows')
    run_ids = np.concatenate(run_chunks)
    image_ids, image_of_run = np.unique(run_ids, return_inverse=True)
    del run_ids, run_chunks
    row_index = image_of_run.astype(np.int32)[np.frombuffer(rows, dtype=np.int32)]
    labels, conflicts = SparseLabels.from_entries(
        row_index, np.frombuffer(cols, dtype=np.int32), np.frombuffer(vals, dtype=np.int8),
        image_ids.size, len(column_of))
    stats = dict(rows=len(rows) + skipped, skipped=skipped, conflicts=conflicts)
    return image_ids, labels, stats


def _as_bytes(ids: List[str], path: str) -> np.ndarray:
    try:
        return np.array([i.encode('ascii') for i in ids])
    except UnicodeEncodeError:
        bad = next(i for i in ids if not i.isascii())
        raise ValueError(f'{path}: ImageID {bad!r} is not ASCII') from None


CACHE_FORMAT = 'mlr_plugin.open_images.v1'


def _cache_signature(ann_file: str, desc_file: str, mids: Sequence[str]) -> str:
    """What a parse depends on: both files (path, size, mtime) and the class list."""
    files = []
    for path in (ann_file, desc_file):
        st = os.stat(path)
        files.append([osp.abspath(path), st.st_size, st.st_mtime_ns])
    classes = hashlib.sha1('\n'.join(mids).encode()).hexdigest()
    return json.dumps(dict(format=CACHE_FORMAT, files=files, classes=classes))


def save_label_cache(path: str, signature: str, image_ids: np.ndarray,
                     labels: SparseLabels, stats: dict) -> None:
    """Write a parse result as one .npz (plain arrays, no pickle), atomically."""
    with atomic_open(path, 'wb') as f:
        np.savez(f, signature=np.array(signature), image_ids=image_ids,
                 indptr=labels.indptr, indices=labels.indices, values=labels.values,
                 num_classes=np.int64(labels.num_classes),
                 stats=np.array([stats['rows'], stats['skipped'], stats['conflicts']]))


def load_label_cache(path: str, signature: str):
    """The cached parse result, or None when the cache is absent, unreadable or made
    from other files / classes (then it is rebuilt)."""
    if not osp.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data['signature']) != signature:
                print_log(f'{path}: label cache made from other files or classes; '
                          'parsing again', logger='current')
                return None
            labels = SparseLabels(data['indptr'], data['indices'], data['values'],
                                  int(data['num_classes']))
            rows, skipped, conflicts = data['stats'].tolist()
            return data['image_ids'], labels, dict(rows=rows, skipped=skipped,
                                                   conflicts=conflicts)
    except (OSError, ValueError, KeyError) as err:
        print_log(f'{path}: unreadable label cache ({err}); parsing again',
                  logger='current', level=logging.WARNING)
        return None


def _exists(path: str) -> bool:
    return osp.isfile(path) if '://' not in path else fileio.exists(path)


def unique_display_names(mids: Sequence[str], vocabulary: Dict[str, str]) -> List[str]:
    """Display names of ``mids``; a name shared by several of them gets its MID
    appended (``'Bat (/m/01h44)'``) so every column has its own name."""
    names = [vocabulary[m] for m in mids]
    counts: Dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [f'{n} ({m})' if counts[n] > 1 else n for n, m in zip(names, mids)]


@DATASETS.register_module()
class OpenImagesMultiLabel(MultiLabelCLIPDataset):
    """Open Images image-level labels, seen / unseen / all classes (MKT protocol).

    Columns: with split files, the seen classes (file order) then the unseen ones, so
    ``class_subset='all'`` is the GZSL label space (7,186 + 400 = 7,586) and the
    metainfo carries ``class_subsets=dict(seen=..., unseen=...)`` for the metrics'
    ``class_subsets=dict(zsl='dataset:unseen')``. Without split files the classes are
    those of ``class_desc_file`` in its order. ``metainfo['label_names']`` holds the
    MIDs; ``metainfo['classes']`` the display names (made unique, see
    :func:`unique_display_names`), which the model turns into text.

    Duplicate rows of one (image, class) pair collapse; if their Confidence differs the
    positive wins (counted in the load log). A LabelName outside the class descriptions
    is an error naming the file and line; rows of described classes outside the loaded
    class set are skipped. Images are ordered by ImageID.

    Memory: ~5 bytes per loaded label row and ~24 bytes per image (ImageID + row
    offset) once built; parsing peaks higher (docs/protocols.md has measured figures).
    ``get_label_matrix()`` densifies (N x C float32); use :meth:`get_sparse_labels`.

    Args:
        ann_file (str): image-level label CSV.
        class_desc_file (str): class descriptions CSV.
        seen_classes_file, unseen_classes_file (str | None): class lists (one MID per
            line); both or neither. ``unseen_classes_file`` may instead be a pickled
            MID sequence (``.pkl`` / ``.pickle``, e.g. 2018_04 ``unseen_labels.pkl``),
            read by a restricted unpickler that refuses every global but numpy's array
            rebuilders; it then needs ``unseen_index_file``.
        unseen_index_file (str | None): with a pickled ``unseen_classes_file`` only: a
            header-less CSV (``top_400_unseen.csv``) whose first column holds the row
            indices into the pickled sequence; the unseen classes are those rows, in
            the file's order. Refused with a text list.
        class_subset (str): ``'all'`` (seen + unseen), ``'seen'`` or ``'unseen'``.
        image_ext (str): file extension of the images (``'.jpg'``).
        skip_missing_images (bool): drop the images whose file does not exist (logged
            with their number), as LESA / BiAM keep only the images they could
            download. Default False: ``check_images`` reports a missing file.
        label_cache (str | None): an ``.npz`` file (joined with ``data_root``) that
            keeps the parsed labels (before the filters) for the next runs; rebuilt
            when the CSV, the class descriptions or the class list changed (size,
            mtime, MIDs). Loading it takes ~the store's size in memory instead of the
            parse's peak (docs/protocols.md). Default None: parse every time.
        drop_no_positive, holdout, drop_empty, check_images, data_root, data_prefix,
            pipeline, test_mode, lazy_init, indices: as in
            :class:`MultiLabelCLIPDataset` (same order).
            ``classes`` and ``label_simulation`` need a dense matrix and are refused.
    """

    def __init__(self, data_root: str = '', ann_file: str = '', class_desc_file: str = '',
                 seen_classes_file: Optional[str] = None,
                 unseen_classes_file: Optional[str] = None,
                 unseen_index_file: Optional[str] = None, class_subset: str = 'all',
                 image_ext: str = '.jpg', skip_missing_images: bool = False,
                 label_cache: Optional[str] = None, **kwargs):
        if not class_desc_file:
            raise ValueError('OpenImagesMultiLabel needs class_desc_file')
        if class_subset not in CLASS_SUBSETS:
            raise ValueError(f'OpenImagesMultiLabel class_subset must be one of '
                             f'{CLASS_SUBSETS}, got {class_subset!r}')
        if (seen_classes_file is None) != (unseen_classes_file is None):
            raise ValueError('OpenImagesMultiLabel: seen_classes_file and '
                             'unseen_classes_file go together')
        if _is_pickle(unseen_classes_file) and unseen_index_file is None:
            raise ValueError(f'OpenImagesMultiLabel: unseen_classes_file '
                             f'{unseen_classes_file!r} is a pickled MID sequence; it needs '
                             'unseen_index_file (the row indices, e.g. '
                             '2018_04/top_400_unseen.csv)')
        if unseen_index_file is not None and not _is_pickle(unseen_classes_file):
            raise ValueError(f'OpenImagesMultiLabel: unseen_index_file {unseen_index_file!r} '
                             'goes only with a pickled (.pkl) unseen_classes_file, got '
                             f'{unseen_classes_file!r}')
        if class_subset != 'all' and seen_classes_file is None:
            raise ValueError(f'OpenImagesMultiLabel class_subset={class_subset!r} needs '
                             'seen_classes_file and unseen_classes_file')
        for option in ('classes', 'label_simulation'):
            if kwargs.get(option) is not None:
                raise ValueError(f'OpenImagesMultiLabel does not support {option} (it needs '
                                 'the dense label matrix); use class_subset / class files')
        self.class_desc_file = class_desc_file
        self.seen_classes_file = seen_classes_file
        self.unseen_classes_file = unseen_classes_file
        self.unseen_index_file = unseen_index_file
        self.split_subset = class_subset
        self.image_ext = image_ext
        self.skip_missing_images = _check_bool(skip_missing_images, 'skip_missing_images')
        self.label_cache = label_cache
        self._image_ids = np.zeros(0, dtype='S1')
        self._labels: Optional[SparseLabels] = None
        super().__init__(data_root=data_root, ann_file=ann_file, **kwargs)

    # ----------------------------------------------------------------- loading
    def _class_set(self) -> Tuple[List[str], List[str], Dict[str, str], dict]:
        """(MIDs of the columns, their names, all described classes, metainfo subsets)."""
        vocabulary = read_class_descriptions(self.resolve_path(self.class_desc_file))
        if self.seen_classes_file is None:
            mids = list(vocabulary)
            return mids, unique_display_names(mids, vocabulary), vocabulary, {}
        seen = read_label_name_list(self.resolve_path(self.seen_classes_file), vocabulary)
        unseen_file = self.resolve_path(self.unseen_classes_file)
        if self.unseen_index_file is not None:
            unseen = read_indexed_label_names(
                unseen_file, self.resolve_path(self.unseen_index_file), vocabulary)
        else:
            unseen = read_label_name_list(unseen_file, vocabulary)
        both = set(seen) & set(unseen)
        if both:
            raise ValueError(f'{self.unseen_classes_file}: LabelName {sorted(both)[0]!r} is '
                             f'also in {self.seen_classes_file}')
        mids = dict(all=seen + unseen, seen=seen, unseen=unseen)[self.split_subset]
        names = dict(zip(seen + unseen, unique_display_names(seen + unseen, vocabulary)))
        subsets = {}
        if self.split_subset == 'all':
            subsets = dict(seen=tuple(names[m] for m in seen),
                           unseen=tuple(names[m] for m in unseen))
        return mids, [names[m] for m in mids], vocabulary, subsets

    def full_init(self) -> None:
        """Parse the files into the compact store (no ``data_list``)."""
        if self._fully_initialized:
            return
        tic = time.perf_counter()
        mids, names, vocabulary, subsets = self._class_set()
        image_ids, labels, stats = self._parse(mids, vocabulary)

        if self.drop_no_positive:
            keep = labels.has_positive()
            image_ids, labels = image_ids[keep], labels.select_rows(keep)
            if not image_ids.size:
                raise ValueError(f'{type(self).__name__}: {self.ann_file} has no image with '
                                 'a positive label; the dataset is empty')
        if self.holdout is not None:
            keep = self.holdout.keep_mask(image_ids.size)
            image_ids, labels = image_ids[keep], labels.select_rows(keep)
            if not image_ids.size:
                raise ValueError(f'{type(self).__name__}: {self.ann_file} keeps no image '
                                 f'in {self.holdout!r}; the dataset is empty')
        if self.drop_empty:
            keep = labels.has_known()
            image_ids, labels = image_ids[keep], labels.select_rows(keep)
            if not image_ids.size:
                raise ValueError(f'{type(self).__name__}: {self.ann_file} has no image with '
                                 'a known label (drop_empty=True); the dataset is empty')
        missing = 0
        if self.skip_missing_images:
            keep = np.fromiter((_exists(self._image_path_of(i)) for i in image_ids),
                               dtype=bool, count=image_ids.size)
            missing = int((~keep).sum())
            image_ids, labels = image_ids[keep], labels.select_rows(keep)
            if not image_ids.size:
                raise ValueError(f'{type(self).__name__}: no image of {self.ann_file} exists '
                                 f'under {self.data_prefix.get("img_path", "")!r}')
        self._image_ids, self._labels = image_ids, labels
        if self._indices is not None:
            self._take(self._indices)
        self._metainfo.update(classes=tuple(names), label_names=tuple(mids))
        if subsets:
            self._metainfo['class_subsets'] = subsets
        parsed = time.perf_counter() - tic
        image_ids, labels = self._image_ids, self._labels

        checked = ''
        if self._check_mode is not None:
            seconds = check_image_files((self._path(i) for i in range(image_ids.size)),
                                        self._check_mode, self.ann_file)
            checked = f', images checked ({self._check_mode}) in {seconds:.2f} s'
        if missing:
            checked += f', {missing} missing images skipped'
        if stats['conflicts']:
            print_log(f'{self.ann_file}: {stats["conflicts"]} (image, class) pairs have '
                      'rows with different Confidence; the positive was kept',
                      logger='current', level=logging.WARNING)
        print_log(f'{type(self).__name__}: {image_ids.size} images, {len(mids)} classes '
                  f'({self.split_subset}), {labels.nnz} known labels '
                  f'({labels.nbytes / 2**20:.1f} MiB), {stats["skipped"]} of '
                  f'{stats["rows"]} rows outside the class set, loaded in {parsed:.1f} s'
                  f'{checked} ({self.ann_file})', logger='current')
        self._fully_initialized = True

    def _parse(self, mids: List[str], vocabulary: Dict[str, str]):
        """Parse ``ann_file`` for the columns ``mids`` (through ``label_cache``)."""
        cache, signature = self.resolve_path(self.label_cache), None
        if cache is not None:
            signature = _cache_signature(self.ann_file,
                                         self.resolve_path(self.class_desc_file), mids)
            cached = load_label_cache(cache, signature)
            if cached is not None:
                return cached
        parsed = read_image_labels(self.ann_file, {m: j for j, m in enumerate(mids)},
                                   vocabulary)
        if cache is not None:
            save_label_cache(cache, signature, *parsed)
        return parsed

    def load_data_list(self):
        raise NotImplementedError('OpenImagesMultiLabel keeps no data_list; use '
                                  'get_data_info(i) / get_sparse_labels()')

    def _take(self, indices: Union[int, Sequence[int]]) -> None:
        """Keep rows ``indices`` (mmengine's meaning: an int n keeps the first n
        images, -n the last n; a sequence keeps those rows, in its order)."""
        num = self._image_ids.size
        if isinstance(indices, (int, np.integer)):
            rows = np.arange(num)[:indices] if indices >= 0 else np.arange(num)[indices:]
        else:
            rows = np.asarray(indices, dtype=np.int64).reshape(-1)
            if rows.size and not (-num <= rows.min() and rows.max() < num):
                raise IndexError(f'indices out of range for {num} images')
            rows = rows % max(num, 1)
        self._image_ids, self._labels = self._image_ids[rows], self._labels.select_rows(rows)

    @force_full_init
    def get_subset_(self, indices: Union[int, Sequence[int]]) -> None:
        """In-place subset (see :meth:`_take`); replaces mmengine's, which needs
        ``data_list``."""
        self._take(indices)

    @force_full_init
    def get_subset(self, indices: Union[int, Sequence[int]]) -> 'OpenImagesMultiLabel':
        """A subset copy sharing the metainfo and pipeline (see :meth:`_take`)."""
        subset = copy.copy(self)
        subset._take(indices)
        return subset

    # ----------------------------------------------------------------- access
    def _image_path_of(self, image_id: bytes) -> str:
        return self.image_path(image_id.decode('ascii') + self.image_ext)

    def _path(self, idx: int) -> str:
        return self._image_path_of(self._image_ids[idx])

    @force_full_init
    def __len__(self) -> int:
        return int(self._image_ids.size)

    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        """``dict(img_path, img_id, gt_score (C,) float32 in {1, 0, -1}, sample_idx)``
        built from the compact store (one dense row per call)."""
        idx = int(idx)
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f'index {idx} out of range for {len(self)} images')
        return dict(img_path=self._path(idx), img_id=self._image_ids[idx].decode('ascii'),
                    gt_score=self._labels.row(idx), sample_idx=idx)

    @force_full_init
    def get_sparse_labels(self) -> SparseLabels:
        """The (N, C) labels in CSR form (no copy)."""
        return self._labels

    @force_full_init
    def get_label_matrix(self) -> np.ndarray:
        """Dense float32 (N, C) labels: N x C x 4 bytes (Open Images test: 3.8 GB)."""
        return self._labels.to_dense()

    @force_full_init
    def get_cat_ids(self, idx: int) -> List[int]:
        return self._labels.positives(int(idx)).tolist()
