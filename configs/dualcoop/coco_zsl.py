# DualCoOp, zero-shot COCO 48/17 (Bansal et al. split, PROTOCOLS.md): shared 64 + 64
# contexts trained on the 48 seen classes only (RN50, 224 px). The test scores all 65
# classes (GZSL: mAP, P/R/F1@3,5) and reports the 17 unseen ones from the same run
# (ZSL: keys 'zsl/...').
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.coco import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.backbone.model_name = 'RN50'
model.backbone.image_size = 224
model.prompt_learner.n_ctx = 64
model.prompt_learner.class_specific = False
model.prompt_learner.num_classes = None
model.head.loss.loss_weight = 0.01  # the authors' zero-shot setting

# 224 px pipelines
train_dataloader.dataset.pipeline[0].target_size = 224
train_dataloader.dataset.pipeline[1].scale = (224, 224)
train_dataloader.dataset.pipeline[4].shape = 112
val_dataloader.dataset.pipeline[0].target_size = 224
val_dataloader.dataset.pipeline[1].scale = (224, 224)

# Train on the seen classes only: unseen labels of training images are never used.
train_dataloader.dataset.classes = 'coco_seen48'
train_dataloader.dataset.label_simulation = None
val_dataloader.dataset.classes = 'coco_zsl65'
val_evaluator = dict(type='MultiLabelRecognitionMetric', ks=(3, 5),
                     class_subsets=dict(zsl='coco_unseen17'))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
