# TRM-ML (docs/methods.md, TRM-ML section): class-specific positive + negative learnable
# contexts (16 each), category-aware region learning (one single-head cross-attention
# layer) over dense RN101 features at 448 px, knowledge distillation from the region
# path to the query path, a multimodal prototype bank that pseudo-labels unknown entries
# and a multimodal contrastive loss. Sigmoid ASL on known + pseudo labels.
# Ablation switches (paper Tables 3 and 6): head.use_carl, head.use_kd,
# model.pseudo_label_sources (('visual', 'text') / ('visual',) / ('text',) / ()),
# model.contrastive_loss (None = off). All off = the "modified DualCoOp" baseline.
# Importing the classifier class loads mlr_plugin when mmengine builds the model.
from mlr_plugin.models import TRMMLClassifier

model = dict(
    type=TRMMLClassifier,
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
    # num_classes and embed_dim of the head, bank and contrastive loss default to
    # prompt_learner.num_classes and the backbone's joint width (512 for RN101)
    head=dict(
        type='TRMMLHead',
        use_carl=True,
        use_kd=True,
        # [ours] the decoder starts as CLIP's own dense text-region matching: queries =
        # the class names' text features, e = s (cos(g_c, f_j) - m), F^q = the pooled
        # CLIP features (docs/methods.md, TRM-ML; 'random' = PyTorch's default init)
        query_init='text',
        decoder_init='clip',
        init_energy_scale=20.0,  # s
        init_energy_offset=0.2,  # m
        init_logit_scale=100.0,  # 1 / tau at start (CLIP's); tau is learnable (eq. 1)
        region_weight=1.0,  # alpha (eq. 14-15)
        kd_weight=0.05,  # beta
        loss=dict(type='PartialSigmoidASL', gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
                  eps=1e-8, reduction='mean')),
    prototype_bank=dict(
        type='MultimodalPrototypeBank',
        queue_length=64,  # l   [ours: not in the paper]
        topk=4,  # k         [ours]
        momentum=0.9),  # eta [ours]
    pseudo_label_sources=('visual', 'text'),
    contrastive_loss=dict(
        type='MultimodalContrastiveLoss',
        temperature=0.07,  # [ours]
        loss_weight=0.01),  # gamma (eq. 15)
)
