"""Missing-label simulations applied to a dataset's whole N x C label matrix.

Labels are float arrays with 1 = positive, 0 = negative, -1 = unknown. A simulation
maps the (N, C) matrix to a new one; it runs once at load time, in dataset order, with
its own seeded ``np.random.RandomState``, so every instantiation, dataloader worker,
rank and resume sees the same labels (nothing depends on global RNG state).

Build them from configs with :func:`build_label_simulations`::

    label_simulation=dict(type='PartialLabels', known_ratio=0.3, seed=0)
    label_simulation=[dict(type='HideClasses', classes=['cat']),
                      dict(type='PartialLabels', known_ratio=0.5)]
"""
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.registry import Registry

from mlr_plugin.fileio import atomic_open


def _build_simulation(cfg: dict, registry: Registry, default_args=None):
    # Plain build: mmengine's default builder would look for a 'mmpretrain' scope in
    # this small standalone registry and warn on every build.
    cfg = dict(cfg)
    if 'type' not in cfg:
        raise ValueError(f'label simulation config needs a "type" key: {cfg}')
    obj_type = cfg.pop('type')
    obj_cls = registry.get(obj_type) if isinstance(obj_type, str) else obj_type
    if obj_cls is None:
        raise ValueError(f'unknown label simulation {obj_type!r}; registered: '
                         f'{sorted(registry.module_dict)}')
    try:
        return obj_cls(**cfg)
    except TypeError as e:  # a misspelt option: name the simulation and the option
        raise TypeError(f'{obj_type}: {e}') from None


LABEL_SIMULATIONS = Registry(
    'label_simulation', scope='mlr_plugin', build_func=_build_simulation)


def build_label_simulations(cfg: Union[None, dict, Callable, Sequence]) -> List[Callable]:
    """Build a list of simulations from None, one config/instance or a list of them."""
    if cfg is None:
        return []
    if isinstance(cfg, dict) or callable(cfg):
        cfg = [cfg]
    sims = []
    for item in cfg:
        sims.append(LABEL_SIMULATIONS.build(item) if isinstance(item, dict) else item)
    return sims


def apply_label_simulations(labels: np.ndarray, classes: Sequence[str],
                            simulations: Sequence[Callable]) -> np.ndarray:
    """Apply ``simulations`` in order to ``labels`` (N, C); returns a new array."""
    labels = np.asarray(labels, dtype=np.float32)
    for sim in simulations:
        labels = sim(labels, tuple(classes))  # simulations never modify their input
        if labels.shape[1] != len(classes):
            raise ValueError(f'{sim!r} changed the number of classes')
    return labels


# --------------------------------------------------------------------------- masks
def _mask_from_tensor(value, mask_file: str) -> np.ndarray:
    """Keep-mask (N, C) bool from a saved array or tensor (see PartialLabels)."""
    arr = value.detach().cpu().numpy() if hasattr(value, 'detach') else np.asarray(value)
    if arr.ndim == 3:
        # DualCoOp stacks identical copies of the (N, C) mask: (N, K, C).
        if not (arr == arr[:, :1]).all():
            raise ValueError(f'mask file {mask_file}: 3-d mask {arr.shape} whose copies '
                             f'along dim 1 differ; expected DualCoOp (N, K, C) layout')
        arr = arr[:, 0]
    if arr.dtype == np.bool_:
        return arr
    values = set(np.unique(arr).tolist())
    if values <= {0, 1}:
        return arr.astype(bool)
    if values <= {-1, 0, 1}:
        # A partial label matrix rather than a mask: -1 marks the dropped entries.
        return arr != -1
    raise ValueError(f'mask file {mask_file}: values {sorted(values)[:5]} are neither a '
                     f'0/1 keep-mask nor a {{1, 0, -1}} partial label matrix')


def load_mask(mask_file: str, shape: tuple) -> np.ndarray:
    """Load a keep-mask of ``shape`` (N, C) from ``.npy`` or a torch ``.pt``/``.pth``."""
    if not osp.isfile(mask_file):
        raise FileNotFoundError(f'label mask file not found: {mask_file}')
    ext = osp.splitext(mask_file)[1].lower()
    if ext == '.npy':
        value = np.load(mask_file, allow_pickle=False)
    elif ext in ('.pt', '.pth'):
        import torch
        value = torch.load(mask_file, map_location='cpu', weights_only=True)
    else:
        raise ValueError(f'mask file {mask_file}: unsupported extension {ext!r} '
                         f'(use .npy, .pt or .pth)')
    mask = _mask_from_tensor(value, mask_file)
    if mask.shape != tuple(shape):
        raise ValueError(f'mask file {mask_file} has shape {tuple(mask.shape)} but the '
                         f'label matrix has shape {tuple(shape)}')
    return mask


def save_mask(mask: np.ndarray, path: str) -> None:
    """Write a bool (N, C) keep-mask atomically (tmp file then ``os.replace``).

    ``.npy`` stores a bool array; ``.pt``/``.pth`` a torch int64 0/1 tensor.
    Several ranks may write the same mask at once: each writes its own tmp file.
    """
    ext = osp.splitext(path)[1].lower()
    if ext not in ('.npy', '.pt', '.pth'):
        raise ValueError(f'save_mask {path}: unsupported extension {ext!r} '
                         f'(use .npy, .pt or .pth)')
    with atomic_open(path, 'wb') as f:
        if ext == '.npy':
            np.save(f, mask.astype(bool))
        else:
            import torch
            torch.save(torch.from_numpy(mask.astype(np.int64)), f)


# ------------------------------------------------------------------ option checks
def _check_ratio(owner: str, name: str, value) -> float:
    """A number in (0, 1]; strings (``'abc'``, ``'0.3'``) and bools are refused."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_)) and 0.0 < float(value) <= 1.0
    if not ok:
        raise ValueError(f'{owner}: {name} must be a number in (0, 1], got {value!r}')
    return float(value)


def _check_seed(owner: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 0:
        raise ValueError(f'{owner}: seed must be a non-negative int, got {value!r}')
    return int(value)


def _check_path(owner: str, name: str, value):
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f'{owner}: {name} must be a file path or None, got {value!r}')
    return value


# --------------------------------------------------------------------- simulations
@LABEL_SIMULATIONS.register_module()
class PartialLabels:
    """Keep each (image, class) label with probability ``known_ratio``; others -> -1.

    Positives and negatives alike. The mask is drawn with ``np.random.RandomState(seed)``
    over the whole (N, C) matrix in row-major dataset order (drawn in row chunks to
    bound memory; the stream is identical to one draw of the full matrix).

    Args:
        known_ratio (float | None): p in (0, 1]. May be None when ``mask_file`` is given.
        seed (int): RNG seed of the mask.
        mask_file (str | None): load the keep-mask instead of sampling it:
            - ``.npy``: bool or 0/1 array (N, C), 1 = keep (what ``save_mask`` writes);
            - ``.pt``/``.pth``: a torch tensor. DualCoOp's ``partial_label_{p:.2f}.pt`` is
              an int64 0/1 keep-mask (1 = keep) of shape (N, K, C) holding K identical
              copies (K = 3 for COCO, 1 for VOC / NUS-WIDE); (N, C) is accepted too. A
              tensor holding -1 values is read as a partial label matrix in {1, 0, -1}
              (keep = value != -1). The rows must follow this dataset's image order.
        save_mask (str | None): write the mask used to this path (``.npy`` or ``.pt``).
    """

    chunk_rows = 4096  # rows drawn per RandomState call

    def __init__(self, known_ratio: Optional[float] = None, seed: int = 0,
                 mask_file: Optional[str] = None, save_mask: Optional[str] = None):
        if known_ratio is None and mask_file is None:
            raise ValueError('PartialLabels needs known_ratio or mask_file')
        self.known_ratio = None if known_ratio is None else \
            _check_ratio('PartialLabels', 'known_ratio', known_ratio)
        self.seed = _check_seed('PartialLabels', seed)
        self.mask_file = _check_path('PartialLabels', 'mask_file', mask_file)
        self.save_mask = _check_path('PartialLabels', 'save_mask', save_mask)

    def sample_mask(self, shape: tuple) -> np.ndarray:
        """Bool keep-mask of ``shape`` (N, C), True with probability ``known_ratio``."""
        num_rows, num_cols = shape
        rng = np.random.RandomState(self.seed)
        mask = np.empty(shape, dtype=bool)
        for start in range(0, num_rows, self.chunk_rows):
            stop = min(start + self.chunk_rows, num_rows)
            mask[start:stop] = rng.random_sample((stop - start, num_cols)) < self.known_ratio
        return mask

    def __call__(self, labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        if self.mask_file is not None:
            mask = load_mask(self.mask_file, labels.shape)
        else:
            mask = self.sample_mask(labels.shape)
        if self.save_mask is not None:
            save_mask(mask, self.save_mask)
        labels = labels.copy()
        labels[~mask] = -1
        return labels

    def __repr__(self):
        src = f'mask_file={self.mask_file!r}' if self.mask_file else \
            f'known_ratio={self.known_ratio}, seed={self.seed}'
        return f'PartialLabels({src})'


SINGLE_POSITIVE_SETUPS = ('uniform', 'largeloss', 'splc')


@LABEL_SIMULATIONS.register_module()
class SinglePositiveLabel:
    """Keep exactly one random positive per image; every other entry -> -1.

    The positive is chosen once, at load time, from ``np.random.RandomState(seed)`` in
    dataset row order, so it stays fixed for the whole training run and is the same in
    every dataloader worker, rank and resume. Images without a positive become all -1
    (every setup; drop them with the dataset's ``drop_no_positive=True``, as the
    single-positive benchmarks do, or ``drop_empty=True``).

    Args:
        seed (int): RNG seed.
        setup (str): how the positive is drawn (docs/protocols.md, single positive):

            - ``'uniform'`` (default): one ``random_sample()`` per image, also for the
              images without a positive (so the stream stays aligned); the k-th
              positive is kept, k = floor(u * number of positives).
            - ``'largeloss'``: the observation process of the LargeLoss setup (Kim et
              al., CVPR 2022, on the data code of Cole et al., CVPR 2021): per image, in
              row order, the positive column indices are shuffled, then the
              non-positive ones (which only advances the stream), and the first
              shuffled positive is kept. Their generator uses seed 1200; the LargeLoss
              configs set it.
            - ``'splc'``: the SPLC setup (Zhang et al., 2021) trains on one random
              positive per training image, drawn once; its authors released the draw
              as files but not the RNG, so it is drawn as ``'uniform'``. This setup
              differs from LargeLoss in the split (no held-out validation part; see
              the dataset configs), not in the rule.
    """

    def __init__(self, seed: int = 0, setup: str = 'uniform'):
        self.seed = _check_seed('SinglePositiveLabel', seed)
        if setup not in SINGLE_POSITIVE_SETUPS:
            raise ValueError(f'SinglePositiveLabel: setup must be one of '
                             f'{SINGLE_POSITIVE_SETUPS}, got {setup!r}')
        self.setup = setup

    def pick_positive(self, positive: np.ndarray) -> np.ndarray:
        """Column kept per row of the bool (N, C) ``positive``; -1 for rows without any."""
        if self.setup == 'largeloss':
            return self._pick_shuffled(positive)
        num_pos = positive.sum(axis=1)                             # (N,)
        draw = np.random.RandomState(self.seed).random_sample(len(positive))
        # k-th positive of each row (0-based), k uniform in [0, num_pos).
        k = np.minimum((draw * num_pos).astype(np.int64), np.maximum(num_pos - 1, 0))
        rank = np.cumsum(positive, axis=1) - 1                     # rank among positives
        hit = positive & (rank == k[:, None])
        return np.where(num_pos > 0, hit.argmax(axis=1), -1)

    def _pick_shuffled(self, positive: np.ndarray) -> np.ndarray:
        # The stream depends on each row's draw order, so this is a loop over rows
        # (~1 s for COCO's 82k rows); a shuffle consumes draws by length only.
        rng = np.random.RandomState(self.seed)
        num_cols = positive.shape[1]
        pick = np.full(len(positive), -1, dtype=np.int64)
        rows, cols = np.nonzero(positive)
        starts = np.searchsorted(rows, np.arange(len(positive) + 1))
        for i in range(len(positive)):
            pos = cols[starts[i]:starts[i + 1]].copy()
            rng.shuffle(pos)
            rng.shuffle(np.empty(num_cols - len(pos)))  # the non-positives' shuffle
            if len(pos):
                pick[i] = pos[0]
        return pick

    def __call__(self, labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        pick = self.pick_positive(labels == 1)
        out = np.full_like(labels, -1)
        rows = np.flatnonzero(pick >= 0)
        out[rows, pick[rows]] = 1
        return out

    def __repr__(self):
        return f'SinglePositiveLabel(seed={self.seed}, setup={self.setup!r})'


@LABEL_SIMULATIONS.register_module()
class AssumeNegative:
    """Turn every unknown entry (-1) into a negative (0): the "assume negative" (AN)
    baseline of the single-positive literature (Cole et al., CVPR 2021; LargeLoss).

    Put it after the simulation that made the unknowns, e.g.
    ``[dict(type='SinglePositiveLabel'), dict(type='AssumeNegative')]``.
    """

    def __call__(self, labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        return np.where(labels == -1, np.float32(0), labels).astype(labels.dtype)

    def __repr__(self):
        return 'AssumeNegative()'


@LABEL_SIMULATIONS.register_module()
class HideClasses:
    """Make whole columns unknown (-1), e.g. the unseen classes of a zero-shot split.

    Args:
        classes (Sequence[str] | str): class names, or a built-in split name such as
            ``'coco_unseen17'``.
    """

    def __init__(self, classes: Union[str, Sequence[str]]):
        if isinstance(classes, str):
            from .splits import get_class_split
            classes = get_class_split(classes)
        if not isinstance(classes, (list, tuple)) or not classes or \
                not all(isinstance(c, str) for c in classes):
            raise ValueError(f'HideClasses: classes must be a split name or a non-empty '
                             f'list of class names, got {classes!r}')
        self.classes = tuple(classes)

    def __call__(self, labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(classes)}
        missing = [name for name in self.classes if name not in index]
        if missing:
            raise ValueError(f'HideClasses: class {missing[0]!r} is not among the '
                             f"dataset's {len(classes)} classes")
        labels = labels.copy()
        labels[:, [index[name] for name in self.classes]] = -1
        return labels

    def __repr__(self):
        return f'HideClasses({len(self.classes)} classes)'
