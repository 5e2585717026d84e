"""Readers for the plain-text list files used by NUS-WIDE, VG-200 and the generic format."""
import json
import os.path as osp
from typing import List, Optional, Tuple

import numpy as np

LABEL_VALUES = (-1.0, 0.0, 1.0)

# How a label matrix file writes positive / negative / unknown. Ours (and DualCoOp's):
# 1 / 0 / -1. MKT, BiAM and LESA write 1 / -1 / 0, which read as ours would silently turn
# every negative into "unknown" and every unknown into a negative.
LABEL_CONVENTIONS = {
    'ours': {1.0: 1.0, 0.0: 0.0, -1.0: -1.0},
    'mkt': {1.0: 1.0, -1.0: 0.0, 0.0: -1.0},
}


def read_json(path: str, expected: type, what: str):
    """Load a JSON file whose top level must be ``expected`` (one-line errors)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{path}: not valid JSON ({e})') from None
    if not isinstance(data, expected):
        raise ValueError(f'{path}: expected a JSON {expected.__name__} ({what}), got '
                         f'{type(data).__name__}')
    return data


def check_label_file_convention(dataset: str, convention, label_file) -> str:
    """A non-default label convention only makes sense for a label-matrix file."""
    check_label_convention(convention)
    if convention != 'ours' and label_file is None:
        raise ValueError(f'{dataset}: label_convention={convention!r} applies to label_file '
                         '(a label matrix); the official layout has no such matrix')
    return convention


def check_label_convention(convention) -> str:
    if convention not in LABEL_CONVENTIONS:
        raise ValueError(f'label_convention must be one of {tuple(LABEL_CONVENTIONS)} '
                         f"('ours': 1/0/-1 = positive/negative/unknown; 'mkt': 1/-1/0 as "
                         f'in MKT, BiAM, LESA), got {convention!r}')
    return convention


def to_our_convention(labels: np.ndarray, convention: str) -> np.ndarray:
    """Map a {1, 0, -1} matrix written in ``convention`` to ours (1/0/-1 = pos/neg/unk)."""
    mapping = LABEL_CONVENTIONS[check_label_convention(convention)]
    out = np.empty_like(labels)
    for theirs, ours in mapping.items():
        out[labels == theirs] = ours
    return out


def read_lines(path: str, what: str = 'list') -> List[str]:
    """Stripped, non-empty lines of a text file."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path}')
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def read_numbered_lines(path: str, what: str = 'list') -> List[Tuple[int, str]]:
    """``(line_number, stripped_line)`` of the non-empty lines (1-based numbers)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path}')
    with open(path, encoding='utf-8') as f:
        return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]


def read_class_names(path: str) -> List[str]:
    """One class name per line; duplicates are an error (columns must be unique)."""
    names = read_lines(path, 'class-name')
    seen = set()
    for line_no, name in enumerate(names, 1):
        if name in seen:
            raise ValueError(f'{path}: duplicate class name {name!r} (entry {line_no})')
        seen.add(name)
    if not names:
        raise ValueError(f'{path}: no class names')
    return names


def read_image_list(path: str) -> List[str]:
    """One relative image path per line; Windows separators (NUS-WIDE) become '/'."""
    return [line.replace('\\', '/') for line in read_lines(path, 'image-list')]


def check_label_values(labels: np.ndarray, source: str) -> None:
    """Raise if ``labels`` holds a value other than 1, 0, -1 (naming the first one)."""
    bad = ~np.isin(labels, LABEL_VALUES)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f'{source}: label value {labels[row, col]:g} at row {row + 1}, '
                         f'column {col + 1}; expected 1, 0 or -1')


def read_label_matrix(path: str, num_rows: Optional[int] = None,
                      num_cols: Optional[int] = None,
                      convention: str = 'ours') -> np.ndarray:
    """Whitespace-separated label matrix, one row per image: float32 (N, C) in {1, 0, -1}.

    ``convention``: how the file writes labels (see :data:`LABEL_CONVENTIONS`); the
    result is always in ours (1 / 0 / -1 = positive / negative / unknown).
    """
    check_label_convention(convention)
    if not osp.isfile(path):
        raise FileNotFoundError(f'label matrix file not found: {path}')
    try:
        labels = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as e:  # ragged rows, non-numbers: numpy names the row
        raise ValueError(f'{path}: cannot parse label matrix: {e}') from None
    if num_rows is not None and labels.shape[0] != num_rows:
        raise ValueError(f'{path}: {labels.shape[0]} label rows but {num_rows} images')
    if num_cols is not None and labels.shape[1] != num_cols:
        raise ValueError(f'{path}: {labels.shape[1]} label columns but {num_cols} classes')
    check_label_values(labels, path)
    return to_our_convention(labels, convention)


def parse_index_line(line: str, num_classes: int, source: str):
    """``"path idx idx ..."`` -> (path, positive class indices), 0-based indices."""
    tokens = line.split()
    indices = []
    for token in tokens[1:]:
        try:
            index = int(token)
        except ValueError:
            raise ValueError(f'{source}: {token!r} is not a class index') from None
        if not 0 <= index < num_classes:
            raise ValueError(f'{source}: class index {index} out of range '
                             f'[0, {num_classes})')
        indices.append(index)
    return tokens[0], indices
