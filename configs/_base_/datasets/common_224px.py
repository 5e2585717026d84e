# common.py's pipelines at 224 px (the zero-shot recipes: CLIP RN50 at its native size).
# Same steps and order; only the size-dependent ones change (decode target, resize,
# Cutout S/2 = 112). The loader settings are common.py's.
from mmengine.config import read_base

with read_base():
    from .common import *  # noqa: F401,F403

image_size = 224

train_pipeline = [
    dict(type='LoadImageCV2', to_rgb=True, target_size=image_size),
    dict(type='Resize', scale=(image_size, image_size)),
    random_flip,
    rand_augment,
    dict(type='Cutout', shape=image_size // 2, pad_val=clip_mean_fill, prob=0.5),
    pack_inputs,
]

train_pipeline_rrc = [
    dict(type='LoadImageCV2', to_rgb=True, target_size=image_size),
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.5, 1.0)),
    random_flip,
    rand_augment,
    dict(type='Cutout', shape=image_size // 2, pad_val=clip_mean_fill, prob=0.5),
    pack_inputs,
]

test_pipeline = [
    dict(type='LoadImageCV2', to_rgb=True, target_size=image_size),
    dict(type='Resize', scale=(image_size, image_size)),
    pack_inputs,
]
