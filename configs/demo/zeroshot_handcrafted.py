# Zero-shot baseline on the demo world: the shipped tiny CLIP with hand-crafted prompts
# ("a photo of a {}." vs "a photo without a {}."), nothing trained:
#   python tools/test.py configs/demo/zeroshot_handcrafted.py
# Same backbone, head scales and test protocol as zeroshot_dualcoop.py, built from the
# shared bases (a baseline does not inherit a DualCoOp training config).
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.demo_world_zsl import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_demo import *  # noqa: F401,F403

model.backbone.update(
    model_name='mlr-demo-rn',
    pretrained='mlr_plugin://demo/mlr-demo-rn.safetensors',
    image_size=128)
# the demo CLIP's scales (see dualcoop_p10.py)
model.head.update(spatial_scale=7.0, logit_scale=2.0)
default_hooks.logger.interval = 10
model.prompt_learner = dict(
    type='HandcraftedPrompts',
    templates=dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))
