# MKT stage 1 on Open Images (open-vocabulary protocol: 7,186 seen classes for training,
# the 400 unseen for ZSL, all 7,586 for GZSL; mAP and P/R/F1 at K = 10 and 20; class-list
# files as in configs/_base_/datasets/openimages_mkt.py). ViT-B/16, 224 px, same recipe as
# the NUS-WIDE stage 1.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.openimages_mkt import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.mkt_vit_b16 import *  # noqa: F401,F403
    from .._base_.schedules.mkt_adamw_stage1_20e import *  # noqa: F401,F403

train_dataloader.batch_size = 64
# thousands of classes at test time: the heads score them in chunks, and the metric keeps
# fp16 scores (a 125k x 7,586 evaluation in ~3 GB; docs/scaling.md)
val_evaluator.score_dtype = 'float16'
test_evaluator.score_dtype = 'float16'
