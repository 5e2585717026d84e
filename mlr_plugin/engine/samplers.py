"""A sampler whose indices carry the epoch, for resumable, worker-independent augmentation."""
from typing import Iterator

from mmengine.dataset import DefaultSampler
from mmpretrain.registry import DATA_SAMPLERS

from mlr_plugin.datasets.seeding import SeededIndex


@DATA_SAMPLERS.register_module()
class EpochSeededSampler(DefaultSampler):
    """mmengine's :class:`~mmengine.dataset.DefaultSampler` yielding :class:`SeededIndex`.

    Same order, rank split (``indices[rank::world_size]``, so a global batch holds the
    same samples for 1 or N processes), ``round_up`` and ``set_epoch`` as
    ``DefaultSampler``. Each index also carries ``seed`` (the Runner's
    ``randomness.seed``, passed by the Runner as the sampler seed) and the epoch, from
    which :class:`~mlr_plugin.datasets.MultiLabelCLIPDataset` seeds the augmentation
    of that sample: a resumed run and an uninterrupted one augment identically, with
    persistent workers too.
    """

    def __iter__(self) -> Iterator[SeededIndex]:
        for index in super().__iter__():
            yield SeededIndex(index, self.seed, self.epoch)
