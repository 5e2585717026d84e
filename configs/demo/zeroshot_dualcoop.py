# Zero-shot DualCoOp on the demo world: shared contexts trained on 15 seen classes (all
# their labels known); the test scores all 20 classes (GZSL) and the 5 held-out ones
# (ZSL, keys 'zsl/...'), none of which was named during training.
from mmengine.config import read_base

with read_base():
    from .dualcoop_p10 import *  # noqa: F401,F403  (same method: its demo-CLIP settings)
    from .._base_.datasets.demo_world_zsl import *  # noqa: F401,F403  (replaces the data)

model.prompt_learner.update(class_specific=False, num_classes=None)
