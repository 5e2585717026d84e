# DualCoOp++, COCO-2014, partial labels: the recipe shared by coco_p10..p90.py
# (RN101, 448 px). The known-label ratio is set by the child configs.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.coco import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_pp_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.prompt_learner.num_classes = 80
# DualCoOp++ recipe: SGD lr 0.005, batch 64, random-resized-crop (0.5-1) + flip +
# RandAugment + Cutout.
optim_wrapper.optimizer.lr = 0.005
param_scheduler[0].factor = 1e-5 / 0.005
train_dataloader.batch_size = 64
auto_scale_lr.base_batch_size = 64
train_dataloader.dataset.pipeline = train_pipeline_rrc
