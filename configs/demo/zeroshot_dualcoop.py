# Zero-shot DualCoOp on the demo world: shared contexts trained on 15 seen classes (all
# their labels known); the test scores all 20 classes (GZSL) and the 5 held-out ones
# (ZSL, keys 'zsl/...'), none of which was named during training.
from mmengine.config import read_base

with read_base():
    from .dualcoop_p10 import *  # noqa: F401,F403

model.prompt_learner.update(class_specific=False, num_classes=None)
train_dataloader.dataset.classes = 'demo_seen15'
train_dataloader.dataset.label_simulation = None
val_evaluator = dict(type='MultiLabelRecognitionMetric', ks=(3, 5),
                     class_subsets=dict(zsl='demo_unseen5'))
test_evaluator = val_evaluator
