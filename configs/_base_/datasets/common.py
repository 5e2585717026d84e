# Pipelines and loader settings shared by the dataset configs (CLIP input, S x S, S = 448
# here; common_224px.py gives the same pipelines at 224 px).
# Decode with OpenCV at reduced resolution when the file is much larger than needed,
# resize to S x S *before* the heavy augmentation, then RandAugment + Cutout (DualCoOp).
# LoadImageCV2 decodes to RGB; the data preprocessor applies CLIP's mean/std on the batch
# (on the GPU when there is one): that is the seam where augmentation can move to GPU.
#
# The steps that do not depend on S are defined once here; a pipeline at another size
# lists them next to its own size-dependent steps (configs cannot define functions).
clip_mean_fill = [124, 116, 104]  # CLIP's pixel mean, the fill of RandAugment / Cutout
random_flip = dict(type='RandomFlip', prob=0.5, direction='horizontal')
rand_augment = dict(type='RandAugment', policies='timm_increasing', num_policies=2,
                    total_level=10, magnitude_level=9, magnitude_std=0.5,
                    hparams=dict(pad_val=clip_mean_fill))
pack_inputs = dict(type='PackInputs')

image_size = 448

train_pipeline = [
    dict(type='LoadImageCV2', to_rgb=True, target_size=image_size),
    dict(type='Resize', scale=(image_size, image_size)),
    random_flip,
    rand_augment,
    dict(type='Cutout', shape=image_size // 2, pad_val=clip_mean_fill, prob=0.5),
    pack_inputs,
]

# DualCoOp++'s training augmentation: random-resized-crop (scale 0.5-1) instead of the
# plain resize, then flip, RandAugment and Cutout.
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
