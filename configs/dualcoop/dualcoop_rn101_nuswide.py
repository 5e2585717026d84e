# DualCoOp, NUS-WIDE (81 concepts), partial labels: the recipe shared by nuswide_p10..p90.py
# (RN101, 448 px). The known-label ratio is set by the child configs.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.nuswide import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.prompt_learner.num_classes = 81
optim_wrapper.optimizer.lr = 0.002
param_scheduler[0].factor = 1e-5 / 0.002
