"""Readers for the plain-text list files used by NUS-WIDE, VG-200 and the generic format."""
import os.path as osp
from typing import List, Optional, Tuple

import numpy as np

LABEL_VALUES = (-1.0, 0.0, 1.0)


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
                      num_cols: Optional[int] = None) -> np.ndarray:
    """Whitespace-separated label matrix, one row per image: float32 (N, C) in {1, 0, -1}."""
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
    return labels


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
