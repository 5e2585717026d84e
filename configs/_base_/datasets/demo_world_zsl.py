# Zero-shot protocol of the demo world: train on the 15 seen classes (all their labels
# known), test on all 20 classes (GZSL) and on the 5 held-out ones (ZSL, keys 'zsl/...').
from mmengine.config import read_base

with read_base():
    from .demo_world import *  # noqa: F401,F403

train_dataloader.dataset.update(classes='demo_seen15', label_simulation=None)
val_evaluator.update(ks=(3, 5), class_subsets=dict(zsl='demo_unseen5'))
test_evaluator = val_evaluator
