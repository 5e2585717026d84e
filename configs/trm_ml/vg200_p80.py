# TRM-ML, VG-200, 80% of the labels known (RN101, 448 px).
from mmengine.config import read_base

with read_base():
    from .trm_ml_rn101_vg200 import *  # noqa: F401,F403

train_dataloader.dataset.label_simulation.known_ratio = 0.8
