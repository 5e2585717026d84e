# MKT (docs/methods.md section 5), stage 1: CLIP ViT-B/16 at 224 px whose last 2 blocks,
# ln_post and proj fine-tune (a frozen copy of that tail is the distillation teacher),
# two-stream scores against label embeddings of the fixed template "There is a {} in
# the scene" (encoded once, un-normalised), ranking loss + L1 distillation of the
# class-token embedding. Stage 2 (configs/mkt/*_stage2.py) freezes the tower and makes
# the template's context vectors learnable.
# Importing the classifier class loads mlr_plugin (see dualcoop_rn101.py).
from mlr_plugin.models import MKTClassifier

model = dict(
    type=MKTClassifier,
    backbone=dict(
        type='OpenCLIPBackbone',
        model_name='ViT-B-16',
        pretrained='openai',
        image_size=224,
        trainable_vision_blocks=2,
        with_teacher=True),
    prompt_learner=dict(
        type='TemplateContextPrompts',
        template='There is a {} in the scene',
        learnable=False,
        learn_special_tokens=True,
        normalize=False),
    head=dict(
        type='MKTTwoStreamHead',
        topk_patches=16,
        normalize=True,
        loss=dict(type='PairwiseRankingLoss', margin=1.0, eps=1e-8,
                  skip_images_without_positive=True),
        topk=3),
    train_image_tower=True,
    distill_loss=dict(type='EmbeddingL1Loss', loss_weight=1.0),
    skip_images_without_positive=True,
    # MKT's reference code normalises images with ImageNet's mean/std (timm defaults),
    # not CLIP's, for the student and the teacher alike.
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=False),
)
