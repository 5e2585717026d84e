# NUS-WIDE (81 concepts), single positive label, LargeLoss setup (docs/protocols.md
# "Single positive label"); images without a positive concept are dropped (nuswide.py).
# - train: 80% of the official Train list, one random positive per image (drawn once
#   over the whole list, seed 1200), every other label unknown;
# - val: the other 20% of the Train list, full labels (model selection);
# - test: the official Test list, full labels.
# Cole et al. / LargeLoss used the images still online when they re-crawled NUS-WIDE in
# 2020, so their image counts are lower than the full release's.
# The SPLC-setup configs train on the whole Train list and validate on the test set.
from mmengine.config import read_base

with read_base():
    from .nuswide import *  # noqa: F401,F403

single_positive = dict(type='SinglePositiveLabel', setup='largeloss', seed=1200)
train_holdout = dict(part='train', fraction=0.2, seed=1200)

train_dataloader.dataset.label_simulation = single_positive
train_dataloader.dataset.holdout = train_holdout

val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageList/TrainImagelist.txt',
        classes_file='Concepts81.txt',
        label_dir='Groundtruth/TrainTestLabels',
        split='Train',
        data_prefix=dict(img_path='Flickr'),
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
        ann_file='ImageList/TestImagelist.txt',
        classes_file='Concepts81.txt',
        label_dir='Groundtruth/TrainTestLabels',
        split='Test',
        data_prefix=dict(img_path='Flickr'),
        drop_no_positive=True,
        test_mode=True,
        pipeline=test_pipeline),
)
test_evaluator = val_evaluator
