# CUB-200-2011 (312 attributes), single positive label, LargeLoss setup
# (docs/protocols.md "Single positive label"):
# - train: 80% of the official train images, one random present attribute per image
#   (drawn once over all 5,994, seed 1200), every other label unknown;
# - val: the other 20% of the train images, full labels (model selection);
# - test: the official test images (5,794), full labels.
# The SPLC-setup configs train on all 5,994 and validate on the test set.
from mmengine.config import read_base

with read_base():
    from .cub200 import *  # noqa: F401,F403

single_positive = dict(type='SinglePositiveLabel', setup='largeloss', seed=1200)
train_holdout = dict(part='train', fraction=0.2, seed=1200)

train_dataloader.dataset.label_simulation = single_positive
train_dataloader.dataset.holdout = train_holdout

val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        holdout=dict(part='val', fraction=0.2, seed=1200),
        test_mode=True,
        pipeline=test_pipeline),
)

test_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='test',
        test_mode=True,
        pipeline=test_pipeline),
)
test_evaluator = val_evaluator
