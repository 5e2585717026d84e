# DualCoOp++ (docs/methods.md section 2): evidential + positive + negative contexts (21
# each, class-specific), evidence-guided region aggregation with a learnable temperature,
# Winner-Take-All, pair-softmax ASL (sum x 0.02). Dense RN101 features without the mean
# token and positional embedding (196 tokens at 448 px), as in the authors' code.
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
        with_mean_token=False,
        with_pos_embed=False),
    prompt_learner=dict(
        type='LearnablePrompts',
        prompt_names=('evidence', 'pos', 'neg'),
        n_ctx=21,
        class_specific=True,
        num_classes=80),
    head=dict(
        type='DualCoOpPlusPlusHead',
        init_log_temperature=3.0,
        gamma=200.0,
        use_wta=True,
        loss=dict(type='PairSoftmaxASL', gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
                  eps=1e-8,  # DualCoOp++'s reference code clamps at 1e-8
                  reduction='sum', loss_weight=0.02)),
)
