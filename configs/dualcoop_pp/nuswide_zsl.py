# DualCoOp++, zero-shot NUS-WIDE 925/81: shared contexts trained on the 925 tags (RN50,
# 224 px); GZSL on all 1006 labels, ZSL on the 81 concepts from the same test run. Each
# training step encodes 100 of the 925 classes, always including the batch's known
# positives.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.nuswide_zsl_224px import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_pp_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.backbone.update(model_name='RN50', image_size=224)
model.prompt_learner.update(class_specific=False, num_classes=None)
model.num_train_classes = 100
optim_wrapper.optimizer.lr = 0.005
param_scheduler[0].factor = 1e-5 / 0.005
