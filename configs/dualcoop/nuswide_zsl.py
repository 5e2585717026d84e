# DualCoOp, zero-shot NUS-WIDE 925/81: shared 64 + 64 contexts trained on the 925 Flickr
# tags (RN50, 224 px); the test scores all 1006 labels (GZSL) and reports the 81
# concepts from the same run (ZSL: keys 'zsl/...'). Each training step encodes 100 of the
# 925 classes, always including the batch's known positives.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.nuswide_zsl_224px import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.backbone.update(model_name='RN50', image_size=224)
model.prompt_learner.update(n_ctx=64, class_specific=False, num_classes=None)
model.num_train_classes = 100
# the authors' zero-shot NUS-WIDE settings
model.head.loss.loss_weight = 0.01
optim_wrapper.optimizer.lr = 0.001
param_scheduler[0].factor = 1e-5 / 0.001
