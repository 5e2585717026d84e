# Pipelines and loader settings shared by the dataset configs (CLIP input, S x S).
# Decode with OpenCV at reduced resolution when the file is much larger than needed,
# resize to S x S *before* the heavy augmentation, then RandAugment + Cutout (DualCoOp).
# LoadImageCV2 decodes to RGB; the data preprocessor applies CLIP's mean/std on the batch
# (on the GPU when there is one): that is the seam where augmentation can move to GPU.
image_size = 448

train_pipeline = [
    dict(type='LoadImageCV2', to_rgb=True, target_size=image_size),
    dict(type='Resize', scale=(image_size, image_size)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[124, 116, 104])),
    dict(type='Cutout', shape=image_size // 2, pad_val=[124, 116, 104], prob=0.5),
    dict(type='PackInputs'),
]

# DualCoOp++'s training augmentation: random-resized-crop (scale 0.5-1) instead of the
# plain resize, then flip, RandAugment and Cutout.
train_pipeline_rrc = [
    dict(type='LoadImageCV2', to_rgb=True, target_size=image_size),
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[124, 116, 104])),
    dict(type='Cutout', shape=image_size // 2, pad_val=[124, 116, 104], prob=0.5),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageCV2', to_rgb=True, target_size=image_size),
    dict(type='Resize', scale=(image_size, image_size)),
    dict(type='PackInputs'),
]

# Loader settings shared by every dataset config: `dict(**train_loader, dataset=...)`.
train_loader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='EpochSeededSampler', shuffle=True),
)
test_loader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='EpochSeededSampler', shuffle=False),
)
