# Semantic decoupling + category-specific prompts, COCO-2014, 80% of the labels known
# (RN101, 448 px).
from mmengine.config import read_base

with read_base():
    from .sd_csp_rn101_coco import *  # noqa: F401,F403

train_dataloader.dataset.label_simulation.known_ratio = 0.8
