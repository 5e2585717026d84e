"""Augmentation is a function of (seed, epoch, sample index): a resumed run is
bit-identical to an uninterrupted one, with persistent dataloader workers."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mlr_plugin.compat import load_checkpoint_file
from mlr_plugin.datasets import CocoMultiLabel
from mlr_plugin.datasets.demo_world import generate_demo_world
from mlr_plugin.datasets.seeding import SeededIndex
from mlr_plugin.engine.samplers import EpochSeededSampler
from test_tools import _load_tool, coco_options

REPO = Path(__file__).parent.parent
SIZE = 64


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('world') / 'coco_format'
    generate_demo_world(root, seed=1, num_train=24, num_val=12, num_test=12, image_size=SIZE)
    return root


def _train_tool():
    return _load_tool('train')


def _options(root, max_epochs):
    # the point of the test: two persistent workers, seeded once by mmengine
    return coco_options(root) + [
        'train_dataloader.num_workers=2', 'train_dataloader.persistent_workers=True',
        'train_dataloader.dataset.pipeline.4.shape=32', 'model.prompt_learner.num_classes=20',
        f'train_cfg.max_epochs={max_epochs}', 'train_cfg.val_interval=100',
        'default_hooks.checkpoint.save_best=None', 'default_hooks.checkpoint.max_keep_ckpts=-1']


def _state(path):
    return load_checkpoint_file(path)['state_dict']


def test_resumed_run_is_bit_identical_with_persistent_workers(world, tmp_path):
    train = _train_tool()
    config = str(REPO / 'configs/dualcoop_pp/coco_p30.py')
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    train.main([config, '--work-dir', str(straight), '--cfg-options', *_options(world, 2)])
    # stop after epoch 1, then resume from its checkpoint to epoch 2
    train.main([config, '--work-dir', str(stopped), '--cfg-options', *_options(world, 1)])
    runner = train.main([config, '--work-dir', str(stopped), '--resume',
                         '--cfg-options', *_options(world, 2)])
    assert runner.epoch == 2
    first = _state(straight / 'epoch_1.pth')
    expected, resumed = _state(straight / 'epoch_2.pth'), _state(stopped / 'epoch_2.pth')
    assert set(expected) == set(resumed)
    for key in expected:
        # every weight trained (the checkpoint record and a barely moving scalar aside)
        assert not torch.equal(expected[key], first[key]) or key in (
            'head.log_temperature', '_extra_state')
        assert torch.equal(expected[key], resumed[key]), key
    assert type(runner.train_dataloader.sampler).__name__ == 'EpochSeededSampler'


@pytest.fixture(scope='module')
def aug_dataset(world):
    pipeline = [dict(type='LoadImageCV2', to_rgb=True, target_size=SIZE),
                dict(type='RandomResizedCrop', scale=SIZE, crop_ratio_range=(0.3, 1.0)),
                dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                dict(type='RandAugment', policies='timm_increasing', num_policies=2,
                     total_level=10, magnitude_level=9, magnitude_std=0.5),
                dict(type='PackInputs')]
    return CocoMultiLabel(data_root=str(world), ann_file='annotations/instances_train.json',
                          data_prefix=dict(img_path='train'), pipeline=pipeline)


def _collate(batch):
    return batch


def test_same_seed_epoch_index_same_augmentation_in_worker_and_main(aug_dataset):
    sampler = EpochSeededSampler(aug_dataset, shuffle=True, seed=7)
    sampler.set_epoch(3)
    indices = list(sampler)
    assert all(isinstance(i, SeededIndex) and i.epoch == 3 and i.seed == 7 for i in indices)
    assert pickle.loads(pickle.dumps(indices[0])).epoch == 3
    loader = DataLoader(aug_dataset, sampler=sampler, batch_size=4, num_workers=1,
                        collate_fn=_collate)
    in_worker = [item['inputs'] for batch in loader for item in batch]
    np.random.seed(123)  # the main process's RNG state must not matter
    in_main = [aug_dataset[i]['inputs'] for i in indices]
    assert len(in_worker) == len(in_main) == len(aug_dataset)
    for a, b in zip(in_worker, in_main):
        assert torch.equal(a, b)

    # another epoch of the same sample: another augmentation
    index = int(indices[0])
    other = [aug_dataset[SeededIndex(index, 7, epoch)]['inputs'] for epoch in (3, 4, 5)]
    assert torch.equal(other[0], in_main[0])
    assert not torch.equal(other[0], other[1]) and not torch.equal(other[1], other[2])


def test_seeded_sample_leaves_global_rng_alone_and_plain_ints_unchanged(aug_dataset):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    aug_dataset[SeededIndex(0, 0, 0)]
    assert torch.equal(torch.rand(3), expected)
    # a plain int index draws from the global streams as before
    np.random.seed(5)
    a = aug_dataset[1]['inputs']
    np.random.seed(5)
    assert torch.equal(aug_dataset[1]['inputs'], a)


def test_sampler_matches_default_sampler_order_and_rank_split(aug_dataset):
    from mmengine.dataset import DefaultSampler
    ours, theirs = EpochSeededSampler(aug_dataset, seed=3), DefaultSampler(aug_dataset, seed=3)
    for epoch in (0, 1):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert [int(i) for i in ours] == list(theirs)
    assert len(ours) == len(theirs)


def test_two_ranks_see_the_global_batches_of_one_process(aug_dataset):
    from unittest.mock import patch
    batch = 4  # per rank; the single process uses 2 * batch
    single = EpochSeededSampler(aug_dataset, seed=5)
    single.set_epoch(2)
    one = list(single)
    ranks = []
    for rank in (0, 1):
        with patch('mmengine.dataset.sampler.get_dist_info', return_value=(rank, 2)):
            sampler = EpochSeededSampler(aug_dataset, seed=5)
        sampler.set_epoch(2)
        ranks.append(list(sampler))
    for start in range(0, len(ranks[0]), batch):
        global_batch = ranks[0][start:start + batch] + ranks[1][start:start + batch]
        expected = one[2 * start:2 * start + 2 * batch]
        assert sorted(map(int, global_batch)) == sorted(map(int, expected))
        # same (seed, epoch, index) -> same augmentation whichever process loads it
        assert {(i.seed, i.epoch) for i in global_batch} == {(5, 2)}
