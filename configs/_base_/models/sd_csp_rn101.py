# Semantic decoupling + category-specific prompts (Ruan et al.; docs/methods.md section 4):
# one learnable context per class (16 tokens, class-specific), a semantic-guided spatial
# attention per class over the dense RN101 features at 448 px, guided by the class's
# frozen CLIP text feature ("a photo of a {}."), scored against the class's own prompt;
# sigmoid ASL on the known labels. The attention module and the contexts train; CLIP is
# frozen. Backbone and recipe as DualCoOp's (our choice: the paper's are not public).
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
        type='MergedPrompts',
        learners=[
            # the category-specific prompts g_c
            dict(type='LearnablePrompts', prompt_names=('pos', ), n_ctx=16,
                 class_specific=True),
            # the semantic vectors x_c: fixed, encoded once by the frozen text tower
            dict(type='HandcraftedPrompts', templates=dict(semantic=['a photo of a {}.'])),
        ],
        num_classes=80),  # of the class-specific learners
    head=dict(
        type='SemanticDecouplingHead',
        feat_dim=512,  # RN101's joint embedding width
        inner_dim=1024,
        logit_scale=100.0,  # OpenAI CLIP's own logit scale
        proj_init='identity',
        # ours: the attention starts as CLIP's text-guided spatial softmax with DualCoOp's
        # spatial scale 20 (a random init learns far slower; docs/methods.md section 4)
        attention_init='clip',
        init_temperature=20.0,
        frozen_parts=(),
        class_chunk=16,  # B x 16 x L x 1024 activations at a time, recomputed in backward
        recompute=True,
        loss=dict(type='PartialSigmoidASL', gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
                  eps=1e-6, reduction='sum', loss_weight=0.03)),
)
