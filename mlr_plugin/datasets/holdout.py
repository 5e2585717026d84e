"""A seeded held-out part of a training split (a validation set carved from train).

The LargeLoss single-positive setup (Kim et al., CVPR 2022, on the data code of Cole
et al., CVPR 2021) validates on 20% of the official training images and tests on the
official validation/test images. The held-out rows are drawn once from
``np.random.RandomState(seed).permutation(N)`` over the dataset rows (after
``drop_no_positive`` and the label simulations, which therefore see the whole official
split, as in that setup): the last ``round(fraction * N)`` positions of the permutation
are held out, the rest is kept; both parts keep dataset order.
"""
from typing import Optional, Union

import numpy as np

HOLDOUT_PARTS = ('train', 'val')


class HoldOut:
    """Which rows a dataset keeps: the ``'train'`` part or the held-out ``'val'`` part.

    Args:
        part (str): ``'train'`` keeps the rows not held out, ``'val'`` the held-out ones.
        fraction (float): share of the rows held out, in (0, 1).
        seed (int): RNG seed of the permutation (LargeLoss / Cole et al.: 1200).
    """

    def __init__(self, part: str, fraction: float = 0.2, seed: int = 1200):
        if part not in HOLDOUT_PARTS:
            raise ValueError(f"holdout: part must be 'train' or 'val', got {part!r}")
        ok = isinstance(fraction, (int, float, np.integer, np.floating)) and \
            not isinstance(fraction, (bool, np.bool_)) and 0.0 < float(fraction) < 1.0
        if not ok:
            raise ValueError(f'holdout: fraction must be a number in (0, 1), '
                             f'got {fraction!r}')
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
                or seed < 0:
            raise ValueError(f'holdout: seed must be a non-negative int, got {seed!r}')
        self.part = part
        self.fraction = float(fraction)
        self.seed = int(seed)

    def held_out_rows(self, num_rows: int) -> np.ndarray:
        """Sorted indices of the held-out rows among ``num_rows``."""
        num_out = int(np.round(self.fraction * num_rows))
        order = np.random.RandomState(self.seed).permutation(num_rows)
        return np.sort(order[num_rows - num_out:])

    def keep_mask(self, num_rows: int) -> np.ndarray:
        """Bool (num_rows,): True for the rows of this part."""
        held_out = np.zeros(num_rows, dtype=bool)
        held_out[self.held_out_rows(num_rows)] = True
        return held_out if self.part == 'val' else ~held_out

    def __repr__(self):
        return f'HoldOut(part={self.part!r}, fraction={self.fraction}, seed={self.seed})'


def build_holdout(cfg: Union[None, dict, HoldOut]) -> Optional[HoldOut]:
    """None, a :class:`HoldOut` or its keyword dict (``dict(part='val', ...)``)."""
    if cfg is None or isinstance(cfg, HoldOut):
        return cfg
    if not isinstance(cfg, dict):
        raise ValueError(f'holdout must be None or a dict such as '
                         f"dict(part='val', fraction=0.2, seed=1200), got {cfg!r}")
    try:
        return HoldOut(**cfg)
    except TypeError as e:  # a misspelt key
        raise TypeError(f'holdout: {e}') from None
