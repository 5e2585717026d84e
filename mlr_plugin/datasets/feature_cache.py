"""Reading a feature cache (docs/feature_cache.md): the on-disk format and the dataset
that serves cached image-tower outputs instead of images.

Layout of a cache folder (written by :mod:`mlr_plugin.engine.feature_cache`)::

    ROOT/manifest.json                       what was built, from what, which shards are done
    ROOT/<split>/shard_00000.<feature>.npy   fp16 (images in the shard, views, *feature shape)

``<feature>`` is ``dense`` (views, h*w, D), ``global_feat`` (D) and, for ResNet towers
with the mean token, ``prefix_tokens`` (1, D): the raw ``OpenCLIPBackbone.forward``
outputs (not L2-normalised). Shard ``k`` holds images ``k*shard_size`` up to
``(k+1)*shard_size`` of the split, in dataset order, all their views.

View ``v`` of image ``i`` is the split's pipeline run with every RNG seeded from
:func:`view_seed` ``(seed, i, v)``; in training, epoch ``e`` reads view
``sample_seed(run seed, e, i) % num_views`` of image ``i`` (a random view per epoch,
the same in every worker, process count and resumed run).
"""
import hashlib
import json
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np
import torch
from mmpretrain.registry import DATASETS
from mmpretrain.structures import DataSample

from .seeding import sample_seed

MANIFEST = 'manifest.json'
FORMAT_VERSION = 1
_VIEW_TAG = 0x7C1E  # keeps view seeds apart from the per-epoch sample seeds


def view_seed(seed: int, index: int, view: int) -> int:
    """32-bit seed of view ``view`` of image ``index`` (python/numpy/torch RNGs)."""
    entropy = [int(seed) & 0xFFFFFFFF, int(index), int(view), _VIEW_TAG]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(',', ':'))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def to_plain(value):
    """A (Config)dict / list config as plain JSON data (tuples become lists)."""
    return json.loads(_canonical(value))


def pipeline_digest(pipeline: Sequence) -> str:
    """Digest of a pipeline config (transform types and every argument)."""
    return _digest(_canonical(to_plain(list(pipeline))))


def images_digest(dataset) -> str:
    """Digest of the dataset's image list, in order, relative to ``data_root`` (moving
    the data folder keeps the cache valid; another image, order or count does not)."""
    root = dataset.data_root or ''
    paths = (dataset.get_data_info(i)['img_path'] for i in range(len(dataset)))
    return _digest('\n'.join(osp.relpath(p, root) if root else p for p in paths))


def shard_path(root: str, split: str, shard: int, key: str) -> str:
    return osp.join(root, split, f'shard_{shard:05d}.{key}.npy')


def read_manifest(root: str) -> dict:
    path = osp.join(root, MANIFEST)
    if not osp.isfile(path):
        raise FileNotFoundError(f'feature cache {root} has no {MANIFEST}: build it first '
                                f'with tools/cache_features.py CONFIG --out {root}')
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get('format') != FORMAT_VERSION:
        raise ValueError(f'{path}: format {manifest.get("format")!r} is not '
                         f'{FORMAT_VERSION}; rebuild it with tools/cache_features.py')
    return manifest


class FeatureCacheReader:
    """Random access to one split of a finished cache: ``reader.read(i, v)`` ->
    ``{feature: fp16 array}``. Shards are memory-mapped on first use (in each
    dataloader worker, after the fork)."""

    def __init__(self, root: str, split: str):
        self.root, self.split = root, split
        manifest = read_manifest(root)
        if split not in manifest['splits']:
            raise KeyError(f'feature cache {root} has no split {split!r} (it has '
                           f'{sorted(manifest["splits"])}); build it with '
                           f'tools/cache_features.py CONFIG --split {split}')
        self.manifest = manifest
        self.info = info = manifest['splits'][split]
        num_shards = -(-info['num_images'] // info['shard_size'])
        done = set(info['done_shards'])
        if len(done) < num_shards:
            raise ValueError(f'feature cache {root} split {split!r} is incomplete '
                             f'({len(done)} of {num_shards} shards): rerun '
                             'tools/cache_features.py to finish it')
        self.keys: List[str] = list(info['features'])
        self._maps: Dict[int, Dict[str, np.ndarray]] = {}

    @property
    def num_views(self) -> int:
        return self.info['num_views']

    def __len__(self) -> int:
        return self.info['num_images']

    def _shard(self, shard: int) -> Dict[str, np.ndarray]:
        if shard not in self._maps:
            self._maps[shard] = {key: np.load(shard_path(self.root, self.split, shard, key),
                                              mmap_mode='r') for key in self.keys}
        return self._maps[shard]

    def read(self, index: int, view: int) -> Dict[str, np.ndarray]:
        size = self.info['shard_size']
        maps = self._shard(index // size)
        return {key: np.array(maps[key][index % size, view]) for key in self.keys}

    def __getstate__(self):  # workers open their own maps
        return dict(self.__dict__, _maps={})


@DATASETS.register_module()
class CachedFeatureDataset(torch.utils.data.Dataset):
    """A multi-label dataset whose samples are cached image-tower outputs.

    Configured as the image dataset it replaces, plus two keys (so ``data_root``,
    ``pipeline``... and every ``--cfg-options`` on them stay where they were)::

        dataset.update(type='CachedFeatureDataset', image_dataset='CocoMultiLabel',
                       feature_cache=dict(root='data/cache/x', split='train', num_views=8))

    ``inputs`` is ``{dense, global_feat[, prefix_tokens]}`` (fp16 tensors) plus the
    cache's record (checked against the model's backbone by the classifier),
    ``data_samples`` carries ``gt_score`` (label simulations apply as configured),
    ``img_path`` and ``sample_idx``.

    Args:
        image_dataset (str): type of the image dataset the cache was built from; the
            other arguments are its own (the pipeline and the image list must be those
            the cache was built with, else it is stale). Its images are not read
            (``check_images`` is turned off).
        feature_cache (dict): ``root`` (the cache folder), ``split`` ('train', 'val' or
            'test') and optionally ``num_views`` (use the first ``num_views`` views;
            default all).
    """

    def __init__(self, image_dataset: str, feature_cache: dict, lazy_init: bool = False,
                 **dataset):
        unknown = set(feature_cache) - {'root', 'split', 'num_views'}
        if unknown or not {'root', 'split'} <= set(feature_cache):
            raise ValueError(f'feature_cache must be dict(root=..., split=...[, num_views=...]), '
                             f'got {dict(feature_cache)}')
        self.dataset_cfg = dict(dataset, type=image_dataset)
        self.root, self.split = feature_cache['root'], feature_cache['split']
        self.requested_views = feature_cache.get('num_views')
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        self.dataset = DATASETS.build(dict(self.dataset_cfg, check_images=False))
        reader = FeatureCacheReader(self.root, self.split)
        check_split(reader.info, self.dataset, self.dataset_cfg.get('pipeline', []),
                    f'{self.root} ({self.split})')
        views = self.requested_views or reader.num_views
        if not 1 <= views <= reader.num_views:
            raise ValueError(f'num_views={views} but feature cache {self.root} '
                             f'({self.split}) holds {reader.num_views} views per image')
        self.num_views, self.reader = views, reader
        self.record = _canonical(dict(root=self.root, backbone=reader.manifest['backbone']))
        self._fully_initialized = True

    @property
    def metainfo(self) -> dict:
        self.full_init()
        return self.dataset.metainfo

    def __len__(self) -> int:
        self.full_init()
        return len(self.dataset)

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def get_label_matrix(self) -> np.ndarray:
        return self.dataset.get_label_matrix()

    def view_of(self, idx) -> int:
        """The view epoch ``idx.epoch`` reads (a ``SeededIndex``); view 0 for plain
        indices, which carry no epoch, when the cache has one view."""
        epoch = getattr(idx, 'epoch', None)
        if epoch is not None:
            return sample_seed(idx.seed, epoch, int(idx)) % self.num_views
        if self.num_views > 1:
            raise ValueError(f'feature cache {self.root} ({self.split}) has {self.num_views} '
                             'views: sample it with EpochSeededSampler (it picks a view '
                             'per epoch) or set num_views=1')
        return 0

    def __getitem__(self, idx) -> dict:
        self.full_init()
        index = int(idx)
        feats = {key: torch.from_numpy(value)
                 for key, value in self.reader.read(index, self.view_of(idx)).items()}
        feats['feature_cache'] = self.record
        info = self.dataset.get_data_info(index)
        sample = DataSample().set_gt_score(torch.from_numpy(np.asarray(info['gt_score'])))
        sample.set_metainfo(dict(sample_idx=index, img_path=info['img_path']))
        return dict(inputs=feats, data_samples=sample)


def split_fingerprint(dataset, pipeline: Sequence) -> dict:
    """The data side of a split's fingerprint (the model side: the backbone's)."""
    return dict(num_images=len(dataset), images_digest=images_digest(dataset),
                pipeline_digest=pipeline_digest(pipeline))


def check_split(info: dict, dataset, pipeline: Sequence, where: str) -> None:
    """One-line ValueError naming what changed since the split was cached."""
    now = split_fingerprint(dataset, pipeline)
    names = dict(num_images='number of images', images_digest='image list',
                 pipeline_digest='pipeline')
    for field, name in names.items():
        if info.get(field) != now[field]:
            raise ValueError(f'feature cache {where} is stale: the {name} changed since it '
                             f'was built ({info.get(field)} -> {now[field]}); rebuild it '
                             'with tools/cache_features.py')
