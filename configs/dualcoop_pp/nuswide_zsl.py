# DualCoOp++, zero-shot NUS-WIDE 925/81: shared contexts trained on the 925 tags (RN50,
# 224 px); GZSL on all 1006 labels, ZSL on the 81 concepts from the same test run.
from mmengine.config import read_base

with read_base():
    from ..dualcoop.nuswide_zsl import *  # noqa: F401,F403
    from .._base_.models.dualcoop_pp_rn101 import *  # noqa: F401,F403

model.backbone.model_name = 'RN50'
model.backbone.image_size = 224
model.prompt_learner.class_specific = False
model.prompt_learner.num_classes = None
model.num_train_classes = 100
optim_wrapper.optimizer.lr = 0.005
param_scheduler[0].factor = 1e-5 / 0.005
