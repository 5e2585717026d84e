# Runtime shared by every mlr_plugin config (mmengine Runner, mmpretrain scope).
from mlr_plugin.engine.visualizer import MLRVisualizer

default_scope = 'mmpretrain'

# The plugin to import before anything is built. mmengine's Config.fromfile honours
# custom_imports only for old-style (`_base_ = [...]`) configs; these configs use
# `read_base()` (lazy import), where it is kept as plain data. What loads mlr_plugin under
# mmengine's / mmpretrain's own tools is the model bases' `from mlr_plugin.models import
# CLIPPromptClassifier`: the Runner builds the model (and so imports the plugin, which
# registers its datasets, transforms, metrics and hooks) before any of those.
custom_imports = dict(imports=['mlr_plugin'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # progress readout: iteration, ETA, losses, lr, time per iteration
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the last checkpoint and the best one by validation mAP
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=2,
                    save_best='mAP', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

# Class names travel from each loop's dataset to the model (zero-shot: train and test
# score different lists).
custom_hooks = [dict(type='ClassNamesHook')]

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# Text log + JSON scalars (vis_data/scalars.json) for every metric, per-class AP included.
# TensorBoard too (event files in vis_data/; needs `pip install tensorboard`):
#   python tools/train.py CONFIG --cfg-options visualizer.tensorboard=True
#   tensorboard --logdir work_dirs
# (The class is imported, not named: the Runner builds the visualizer before the model,
# so under mmengine's own tools the plugin is not registered yet at that point.)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type=MLRVisualizer, vis_backends=vis_backends, tensorboard=False)
log_processor = dict(window_size=20)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
