# DualCoOp on the demo world with 10% of the labels known: the README's first command.
# Trains the prompt contexts of the shipped tiny CLIP on CPU, then prints the val mAP.
#   python -m mlr_plugin.datasets.demo_world --out data/demo_world
#   python tools/train.py configs/demo/dualcoop_p10.py
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.demo_world import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_demo import *  # noqa: F401,F403

model.backbone.update(
    model_name='mlr-demo-rn',
    pretrained='mlr_plugin://demo/mlr-demo-rn.safetensors',
    image_size=128)
model.prompt_learner.num_classes = 20
# The tiny CLIP learned a logit scale of ~13, not OpenAI CLIP's 100: at DualCoOp's fixed
# 20 x 5 the pair-softmax saturates and nothing is learned, so spatial x logit = 7 x 2
# matches its temperature as 20 x 5 matches OpenAI CLIP's.
model.head.update(spatial_scale=7.0, logit_scale=2.0)
train_dataloader.dataset.label_simulation.known_ratio = 0.1
default_hooks.logger.interval = 10
