# Zero-shot baseline on the demo world: the shipped tiny CLIP with hand-crafted prompts
# ("a photo of a {}." vs "a photo without a {}."), nothing trained:
#   python tools/test.py configs/demo/zeroshot_handcrafted.py
from mmengine.config import read_base

with read_base():
    from .zeroshot_dualcoop import *  # noqa: F401,F403

model.prompt_learner = dict(
    type='HandcraftedPrompts',
    templates=dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))
