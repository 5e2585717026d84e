# TRM-ML, NUS-WIDE (81 concepts), single positive label, LargeLoss setup
# (paper Table 2, left; docs/protocols.md "Single positive label"): one random
# positive per training image (seed 1200), 80% of the official training images
# for training, the other 20% for validation, the official Test split as the
# test set.
# Paper recipe (Table 2, "Implementation details"): frozen CLIP RN50 (image and text
# towers), 448 px, AdamW + OneCycle (max lr 5e-4), batch 128, 40 epochs.
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.nuswide_single_positive import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.trm_ml_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.adamw_onecycle_40e import *  # noqa: F401,F403

# head, prototype bank and contrastive loss take their class count from the prompt
# learner and their width from the backbone (1024 for RN50)
model.backbone.model_name = 'RN50'
model.prompt_learner.num_classes = 81
# One known label per image, a positive: the unknown entries the prototypes leave
# without a pseudo-label count as negatives (else nothing is ever negative).
model.unknown_as_negative = True

train_dataloader.batch_size = 128
