# COCO-2014, single positive label, LargeLoss setup (Kim et al., CVPR 2022, on the data
# protocol of Cole et al., CVPR 2021; docs/protocols.md "Single positive label"):
# - train: 80% of the train2014 images with an object, one random positive per image
#   (drawn once over all of train2014, seed 1200), every other label unknown;
# - val: the other 20% of train2014 (seed-1200 split), full labels (model selection);
# - test: val2014 (images with an object), full labels.
# The SPLC-setup configs train on all of train2014 instead and validate on the test set.
from mmengine.config import read_base

with read_base():
    from .coco import *  # noqa: F401,F403

single_positive = dict(type='SinglePositiveLabel', setup='largeloss', seed=1200)
train_holdout = dict(part='train', fraction=0.2, seed=1200)

train_dataloader.dataset.label_simulation = single_positive
train_dataloader.dataset.holdout = train_holdout

val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2014.json',
        data_prefix=dict(img_path='train2014'),
        holdout=dict(part='val', fraction=0.2, seed=1200),
        test_mode=True,
        pipeline=test_pipeline),
)

test_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2014.json',
        data_prefix=dict(img_path='val2014'),
        test_mode=True,
        pipeline=test_pipeline),
)
test_evaluator = val_evaluator
