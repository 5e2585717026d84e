# MKT stage 1 on zero-shot COCO 48/17 (Bansal et al. split; ViT-B/16, 224 px): fine-tune
# the last 2 blocks + ln_post + proj with the ranking loss on the 48 seen classes and L1
# distillation from the frozen CLIP tower. The test scores all 65 classes (GZSL) and
# reports the 17 unseen classes from the same run (ZSL: keys 'zsl/...'), mAP and P/R/F1 at K = 3 and 5.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.coco_zsl_224px import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.mkt_vit_b16 import *  # noqa: F401,F403
    from .._base_.schedules.mkt_adamw_stage1_20e import *  # noqa: F401,F403

train_dataloader.batch_size = 64
