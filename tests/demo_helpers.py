"""Shared demo-world pieces for the learning tests of every method.

``demo_features`` generates a fresh demo world (seed 7: neither the shipped world's seed
nor the CLIP corpus's) and runs the frozen tiny-CLIP tower once over it; the session
fixture ``demo_features`` in conftest.py computes it once for the whole test run. The
image tower is frozen and the learning tests use no augmentation, so reusing these
features at every step is exactly what a training run computes, minus repeated forwards.
"""
import numpy as np
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS, MODELS

from mlr_plugin.datasets.demo_world import generate_demo_world

DEMO_WEIGHTS = 'mlr_plugin://demo/mlr-demo-rn.safetensors'
# The demo configs' head settings (configs/demo/*.py): the tiny CLIP's learned
# temperature is ~13, not OpenAI CLIP's 100, so the region aggregation is scaled to match.
DEMO_HEAD = dict(type='DualCoOpHead', spatial_scale=7.0, logit_scale=2.0,
                 loss=dict(type='PairSoftmaxASL', reduction='sum', loss_weight=0.03))
HANDCRAFTED = dict(type='HandcraftedPrompts',
                   templates=dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))


def build_model(prompt_learner, class_names, head=DEMO_HEAD, **classifier):
    """A demo-CLIP classifier (seeded); ``head`` and extra classifier options vary."""
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='CLIPPromptClassifier',
        backbone=dict(type='OpenCLIPBackbone', model_name='mlr-demo-rn',
                      pretrained=DEMO_WEIGHTS, image_size=128),
        prompt_learner=prompt_learner, head=head, class_names=list(class_names),
        **classifier))


def demo_features(root):
    """Frozen-tower features and labels of a freshly generated world (seed 7: neither
    the demo world's seed nor the CLIP corpus's)."""
    generate_demo_world(root, seed=7, num_train=8000, num_val=1, num_test=500)
    model = build_model(HANDCRAFTED, ['x'])
    out = {}
    for split in ('train', 'test'):
        ds = DATASETS.build(dict(
            type='CocoMultiLabel', data_root=str(root),
            ann_file=f'annotations/instances_{split}.json', data_prefix=dict(img_path=split),
            pipeline=[dict(type='LoadImageCV2', to_rgb=True), dict(type='PackInputs')]))
        chunks = []
        for start in range(0, len(ds), 100):
            items = [ds[i] for i in range(start, min(start + 100, len(ds)))]
            data = model.data_preprocessor(
                dict(inputs=[it['inputs'] for it in items],
                     data_samples=[it['data_samples'] for it in items]), False)
            with torch.no_grad():
                chunks.append(model.extract_feat(data['inputs']))
        # tensors only: the grid (h, w) is the same for every image
        out[split] = dict(feats={k: torch.cat([c[k] for c in chunks]) for k in chunks[0]
                                 if torch.is_tensor(chunks[0][k])},
                          labels=torch.from_numpy(ds.get_label_matrix()),
                          classes=ds.metainfo['classes'])
    return out


def scores_of(model, feats):
    with torch.no_grad():
        return model.head.predict_scores(model.head(feats, model.encode_classes()))


def train_contexts(model, feats, gt, steps=300, lr=0.01, batch=32):
    """SGD on the contexts with a per-step cosine decay to 0, as tools/train.py does with
    the demo schedule (configs/_base_/schedules/sgd_cosine_demo.py)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=steps, eta_min=0.0)
    rng = np.random.RandomState(0)
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(gt), batch, replace=False))
        out = model.head({k: v[idx] for k, v in feats.items()}, model.encode_classes())
        loss = model.head.compute_loss(out, gt[idx])['loss_asl']
        optim.zero_grad()
        loss.backward()
        optim.step()
        cosine.step()


def handcrafted_zero_shot_scores(feats, classes):
    """The CLIP's own zero-shot scores with "a photo of a {}.", nothing trained:
    ``global``: cos(image embedding, text), CLIP's standard zero-shot classifier;
    ``dense``: max over locations of cos(dense feature, text) (MaskCLIP-style)."""
    model = build_model(HANDCRAFTED, classes)
    text = torch.nn.functional.normalize(
        model.backbone.encode_text([f'a photo of a {c}.' for c in classes]).float(), dim=-1)
    return dict(global_=feats['global_feat'] @ text.T,
                dense=torch.einsum('bld,cd->bcl', feats['dense'], text).amax(-1))


# ------------------------------------------------------------------ ViT demo CLIP (MKT)
DEMO_VIT_WEIGHTS = 'mlr_plugin://demo/mlr-demo-vit.safetensors'


def build_mkt_model(class_names, trainable_blocks=2, topk_patches=5):
    """configs/demo/mkt_zsl.py's model (MKT stage 1 on the ViT demo CLIP), seeded."""
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MKTClassifier',
        backbone=dict(type='OpenCLIPBackbone', model_name='mlr-demo-vit',
                      pretrained=DEMO_VIT_WEIGHTS, image_size=128,
                      trainable_vision_blocks=trainable_blocks, with_teacher=True),
        prompt_learner=dict(type='TemplateContextPrompts',
                            template='There is a {} in the scene', learnable=False),
        head=dict(type='MKTTwoStreamHead', topk_patches=topk_patches),
        train_image_tower=True, distill_loss=dict(type='EmbeddingL1Loss'),
        class_names=list(class_names)))


@torch.no_grad()
def frozen_vit_prefix(model, images, batch=250):
    """Run an MKT model's frozen part once over uint8 ``images`` (N, 3, S, S).

    Returns ``prefix`` (N, 1 + h*w, width), the tokens entering the trainable blocks
    (captured by a hook on the last frozen block), ``teacher_global_feat`` (N, D) (the
    frozen original tail's embedding, i.e. the original CLIP's) and the untrained
    model's ``dense`` / ``global_feat``. Why: the student tail is all that trains, so a
    learning test can feed it cached tokens instead of re-running the frozen blocks.
    """
    blocks = model.backbone.clip.visual.transformer.resblocks
    frozen = len(blocks) - model.backbone.trainable_vision_blocks
    captured = []
    hook = blocks[frozen - 1].register_forward_hook(lambda m, i, o: captured.append(o))
    model.eval()
    chunks = []
    try:
        for i in range(0, len(images), batch):
            x = model.data_preprocessor(dict(inputs=images[i:i + batch]), False)['inputs']
            chunks.append(dict(model.extract_feat(x), prefix=captured.pop()))
    finally:
        hook.remove()
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]
            if torch.is_tensor(chunks[0][k])}


def student_tail_features(model, prefix, teacher_global_feat):
    """The features ``model.extract_feat`` returns, computed from cached prefix tokens:
    the trainable blocks, then the backbone's own ``_vit_head`` (ln_post, proj)."""
    backbone = model.backbone
    visual = backbone.clip.visual
    x = prefix
    for block in visual.transformer.resblocks[-backbone.trainable_vision_blocks:]:
        x = block(x)
    dense, global_feat = backbone._vit_head(x, visual.ln_post, visual.proj)
    return dict(dense=dense.float(), global_feat=global_feat.float(), grid=backbone.feat_grid,
                teacher_global_feat=teacher_global_feat)


def demo_images(root, num_train=2000):
    """uint8 (N, 3, S, S) images + labels of the first ``num_train`` train images and all
    test images of a generated world (MKT trains the tower's tail, so its tests need
    images, not frozen features); kept as uint8 to stay small."""
    out = {}
    for split, limit in (('train', num_train), ('test', None)):
        ds = DATASETS.build(dict(
            type='CocoMultiLabel', data_root=str(root),
            ann_file=f'annotations/instances_{split}.json', data_prefix=dict(img_path=split),
            pipeline=[dict(type='LoadImageCV2', to_rgb=True), dict(type='PackInputs')]))
        num = len(ds) if limit is None else min(limit, len(ds))
        out[split] = dict(images=torch.stack([ds[i]['inputs'] for i in range(num)]),
                          labels=torch.from_numpy(ds.get_label_matrix()[:num]),
                          classes=ds.metainfo['classes'])
    return out
