# DualCoOp, zero-shot COCO 48/17 (Bansal et al. split, docs/protocols.md): shared 64 + 64
# contexts trained on the images with a seen class, labelled with the 48 seen classes
# only (RN50, 224 px). The test scores all 65 classes (GZSL: mAP, P/R/F1@3,5) and
# reports the 17 unseen ones from the same run (ZSL: keys 'zsl/...'), each on the val
# images with a positive in its class set (_base_/datasets/coco_zsl_224px.py).
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.coco_zsl_224px import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.backbone.update(model_name='RN50', image_size=224)
model.prompt_learner.update(n_ctx=64, class_specific=False, num_classes=None)
model.head.loss.loss_weight = 0.01  # the authors' zero-shot setting
