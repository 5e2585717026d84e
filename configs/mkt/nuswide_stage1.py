# MKT stage 1 on zero-shot NUS-WIDE 925/81 (ViT-B/16, 224 px): fine-tune the last 2
# blocks + ln_post + proj with the ranking loss on the 925 seen tags and L1 distillation
# from the frozen CLIP tower. The test scores all 1006 labels (GZSL) and reports the 81
# concepts from the same run (ZSL: keys 'zsl/...'), mAP and P/R/F1 at K = 3 and 5.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.nuswide_zsl_224px import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.mkt_vit_b16 import *  # noqa: F401,F403
    from .._base_.schedules.mkt_adamw_stage1_20e import *  # noqa: F401,F403

train_dataloader.batch_size = 64
