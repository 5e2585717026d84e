# DualCoOp on the demo world with all labels known (the upper reference of the demo table).
from mmengine.config import read_base

with read_base():
    from .dualcoop_p10 import *  # noqa: F401,F403

train_dataloader.dataset.label_simulation.known_ratio = 1.0
