# DualCoOp (docs/methods.md section 1): positive + negative learnable contexts (16 each,
# class-specific), class-specific region aggregation over dense RN101 features at 448 px,
# pair-softmax ASL. Only the contexts train.
# Importing the classifier class (instead of naming it as a string) loads mlr_plugin,
# and with it every module it registers, when mmengine builds the model: configs run
# under mmengine's / mmpretrain's own tools (lazy configs ignore custom_imports).
from mlr_plugin.models import CLIPPromptClassifier

model = dict(
    type=CLIPPromptClassifier,
    backbone=dict(
        type='OpenCLIPBackbone',
        model_name='RN101',
        pretrained='openai',
        image_size=448,
        with_mean_token=True,
        with_pos_embed=True),
    prompt_learner=dict(
        type='LearnablePrompts',
        prompt_names=('pos', 'neg'),
        n_ctx=16,
        class_specific=True,
        num_classes=80),
    head=dict(
        type='DualCoOpHead',
        spatial_scale=20.0,
        logit_scale=5.0,
        loss=dict(type='PairSoftmaxASL', gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
                  eps=1e-6,  # DualCoOp's reference code clamps probabilities at 1e-6
                  reduction='sum', loss_weight=0.03)),
)
