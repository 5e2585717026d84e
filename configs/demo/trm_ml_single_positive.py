# TRM-ML on the demo world with one positive label per image (every other entry
# unknown), the demo budget. Unknown entries the prototypes do not pseudo-label count
# as negative ("assume negative", the starting point of the single-positive setups):
# with no known negative there is no negative threshold, so the bank can only turn
# assumed negatives into pseudo-positives.
#   python tools/train.py configs/demo/trm_ml_single_positive.py
from mmengine.config import read_base

with read_base():
    from .trm_ml_p10 import *  # noqa: F401,F403

model.unknown_as_negative = True
train_dataloader.dataset.label_simulation = dict(type='SinglePositiveLabel', seed=0)
