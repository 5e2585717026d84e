# TRM-ML, NUS-WIDE (81 concepts), single positive label, SPLC setup
# (paper Table 2, right; docs/protocols.md "Single positive label"): one random
# positive per image of the whole official training split (drawn once), no
# held-out part; the official Test split is the test set and, as in the
# reference code, also the validation set: report the final checkpoint (no "best"
# checkpoint is chosen on it). Recipe as the LargeLoss config.
from mmengine.config import read_base

with read_base():
    from .nuswide_single_positive_largeloss import *  # noqa: F401,F403

train_dataloader.dataset.label_simulation = dict(
    type='SinglePositiveLabel', setup='splc', seed=0)
train_dataloader.dataset.holdout = None
val_dataloader = test_dataloader
default_hooks.checkpoint.save_best = None  # never select on the test set
