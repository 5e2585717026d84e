"""Multi-label metrics as pure functions on score / target matrices.

Shapes and conventions shared by every function here:

- ``scores``: ``(N, C)`` float, higher means "more likely present" (probabilities,
  logits or similarities; only the order matters except for the threshold metrics).
- ``target``: ``(N, C)`` in ``{1, 0, -1}``: positive, negative, unknown. Unknown entries
  are ignored everywhere except where a function says otherwise (P/R/F1@K treat them as
  "not positive", as the zero-shot reference code does).
- Inputs may be torch tensors, numpy arrays or nested lists and are never modified.
  Float16 / float32 / float64 score arrays are used in their own dtype and targets as
  int8 (no float64 copy of an (N, C) matrix), and the work runs in chunks of classes
  (AP) or rows (threshold and top-k metrics) of about ``CHUNK_ELEMENTS`` entries, so an
  Open Images evaluation (125k x 7,586) needs little memory beyond its inputs
  (docs/scaling.md).
- Percentages are returned for every summary number; ``0 / 0`` is defined as ``0``.
"""
from typing import Dict, Optional

import numpy as np

EMPTY_CLASS_MODES = ('exclude', 'zero')
CF1_MODES = ('harmonic', 'mean')
CHUNK_ELEMENTS = 1 << 22  # entries per chunk: ~4M, a few 10s of MB of temporaries
_SCORE_DTYPES = (np.float16, np.float32, np.float64)


def to_numpy(array, name: str) -> np.ndarray:
    """Copy ``array`` (tensor / ndarray / list) into a new float64 ndarray."""
    if hasattr(array, 'detach'):  # torch.Tensor, without importing torch here
        array = array.detach().float().cpu().numpy()
    try:
        # np.array always copies, so callers' inputs are never mutated.
        return np.array(array, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{name} is not a numeric array: {err}') from None


def check_scores_target(scores, target):
    """Validate and copy ``scores`` / ``target`` into ``(N, C)`` float64 arrays.

    Raises:
        ValueError: wrong rank, mismatched shapes, non-finite scores, or a target
            value outside ``{1, 0, -1}``.
    """
    scores = to_numpy(scores, 'scores')
    target = to_numpy(target, 'target')
    if scores.ndim != 2:
        raise ValueError(f'scores must be (N, C), got shape {scores.shape}')
    if target.shape != scores.shape:
        raise ValueError(f'target shape {target.shape} != scores shape {scores.shape}')
    if not np.all(np.isfinite(scores)):
        raise ValueError('scores contain NaN or inf')
    bad = ~np.isin(target, (1.0, 0.0, -1.0))
    if bad.any():
        raise ValueError(f'target must be in {{1, 0, -1}}, found {target[bad][0]!r}')
    return scores, target


def _float_array(array, name: str) -> np.ndarray:
    """``array`` as a float16/32/64 ndarray, without a copy when it already is one."""
    if hasattr(array, 'detach'):  # torch.Tensor, without importing torch here
        array = array.detach().cpu()
        if str(array.dtype) not in ('torch.float16', 'torch.float32', 'torch.float64'):
            array = array.float()  # bfloat16 / ints: no numpy twin
        array = array.numpy()
    if isinstance(array, np.ndarray) and array.dtype.type in _SCORE_DTYPES:
        return array
    return to_numpy(array, name)


def row_chunks(num_rows: int, num_cols: int):
    step = max(1, CHUNK_ELEMENTS // max(num_cols, 1))
    return [slice(i, min(i + step, num_rows)) for i in range(0, num_rows, step)]


def compact_scores_target(scores, target):
    """Validate ``scores`` / ``target`` without an (N, C) float64 copy.

    Returns ``scores`` as a float16/32/64 ndarray (the given array when it is one) and
    ``target`` as int8. Raises ValueError like :func:`check_scores_target`.
    """
    scores = _float_array(scores, 'scores')
    if scores.ndim != 2:
        raise ValueError(f'scores must be (N, C), got shape {scores.shape}')
    if isinstance(target, np.ndarray) and target.dtype == np.int8:
        target8 = target
        if target8.shape != scores.shape:
            raise ValueError(f'target shape {target8.shape} != scores shape {scores.shape}')
        check_values = target8
    else:
        check_values = _float_array(target, 'target')
        if check_values.shape != scores.shape:
            raise ValueError(f'target shape {check_values.shape} != scores shape '
                             f'{scores.shape}')
        target8 = np.empty(scores.shape, dtype=np.int8)
    for rows in row_chunks(*scores.shape):
        if not np.all(np.isfinite(scores[rows])):
            raise ValueError('scores contain NaN or inf')
        values = check_values[rows]
        bad = (values != 1) & (values != 0) & (values != -1)
        if bad.any():
            raise ValueError(f'target must be in {{1, 0, -1}}, found {values[bad][0]!r}')
        if target8 is not check_values:
            target8[rows] = values
    return scores, target8


def _safe_div(num, den):
    """Element-wise ``num / den`` with ``0 / 0 -> 0`` (also ``x / 0 -> 0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _harmonic(p, r):
    """F1 = 2 p r / (p + r), 0 when p + r = 0."""
    return _safe_div(2 * np.asarray(p) * np.asarray(r), np.asarray(p) + np.asarray(r))


def _check_k(k, num_classes: int, name: str = 'k') -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f'{name} must be an int, got {k!r}')
    if not 1 <= k <= num_classes:
        raise ValueError(f'{name}={k} must be in [1, num_classes={num_classes}]')
    return int(k)


def topk_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """``(N, C)`` bool mask of each row's top-``k`` columns.

    Ties are broken as a stable sort on the negated scores would: the lower class
    index wins, so the result never depends on the sorting algorithm. Computed without
    sorting rows (thousands of classes): every score above the row's k-th largest,
    then the first of those equal to it, in class order, until there are k.
    """
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]
    above = scores > kth
    missing = k - above.sum(axis=1, keepdims=True)
    equal = scores == kth
    return above | (equal & (np.cumsum(equal, axis=1) <= missing))


def _average_precision_rows(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-interpolated AP of every row of ``scores`` / ``target`` (c, N): one class a
    row, vectorised over the c classes.

    AP = sum_t (R_t - R_{t-1}) P_t over the distinct score thresholds t, so tied scores
    form one operating point (same as ``sklearn.average_precision_score``) instead of
    depending on the order of the tied images. Written per positive: every positive
    adds ``P`` taken at the end of its run of tied scores, and
    ``AP = (sum over positives of P_end) / #positives``. Unknown (-1) entries are ranked
    but never counted (no TP, no FP). NaN without positives.
    """
    num_classes, num_rows = scores.shape
    # any order of tied scores gives the same AP (and the same sums: tied positives
    # add equal terms), so the fast unstable sort is fine
    order = np.argsort(-scores, axis=1)
    ranked = np.take_along_axis(scores, order, axis=1)
    labels = np.take_along_axis(target, order, axis=1)
    # flat (row-major) indices: every search below stays inside one class's row
    boundary = np.ones(ranked.shape, dtype=bool)  # last entry of a run of equal scores
    np.not_equal(ranked[:, 1:], ranked[:, :-1], out=boundary[:, :-1])
    ends = np.flatnonzero(boundary)
    positives = np.flatnonzero(labels == 1)
    unknown = np.flatnonzero(labels == -1)
    run_end = ends[np.searchsorted(ends, positives)]
    row = positives // num_rows
    row_start = row * num_rows
    tp = np.searchsorted(positives, run_end, 'right') - np.searchsorted(positives, row_start)
    unknown_before = (np.searchsorted(unknown, run_end, 'right')
                      - np.searchsorted(unknown, row_start))
    precision = tp / (run_end - row_start + 1 - unknown_before)
    total = np.bincount(row, weights=precision, minlength=num_classes)
    num_pos = np.bincount(row, minlength=num_classes)
    aps = np.full(num_classes, np.nan)
    np.divide(total, num_pos, out=aps, where=num_pos > 0)
    return aps


def average_precision_per_class(scores, target) -> np.ndarray:
    """Per-class non-interpolated AP (fraction, not %), vectorised over chunks of classes.

    Args:
        scores: ``(N, C)`` scores (float16 scores are ranked as stored: values that
            round to the same float16 tie).
        target: ``(N, C)`` in ``{1, 0, -1}``; for class c only images with a known
            label for c (``target[:, c] != -1``) are counted.

    Returns:
        ``(C,)`` float64 array, NaN for a class with no positive among its known images.
    """
    scores, target = compact_scores_target(scores, target)
    num_rows, num_classes = scores.shape
    step = max(1, CHUNK_ELEMENTS // max(num_rows, 1))
    aps = np.empty(num_classes, dtype=np.float64)
    for start in range(0, num_classes, step):
        cols = slice(start, min(start + step, num_classes))
        # one class per contiguous row; float16 -> float32 is exact (ties are kept)
        aps[cols] = _average_precision_rows(
            np.ascontiguousarray(scores[:, cols].T, dtype=np.promote_types(scores.dtype,
                                                                          np.float32)),
            np.ascontiguousarray(target[:, cols].T))
    return aps


def reduce_average_precision(aps, empty_class: str = 'exclude') -> float:
    """mAP in % from per-class APs (fractions, NaN = class without positive).

    ``empty_class='exclude'`` drops NaN classes from the mean (NaN if every class is
    empty); ``'zero'`` counts them as AP 0 (DualCoOp / MKT reference code).
    """
    if empty_class not in EMPTY_CLASS_MODES:
        raise ValueError(f'empty_class must be one of {EMPTY_CLASS_MODES}, got {empty_class!r}')
    aps = np.asarray(aps, dtype=np.float64)
    if empty_class == 'zero':
        aps = np.nan_to_num(aps, nan=0.0)
    else:
        aps = aps[~np.isnan(aps)]
    if aps.size == 0:
        return float('nan')
    return float(aps.mean() * 100)


def mean_average_precision(scores, target, empty_class: str = 'exclude') -> float:
    """mAP in % over classes; see :func:`average_precision_per_class` and
    :func:`reduce_average_precision` for the ``-1`` and empty-class rules."""
    if empty_class not in EMPTY_CLASS_MODES:  # fail before the per-class work
        raise ValueError(f'empty_class must be one of {EMPTY_CLASS_MODES}, got {empty_class!r}')
    return reduce_average_precision(average_precision_per_class(scores, target), empty_class)


def threshold_metrics(scores,
                      target,
                      thr: float = 0.5,
                      topk: Optional[int] = None,
                      cf1: str = 'harmonic') -> Dict[str, float]:
    """Per-class (C*) and overall (O*) precision / recall / F1 in %.

    Args:
        scores: ``(N, C)``.
        target: ``(N, C)`` in ``{1, 0, -1}``; ``-1`` entries count as neither TP, FP
            nor FN.
        thr: predict class c for an image when ``score > thr`` (strict, as in the
            DualCoOp family's ``p+ > 0.5``). Ignored when ``topk`` is set.
        topk: predict each image's top-``k`` classes instead (stable-sort ties).
        cf1: ``'harmonic'`` -> CF1 = 2 CP CR / (CP + CR) (ML-GCN);
            ``'mean'`` -> mean over classes of per-class F1 (DualCoOp).

    Returns:
        dict with ``CP, CR, CF1, OP, OR, OF1``. Per-class ratios use ``0/0 -> 0``
        (a class never predicted has precision 0, a class without positives has
        recall 0) and are averaged over all C classes.
    """
    if cf1 not in CF1_MODES:
        raise ValueError(f'cf1 must be one of {CF1_MODES}, got {cf1!r}')
    scores, target = compact_scores_target(scores, target)
    if topk is None:
        if isinstance(thr, bool) or not isinstance(thr, (int, float, np.number)):
            raise ValueError(f'thr must be a number, got {thr!r}')
    else:
        topk = _check_k(topk, scores.shape[1], 'topk')
    tp, fp, fn = (np.zeros(scores.shape[1], dtype=np.int64) for _ in range(3))
    for rows in row_chunks(*scores.shape):  # counts add up over rows
        # compared in float64: a float16 score is compared by its exact value
        pred = (scores[rows] > np.float64(thr)) if topk is None else topk_mask(scores[rows], topk)
        pos, neg = target[rows] == 1, target[rows] == 0
        tp += (pred & pos).sum(axis=0)
        fp += (pred & neg).sum(axis=0)
        fn += (~pred & pos).sum(axis=0)

    class_p = _safe_div(tp, tp + fp)
    class_r = _safe_div(tp, tp + fn)
    cp, cr = class_p.mean(), class_r.mean()
    if cf1 == 'harmonic':
        cf1_value = _harmonic(cp, cr)
    else:
        cf1_value = _harmonic(class_p, class_r).mean()
    op = _safe_div(tp.sum(), tp.sum() + fp.sum())
    orec = _safe_div(tp.sum(), tp.sum() + fn.sum())
    values = dict(CP=cp, CR=cr, CF1=cf1_value, OP=op, OR=orec, OF1=_harmonic(op, orec))
    return {key: float(value) * 100 for key, value in values.items()}


def precision_recall_at_k(scores, target, k: int) -> Dict[str, float]:
    """P@K, R@K, F1@K in % (zero-shot protocol), micro over all images.

    Each image predicts its top-``k`` classes (stable sort: the lower class index wins
    ties). ``P = TP / (N k)``, ``R = TP / #positives``, ``F1 = 2PR / (P + R)``; images
    without positives are kept (they only add false positives) and ``-1`` entries
    count as not positive.

    Returns:
        dict with keys ``P@k``, ``R@k``, ``F1@k``.
    """
    scores, target = compact_scores_target(scores, target)
    k = _check_k(k, scores.shape[1])
    tp = num_pos = 0
    for rows in row_chunks(*scores.shape):
        positive = target[rows] == 1
        tp += int((topk_mask(scores[rows], k) & positive).sum())
        num_pos += int(positive.sum())
    precision = _safe_div(tp, scores.shape[0] * k)
    recall = _safe_div(tp, num_pos)
    return {
        f'P@{k}': float(precision) * 100,
        f'R@{k}': float(recall) * 100,
        f'F1@{k}': float(_harmonic(precision, recall)) * 100,
    }

