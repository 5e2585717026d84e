# DualCoOp++ on the demo world with 10% of the labels known (evidential + positive +
# negative contexts, evidence-guided aggregation, Winner-Take-All).
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.demo_world import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.dualcoop_pp_rn101 import *  # noqa: F401,F403
    from .._base_.schedules.sgd_cosine_demo import *  # noqa: F401,F403

model.backbone.update(
    model_name='mlr-demo-rn',
    pretrained='mlr_plugin://demo/mlr-demo-rn.safetensors',
    image_size=128)
model.prompt_learner.num_classes = 20
# Scales matched to the tiny CLIP's learned temperature (~13, vs 100 for OpenAI CLIP).
model.head.update(map_scale=5.0, init_log_temperature=1.5)
train_dataloader.dataset.label_simulation.known_ratio = 0.1
default_hooks.logger.interval = 10
# Three prompts per class cost ~25% more per step on CPU than DualCoOp's two, so 3 epochs
# (750 iterations) keep train + test under 3 minutes on 2 cores.
train_cfg.update(max_epochs=3, val_interval=3)
param_scheduler[0].end = 3
