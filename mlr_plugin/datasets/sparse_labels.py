"""A compact (N, C) label matrix in {1, 0, -1} that stores only the known entries.

Open Images annotates a few dozen of its ~7.6k classes per image; a dense float32
matrix would take 7.6k x 4 bytes = 30 KB per image (270 GB for 9M images). Here a
known entry costs 5 bytes (int32 column + int8 value, CSR layout) and an image 8 bytes
(its int64 row offset); everything absent is unknown (-1).
"""
from typing import Optional, Tuple

import numpy as np


def _segment_counts(flags: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Per-row number of True ``flags`` (one flag per stored entry)."""
    cumulative = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return cumulative[indptr[1:]] - cumulative[indptr[:-1]]


class SparseLabels:
    """CSR labels: row ``i`` holds ``values[indptr[i]:indptr[i+1]]`` (int8, 1 or 0) at
    columns ``indices[...]`` (int32, sorted, unique); every other entry is -1."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                 num_classes: int):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int32)
        self.values = np.asarray(values, dtype=np.int8)
        self.num_classes = int(num_classes)

    @classmethod
    def from_entries(cls, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                     num_rows: int, num_classes: int) -> Tuple['SparseLabels', int]:
        """Build from unordered (row, col, value) entries.

        Repeated (row, col) pairs collapse to one entry; when they disagree the
        positive wins (a class a human verified as present in one row is present).

        Returns:
            (labels, number of (row, col) pairs whose rows disagreed)
        """
        key = rows.astype(np.int64) * num_classes + cols
        order = np.argsort(key, kind='stable')
        key = key[order]
        values = values[order]
        del order
        if key.size:
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            high = np.maximum.reduceat(values, starts)
            low = np.minimum.reduceat(values, starts)
            conflicts = int((high != low).sum())
            key, values = key[starts], high
        else:
            conflicts = 0
        row_of = key // num_classes
        indptr = np.zeros(num_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of, minlength=num_rows), out=indptr[1:])
        return cls(indptr, (key % num_classes).astype(np.int32), values, num_classes), conflicts

    # ----------------------------------------------------------------- shape
    @property
    def num_rows(self) -> int:
        return self.indptr.size - 1

    @property
    def shape(self) -> Tuple[int, int]:
        return self.num_rows, self.num_classes

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.values.nbytes

    # ----------------------------------------------------------------- rows
    def row(self, i: int) -> np.ndarray:
        """Dense float32 (C,) row in {1, 0, -1}."""
        start, end = self.indptr[i], self.indptr[i + 1]
        out = np.full(self.num_classes, -1, dtype=np.float32)
        out[self.indices[start:end]] = self.values[start:end]
        return out

    def positives(self, i: int) -> np.ndarray:
        """Column indices of the positives of row ``i``."""
        start, end = self.indptr[i], self.indptr[i + 1]
        return self.indices[start:end][self.values[start:end] == 1]

    def has_positive(self) -> np.ndarray:
        """(N,) bool: the row has at least one positive."""
        return _segment_counts(self.values == 1, self.indptr) > 0

    def has_known(self) -> np.ndarray:
        """(N,) bool: the row has at least one known (0 or 1) entry."""
        return np.diff(self.indptr) > 0

    def select_rows(self, keep: np.ndarray) -> 'SparseLabels':
        """Rows ``keep`` (bool mask or sorted/unsorted int indices), in that order."""
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        lengths = np.diff(self.indptr)[keep]
        indptr = np.zeros(keep.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # entry positions of the kept rows, without a Python loop over rows
        take = np.repeat(self.indptr[:-1][keep] - indptr[:-1], lengths) + \
            np.arange(indptr[-1], dtype=np.int64)
        return SparseLabels(indptr, self.indices[take], self.values[take], self.num_classes)

    def to_dense(self, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """Dense float32 (n, C) matrix of ``rows`` (all rows when None): n x C x 4 bytes."""
        labels = self if rows is None else self.select_rows(rows)
        out = np.full(labels.shape, -1, dtype=np.float32)
        row_of = np.repeat(np.arange(labels.num_rows), np.diff(labels.indptr))
        out[row_of, labels.indices] = labels.values
        return out
