"""Per-sample augmentation seeds: randomness as a function of (run seed, epoch, index).

Dataloader workers are seeded once (mmengine ``worker_init_fn``) and, with
``persistent_workers=True``, keep their RNG streams across epochs; that state is in no
checkpoint, so a resumed run replays epoch 1's augmentation. Instead, the sampler
(:class:`mlr_plugin.engine.samplers.EpochSeededSampler`) yields :class:`SeededIndex`
values and the dataset seeds ``random`` / ``numpy.random`` / torch from
:func:`sample_seed` before running the pipeline: the same sample gets the same
augmentation whatever the worker, the number of workers or processes, or a resume.
"""
import contextlib
import random

import numpy as np
import torch


class SeededIndex(int):
    """A dataset index that also carries the run seed and the epoch.

    An ``int`` subclass: indexing code that ignores the extra fields keeps working,
    and it pickles (attributes included) into dataloader workers.
    """

    def __new__(cls, index: int, seed: int, epoch: int):
        obj = super().__new__(cls, index)
        obj.seed = int(seed)
        obj.epoch = int(epoch)
        return obj

    def __reduce__(self):
        return SeededIndex, (int(self), self.seed, self.epoch)

    def __repr__(self):
        return f'SeededIndex({int(self)}, seed={self.seed}, epoch={self.epoch})'


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Well-mixed 32-bit seed of (seed, epoch, index); neighbours give unrelated seeds."""
    entropy = [int(seed) & 0xFFFFFFFF, int(epoch), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rng(seed: int):
    """Seed python ``random``, ``numpy.random`` and torch's CPU RNG; restore them after.

    Restoring keeps the main process's own streams (e.g. dropout) untouched when
    ``num_workers=0``; CUDA RNGs are left alone (the pipeline runs on CPU).
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state = torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)
