# Semantic decoupling + category-specific prompts, COCO-2014, partial labels: the recipe
# shared by coco_p10..p90.py (RN101, 448 px, DualCoOp's schedule). The known-label ratio
# is set by the child configs.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.coco import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.sd_csp_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.prompt_learner.num_classes = 80
optim_wrapper.optimizer.lr = 0.002
param_scheduler[0].factor = 1e-5 / 0.002
