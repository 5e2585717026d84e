# MKT stage 2 on zero-shot NUS-WIDE 925/81: the image tower (with its stage-1 blocks) is
# frozen; the context vectors of "There is a {} in the scene" ([SOS], the template's
# words, [EOT]) train with the ranking loss, class-name tokens stay CLIP's. Starts from
# the stage-1 checkpoint:
#   python tools/train.py configs/mkt/nuswide_stage2.py \
#       --cfg-options load_from=work_dirs/mkt_vit-b16_nuswide-zsl-stage1/epoch_20.pth
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.nuswide_zsl_224px import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.mkt_vit_b16 import *  # noqa: F401,F403
    from .._base_.schedules.mkt_adamw_stage2_4e import *  # noqa: F401,F403

train_dataloader.batch_size = 64
model.prompt_learner.learnable = True
model.train_image_tower = False
model.distill_loss = None
load_from = 'work_dirs/mkt_vit-b16_nuswide-zsl-stage1/epoch_20.pth'
