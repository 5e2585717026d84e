"""Model side of the feature cache (docs/feature_cache.md): cached image-tower outputs
in place of images.

A cached batch reaches the classifier as a dict instead of an image tensor::

    dict(dense=(B, L, D), global_feat=(B, D)[, prefix_tokens=(B, 1, D)],
         feature_cache=<JSON: the cache folder and the backbone it was built with>)

in fp16 as stored; :func:`cached_tower_outputs` checks that this model's backbone is the
one that built the cache and upcasts to fp32, so the heads see what
``OpenCLIPBackbone.forward`` would have returned up to fp16 rounding.
"""
import hashlib
import json
from collections.abc import Mapping
from typing import Dict, Union

import torch
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import MODELS

from .checkpoint import frozen_digests

FEATURE_KEYS = ('dense', 'global_feat', 'prefix_tokens')
FINGERPRINT_KEY = 'feature_cache'  # entry of a cached batch: where it came from


def backbone_fingerprint(backbone) -> Dict[str, object]:
    """What the cached features of ``backbone`` (an ``OpenCLIPBackbone``) depend on:
    architecture, input size, dense-feature options and a digest of every weight and
    buffer of the image tower (positional embeddings resized to the input size
    included)."""
    if getattr(backbone, 'trainable_vision_blocks', 0) > 0:
        raise ValueError(
            f'feature cache: the image tower of {backbone.model_name} trains '
            f'(trainable_vision_blocks={backbone.trainable_vision_blocks}), so its '
            'features cannot be cached; set trainable_vision_blocks=0 or train from images')
    digests = frozen_digests(backbone.clip.visual, exclude=set())
    weights = hashlib.blake2b(digest_size=16)
    for name in sorted(digests):
        digest, shape, dtype = digests[name]
        weights.update(f'{name}:{digest}:{shape}:{dtype};'.encode())
    return dict(model_name=backbone.model_name,
                image_size=list(backbone._input_hw),
                with_mean_token=bool(backbone.with_mean_token),
                with_pos_embed=bool(backbone.with_pos_embed),
                precision=backbone.precision,
                weights_digest=weights.hexdigest())


def check_backbone(backbone, cache_record: str) -> None:
    """One-line ValueError when the cache described by ``cache_record`` (the JSON a
    cached batch carries) was built by another backbone than ``backbone``."""
    if backbone.__dict__.get('_feature_cache_checked') == cache_record:
        return  # checked on an earlier batch: the frozen tower cannot have changed
    record = json.loads(cache_record)
    built, now = record['backbone'], backbone_fingerprint(backbone)
    for field in now:
        if built.get(field) != now[field]:
            raise ValueError(
                f'feature cache {record["root"]} is stale: backbone {field} was '
                f'{built.get(field)!r} when it was built, the model has {now[field]!r}; '
                f'rebuild it with tools/cache_features.py')
    backbone.__dict__['_feature_cache_checked'] = cache_record


def cached_tower_outputs(backbone, inputs: Mapping) -> Dict[str, object]:
    """A cached batch -> the backbone's output dict (fp32 tensors + ``grid``)."""
    if FINGERPRINT_KEY not in inputs:
        raise ValueError('cached features without their feature_cache record: batches of '
                         'features must come from CachedFeatureDataset')
    check_backbone(backbone, inputs[FINGERPRINT_KEY])
    feats = {key: inputs[key].float() for key in FEATURE_KEYS if key in inputs}
    height, width = backbone.feat_grid
    if feats['dense'].shape[1] != height * width:
        raise ValueError(f'cached dense features have {feats["dense"].shape[1]} locations, '
                         f'the backbone grid {height}x{width} has {height * width}')
    feats['grid'] = backbone.feat_grid
    return feats


def input_device(inputs: Union[torch.Tensor, Mapping]) -> torch.device:
    """Device of a batch of images or of cached features."""
    if torch.is_tensor(inputs):
        return inputs.device
    return next(v for v in inputs.values() if torch.is_tensor(v)).device


def accept_features(cfg: dict) -> dict:
    """A ``ClsDataPreprocessor`` config -> ``FeatureCachePreprocessor`` (the same on
    images, and it also batches cached features); any other preprocessor: unchanged."""
    if cfg.get('type') in ('ClsDataPreprocessor', ClsDataPreprocessor):
        return dict(cfg, type=FeatureCachePreprocessor)
    return cfg


@MODELS.register_module()
class FeatureCachePreprocessor(ClsDataPreprocessor):
    """``ClsDataPreprocessor`` that also takes batches of cached features.

    Images: exactly ``ClsDataPreprocessor``. Cached features (the per-sample dicts of
    ``CachedFeatureDataset``): each feature is stacked and moved to the device, still
    fp16 (half the transfer; the classifier upcasts), and ``gt_score`` is moved as
    ``ClsDataPreprocessor`` moves it. ``CLIPPromptClassifier`` uses it in place of a
    ``ClsDataPreprocessor`` (:func:`accept_features`).
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if not isinstance(inputs, Mapping):
            return super().forward(data, training)
        if training and self.batch_augments is not None:
            raise ValueError('batch_augments (mixup, cutmix...) mix images: they cannot '
                             'apply to cached features; train from images or drop them')
        batch = {}
        for key, values in inputs.items():
            if key == FINGERPRINT_KEY:
                records = set(values)
                if len(records) != 1:
                    raise ValueError('a batch mixes features of different feature caches')
                batch[key] = records.pop()
            else:
                batch[key] = torch.stack(list(values)).to(self.device, non_blocking=True)
        data_samples = data.get('data_samples')
        if data_samples and 'gt_score' in data_samples[0]:
            scores = torch.stack([torch.as_tensor(s.gt_score) for s in data_samples])
            for sample, score in zip(data_samples, scores.to(self.device)):
                sample.set_gt_score(score)
        return dict(inputs=batch, data_samples=data_samples)
