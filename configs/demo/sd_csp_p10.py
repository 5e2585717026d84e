# Semantic decoupling + category-specific prompts on the demo world with 10% of the labels
# known, on the same budget as every trained demo row (_base_/schedules/sgd_cosine_demo.py:
# 1000 iterations of batch 32, SGD lr 0.03, cosine; flip only).
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.demo_world import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.sd_csp_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_demo import *  # noqa: F401,F403

model.backbone.update(
    model_name='mlr-demo-rn',
    pretrained='mlr_plugin://demo/mlr-demo-rn.safetensors',
    image_size=128)
model.prompt_learner.num_classes = 20
# The tiny CLIP's joint space is 64 wide; the attention MLP keeps RN101's 2 x D ratio
# (1024 = 2 x 512), which also keeps it cheap on a CPU. Scales from the CLIP's own logit
# scale s (13.198 here, 100 for OpenAI CLIP; tools/demo/demo_scales.py): the cosine logit
# scale 100 becomes s, and the initial attention temperature is DualCoOp's spatial scale
# in each world (20 with OpenAI CLIP, 7 in configs/demo/dualcoop_p10.py).
model.head.update(feat_dim=64, inner_dim=128, logit_scale=13.198, init_temperature=7.0)
train_dataloader.dataset.label_simulation.known_ratio = 0.1
default_hooks.logger.interval = 10
