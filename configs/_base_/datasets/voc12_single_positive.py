# PASCAL VOC 2012, single positive label, LargeLoss setup (docs/protocols.md "Single
# positive label"), labels as in Cole et al.'s VOC 2012 files: a class is positive when
# it has a non-difficult object, otherwise negative (difficult_as='negative'), and only
# images with a positive are used (train 5,717 / val 5,823 in the full release).
# - train: 80% of `train`, one random positive per image (drawn once over all of
#   `train`, seed 1200), every other label unknown;
# - val: the other 20% of `train`, full labels (model selection);
# - test: `val`, full labels.
# The SPLC-setup configs train on all of `train` and validate on the test set.
from mmengine.config import read_base

with read_base():
    from .voc12 import *  # noqa: F401,F403

single_positive = dict(type='SinglePositiveLabel', setup='largeloss', seed=1200)
train_holdout = dict(part='train', fraction=0.2, seed=1200)

train_dataloader.dataset.difficult_as = 'negative'
train_dataloader.dataset.drop_no_positive = True
train_dataloader.dataset.label_simulation = single_positive
train_dataloader.dataset.holdout = train_holdout

val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        difficult_as='negative',
        drop_no_positive=True,
        holdout=dict(part='val', fraction=0.2, seed=1200),
        test_mode=True,
        pipeline=test_pipeline),
)

test_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        difficult_as='negative',
        drop_no_positive=True,
        test_mode=True,
        pipeline=test_pipeline),
)
test_evaluator = val_evaluator
