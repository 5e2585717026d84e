# MKT stage 2 on Open Images: the image tower (with its stage-1 blocks) is frozen; the
# context vectors of "There is a {} in the scene" train with the ranking loss. Starts from
# the stage-1 checkpoint (load_from below, or --cfg-options load_from=...).
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.openimages_mkt import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.mkt_vit_b16 import *  # noqa: F401,F403
    from .._base_.schedules.mkt_adamw_stage2_4e import *  # noqa: F401,F403

train_dataloader.batch_size = 64
model.prompt_learner.learnable = True
model.train_image_tower = False
model.distill_loss = None
val_evaluator.score_dtype = 'float16'
test_evaluator.score_dtype = 'float16'
load_from = 'work_dirs/mkt_vit-b16_openimages-stage1/epoch_20.pth'
