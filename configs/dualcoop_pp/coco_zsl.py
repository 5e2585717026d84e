# DualCoOp++, zero-shot COCO 48/17: shared evidential / positive / negative contexts
# trained on the 48 seen classes (RN50, 224 px); GZSL on 65 classes and ZSL on the 17
# unseen ones from the same test run, with the protocol of
# _base_/datasets/coco_zsl_224px.py. n_ctx 21 (the DualCoOp++ default) [ours for ZSL].
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.coco_zsl_224px import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_pp_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.backbone.update(model_name='RN50', image_size=224)
model.prompt_learner.update(class_specific=False, num_classes=None)
optim_wrapper.optimizer.lr = 0.005
param_scheduler[0].factor = 1e-5 / 0.005
