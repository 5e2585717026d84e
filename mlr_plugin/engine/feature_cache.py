"""Building a feature cache (docs/feature_cache.md): the frozen image tower runs once per
image and augmented view; what training would compute every epoch is stored in fp16.

Views of an image that came out identical (a random flip has two outcomes) run through
the tower once. Resumable: shards are written to ``*.partial`` files and renamed when complete, and
the manifest (written atomically) lists the finished ones; a rerun skips those and
redoes everything else, so an interrupted build and an uninterrupted one end with the
same bytes. The format and the dataset that reads it: :mod:`mlr_plugin.datasets.feature_cache`.
"""
import glob
import hashlib
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmpretrain.registry import DATASETS, MODELS

from ..datasets.feature_cache import (FORMAT_VERSION, MANIFEST, shard_path, split_fingerprint,
                                      to_plain, view_seed)
from ..datasets.seeding import seeded_rng
from ..fileio import fsync_dir, write_json_atomic
from ..models.feature_cache import FEATURE_KEYS, backbone_fingerprint

SPLITS = ('train', 'val', 'test')


def cache_settings(cfg, split: str) -> Tuple[dict, Optional[str], Optional[int]]:
    """(image dataset config, cache root, views) of ``<split>_dataloader``; a
    ``CachedFeatureDataset`` there gives its inner dataset, root and ``num_views``."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        raise KeyError(f'the config has no {split}_dataloader.dataset to cache')
    dataset = to_plain(loader['dataset'])
    if dataset.get('type') == 'CachedFeatureDataset':
        cache = dataset.pop('feature_cache')
        dataset['type'] = dataset.pop('image_dataset')
        return dataset, cache.get('root'), cache.get('num_views')
    return dataset, None, None


def feature_shapes(backbone) -> Dict[str, List[int]]:
    """Per-image shapes of the cached features (``OpenCLIPBackbone.forward``)."""
    height, width = backbone.feat_grid
    shapes = dict(dense=[height * width, backbone.embed_dim], global_feat=[backbone.embed_dim])
    if backbone.is_resnet and backbone.with_mean_token:
        shapes['prefix_tokens'] = [1, backbone.embed_dim]
    return shapes


class _Views(torch.utils.data.Dataset):
    """(image index, view) -> the pipeline's output for that view, seeded by view_seed."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, view = key
        with seeded_rng(view_seed(self.seed, index, view)):
            data = self.dataset.prepare_data(index)
        if data is None:
            raise ValueError(f'the pipeline dropped image {index} '
                             f'({self.dataset.get_data_info(index)["img_path"]})')
        return data


class Progress:
    """One status line: done/total views, views/s and ETA (``\\r`` on a terminal, a new
    line every 10 s otherwise)."""

    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stdout
        self.tty = getattr(self.stream, 'isatty', lambda: False)()
        self.start = self.last = time.perf_counter()

    def update(self, num: int) -> None:
        self.done += num
        now = time.perf_counter()
        if now - self.last >= (0.5 if self.tty else 10.0) or self.done >= self.total:
            self.last = now
            self.stream.write(('\r' if self.tty else '') + self.line(now) +
                              ('' if self.tty else '\n'))
            self.stream.flush()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (f'{self.label}: {self.done}/{self.total} views  {rate:.1f} views/s  '
                f'ETA {int(eta) // 3600}:{int(eta) % 3600 // 60:02d}:{int(eta) % 60:02d}')

    def close(self) -> float:
        if self.tty:
            self.stream.write('\n')
        return time.perf_counter() - self.start


def _human(num_bytes: int) -> str:
    for unit, scale in (('GiB', 2**30), ('MiB', 2**20), ('KiB', 2**10)):
        if num_bytes >= scale:
            return f'{num_bytes / scale:.2f} {unit}'
    return f'{num_bytes} B'


def _settings_mismatch(old: dict, new: dict) -> Optional[str]:
    for field in ('num_images', 'images_digest', 'pipeline_digest', 'num_views',
                  'shard_size', 'features'):
        if old.get(field) != new[field]:
            return f'{field} {old.get(field)} -> {new[field]}'
    return None


def build_feature_cache(cfg, out: Optional[str] = None, num_views: Optional[int] = None,
                        splits: Sequence[str] = SPLITS, batch_size: Optional[int] = None,
                        shard_size: int = 1024, num_workers: Optional[int] = None,
                        overwrite: bool = False, device: Optional[str] = None,
                        stream=None) -> dict:
    """Cache the image-tower outputs of ``splits`` of a config; returns the manifest.

    Args:
        cfg: the loaded config (its ``model.backbone`` and ``<split>_dataloader``).
        out: the cache folder (default: the config's ``CachedFeatureDataset`` root).
        num_views: views per training image (default: the config's, else 1);
            val/test images get one view (their pipelines do not augment).
        overwrite: rebuild splits cached with other settings (else: an error).
    """
    stream = stream or sys.stdout
    jobs = []
    for split in splits:
        dataset_cfg, root, views = cache_settings(cfg, split)
        root = out or root
        if root is None:
            raise ValueError(f'{split}_dataloader.dataset is not a CachedFeatureDataset: '
                             'give the cache folder with --out')
        if split == 'train':
            views = num_views or views or 1
        elif views not in (None, 1):
            raise ValueError(f'{split}_dataloader.dataset.num_views={views}: only the train '
                             'split is cached with several views')
        jobs.append((split, dataset_cfg, root, views if split == 'train' else 1))
    roots = {root for _, _, root, _ in jobs}
    if len(roots) != 1:
        raise ValueError(f'the splits name different cache folders {sorted(roots)}: build '
                         'them one split at a time (--split)')
    root = roots.pop()

    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    backbone = MODELS.build(to_plain(cfg.model['backbone'])).to(device).eval()
    from ..models.classifiers.clip_prompt import CLIPPromptClassifier
    preprocessor = MODELS.build(CLIPPromptClassifier._preprocessor_cfg(
        to_plain(cfg.model.get('data_preprocessor')), backbone)).to(device)
    fingerprint = backbone_fingerprint(backbone)
    shapes = feature_shapes(backbone)
    seed = int(cfg.get('randomness', {}).get('seed') or 0)

    manifest_path = osp.join(root, MANIFEST)
    manifest = dict(format=FORMAT_VERSION, backbone=fingerprint, seed=seed, splits={})
    if osp.isfile(manifest_path):
        from ..datasets.feature_cache import read_manifest
        old = read_manifest(root)
        changed = next((f for f in ('backbone', 'seed') if old.get(f) != manifest[f]), None)
        if changed and not overwrite:
            raise ValueError(f'feature cache {root} was built with another {changed}: '
                             'pass --overwrite to rebuild it, or choose another --out')
        if not changed:
            manifest['splits'] = old['splits']

    plans = []
    for split, dataset_cfg, _, views in jobs:
        dataset = DATASETS.build(dataset_cfg)
        info = dict(split_fingerprint(dataset, dataset_cfg.get('pipeline', [])),
                    num_views=views, shard_size=shard_size, features=shapes,
                    pipeline=dataset_cfg.get('pipeline', []), done_shards=[])
        old = manifest['splits'].get(split)
        if old is not None:
            mismatch = _settings_mismatch(old, info)
            if mismatch and not overwrite:
                raise ValueError(f'feature cache {root} ({split}) was built with other '
                                 f'settings ({mismatch}): pass --overwrite to rebuild it, '
                                 'or choose another --out')
            if not mismatch:
                info['done_shards'] = old['done_shards']
        manifest['splits'][split] = info
        plans.append((split, dataset, info))

    per_view = sum(int(np.prod(s)) for s in shapes.values()) * 2  # fp16 bytes
    total = sum(info['num_images'] * info['num_views'] for _, _, info in plans) * per_view
    parts = ', '.join(f'{s} {i["num_images"]} images x {i["num_views"]} views'
                      for s, _, i in plans)
    stream.write(f'feature cache {root}: {parts}; {_human(total)} in fp16 '
                 f'({", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())} per view)\n')
    stream.flush()
    write_json_atomic(manifest, manifest_path, indent=1)

    for split, dataset, info in plans:
        loader = cfg.get(f'{split}_dataloader')
        _build_split(backbone, preprocessor, dataset, info, manifest, root, split, seed,
                     batch_size or loader.get('batch_size', 32),
                     loader.get('num_workers', 0) if num_workers is None else num_workers,
                     stream)
    return manifest


def _build_split(backbone, preprocessor, dataset, info, manifest, root, split, seed,
                 batch_size, num_workers, stream) -> None:
    folder = osp.join(root, split)
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(osp.join(folder, '*.partial')):
        os.remove(stale)  # a shard being written when the last run stopped: redone
    num_images, views, size = info['num_images'], info['num_views'], info['shard_size']
    done = set(info['done_shards'])
    pending = [k for k in range(-(-num_images // size)) if k not in done]
    total = num_images * views
    remaining = sum((min((k + 1) * size, num_images) - k * size) * views for k in pending)
    if not pending:
        stream.write(f'{split}: all {total} views already cached\n')
        return
    # batches never cross a shard: a shard redone after a kill is batched as before
    batches, shard_of_batch = [], []
    for k in pending:
        pairs = [(i, v) for i in range(k * size, min((k + 1) * size, num_images))
                 for v in range(views)]
        for start in range(0, len(pairs), batch_size):
            batches.append(pairs[start:start + batch_size])
            shard_of_batch.append(k)
    loader = torch.utils.data.DataLoader(_Views(dataset, seed), batch_sampler=batches,
                                         num_workers=num_workers, collate_fn=pseudo_collate)
    progress = Progress(remaining, f'{split} ({total - remaining}/{total} cached before)'
                        if remaining < total else split, stream)
    maps, current, computed = None, None, 0
    for batch, shard, pairs in zip(loader, shard_of_batch, batches):
        if shard != current:
            maps, current = _open_shard(folder, shard, info, num_images), shard
        unique, where = distinct_views(batch['inputs'], pairs)
        computed += len(unique)
        data = preprocessor(dict(inputs=[batch['inputs'][j] for j in unique],
                                 data_samples=[batch['data_samples'][j] for j in unique]),
                            False)
        with torch.no_grad():
            feats = backbone(data['inputs'])
        rows = np.array([i - shard * size for i, _ in pairs])
        cols = np.array([v for _, v in pairs])
        for key, target in maps.items():
            values = feats[key].float().cpu().numpy().astype(np.float16)[where]
            if not np.isfinite(values).all():
                raise ValueError(f'{key} features overflow fp16 (|x| > 65504) in split '
                                 f'{split}; they cannot be cached in fp16')
            target[rows, cols] = values
        progress.update(len(pairs))
        if pairs[-1] == (min((shard + 1) * size, num_images) - 1, views - 1):
            _finish_shard(folder, shard, maps)
            info['done_shards'] = sorted(set(info['done_shards']) | {shard})
            write_json_atomic(manifest, osp.join(root, MANIFEST), indent=1)
    seconds = progress.close()
    stream.write(f'{split}: {remaining} views ({computed} distinct, run through the tower) '
                 f'in {seconds:.1f} s ({remaining / max(seconds, 1e-9):.1f} views/s)\n')
    stream.flush()


def distinct_views(images: Sequence[torch.Tensor], pairs: Sequence[Tuple[int, int]]):
    """Views of one image that the pipeline made identical (a flip-only pipeline has
    two distinct views) go through the tower once.

    Returns:
        (positions of the views to compute, for every view the index of its features
        among those).
    """
    first, unique, where = {}, [], []
    for pos, (image, (index, _)) in enumerate(zip(images, pairs)):
        data = image.detach().cpu().contiguous()
        key = (index, tuple(data.shape), str(data.dtype),
               hashlib.blake2b(data.numpy().tobytes(), digest_size=16).digest())
        if key not in first or not torch.equal(images[unique[first[key]]].cpu(), data):
            first[key] = len(unique)
            unique.append(pos)
        where.append(first[key])
    return unique, np.asarray(where)


def _open_shard(folder, shard, info, num_images) -> Dict[str, np.ndarray]:
    size = info['shard_size']
    count = min((shard + 1) * size, num_images) - shard * size
    return {key: np.lib.format.open_memmap(
        osp.join(folder, f'shard_{shard:05d}.{key}.npy.partial'), mode='w+',
        dtype=np.float16, shape=(count, info['num_views'], *shape))
        for key, shape in info['features'].items() if key in FEATURE_KEYS}


def _finish_shard(folder, shard, maps) -> None:
    for key, array in maps.items():
        array.flush()
        path = array.filename
        del array
        with open(path, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(path, shard_path(osp.dirname(folder), osp.basename(folder), shard, key))
    maps.clear()
    fsync_dir(folder)
