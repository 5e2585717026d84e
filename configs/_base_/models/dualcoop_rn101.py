# DualCoOp (METHODS.md section 1): positive + negative learnable contexts (16 each,
# class-specific), class-specific region aggregation over dense RN101 features at 448 px,
# pair-softmax ASL. Only the contexts train.
model = dict(
    type='CLIPPromptClassifier',
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
                  reduction='sum', loss_weight=0.03)),
)
