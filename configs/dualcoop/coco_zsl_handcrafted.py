# Zero-shot CLIP baseline with hand-crafted prompts on COCO 48/17 (nothing trains):
#   python tools/test.py configs/dualcoop/coco_zsl_handcrafted.py
# "a photo of a {}." vs "a photo without a {}." scored with the same dense region
# aggregation as DualCoOp, so the only difference to coco_zsl.py is learned vs fixed prompts.
from mmengine.config import read_base

with read_base():
    from .coco_zsl import *  # noqa: F401,F403

model.prompt_learner = dict(
    type='HandcraftedPrompts',
    templates=dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))
