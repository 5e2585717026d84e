# TRM-ML, VG-200, partial labels: the recipe shared by vg200_p10..p90.py (paper
# Sec. 4.1: frozen CLIP RN101, 448 px, AdamW + OneCycleLR max lr 5e-4, batch 128,
# 40 epochs). The known-label ratio is set by the child configs.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.vg200 import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.trm_ml_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.adamw_onecycle_40e import *  # noqa: F401,F403

model.prompt_learner.num_classes = 200
train_dataloader.batch_size = 128
