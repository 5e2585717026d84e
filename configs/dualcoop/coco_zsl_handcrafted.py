# Zero-shot CLIP baseline with hand-crafted prompts on COCO 48/17 (nothing trains):
#   python tools/test.py configs/dualcoop/coco_zsl_handcrafted.py
# "a photo of a {}." vs "a photo without a {}." scored with DualCoOp's dense region
# aggregation on the same backbone, input and test protocol as coco_zsl.py, so the only
# difference to it is learned vs fixed prompts. Built from the shared bases rather than
# from coco_zsl.py: the baseline does not inherit a training recipe it never uses.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.coco_zsl_224px import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_50e import *  # noqa: F401,F403

model.backbone.update(model_name='RN50', image_size=224)
model.prompt_learner = dict(
    type='HandcraftedPrompts',
    templates=dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))
