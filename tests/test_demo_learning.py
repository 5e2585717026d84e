"""Learning, not only shapes: prompt learning on the demo world with the shipped tiny CLIP.

The image tower is frozen and these runs use no augmentation, so its features are
computed once (through the classifier's own ``extract_feat``) and reused at every step:
exactly what a full training run computes, minus the repeated forward passes.
"""
import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS, MODELS

from mlr_plugin.datasets.demo_world import DEMO_SEEN, DEMO_UNSEEN, generate_demo_world
from mlr_plugin.datasets.label_simulation import PartialLabels
from mlr_plugin.evaluation import average_precision_per_class, mean_average_precision

DEMO_WEIGHTS = 'mlr_plugin://demo/mlr-demo-rn.safetensors'
# The demo configs' head settings (configs/demo/*.py): the tiny CLIP's learned
# temperature is ~13, not OpenAI CLIP's 100, so the region aggregation is scaled to match.
DEMO_HEAD = dict(type='DualCoOpHead', spatial_scale=7.0, logit_scale=2.0,
                 loss=dict(type='PairSoftmaxASL', reduction='sum', loss_weight=0.03))
HANDCRAFTED = dict(type='HandcraftedPrompts',
                   templates=dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))


def build_model(prompt_learner, class_names):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='CLIPPromptClassifier',
        backbone=dict(type='OpenCLIPBackbone', model_name='mlr-demo-rn',
                      pretrained=DEMO_WEIGHTS, image_size=128),
        prompt_learner=prompt_learner, head=DEMO_HEAD, class_names=list(class_names)))


@pytest.fixture(scope='module')
def features(tmp_path_factory):
    return demo_features(tmp_path_factory.mktemp('demo') / 'world')


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


def test_dualcoop_at_10_percent_beats_handcrafted_zero_shot(features):
    """DualCoOp (class-specific pos/neg contexts, random init) trained on 10% of the labels
    for 1000 SGD steps at lr 0.03 (the demo config: 4 epochs of batch 32 on 8000 images)
    beats every hand-crafted zero-shot scorer of the same frozen CLIP:

    - CLIP's standard zero-shot ("a photo of a {}." on the image embedding) by >= 5 mAP;
    - the same prompt scored densely (max over locations) by >= 2 mAP;
    - hand-crafted positive/negative prompts in the DualCoOp head by >= 20 mAP;
    and lifts its own random-context start by > 30 mAP.
    """
    train, test = features['train'], features['test']
    classes = train['classes']
    gt = torch.from_numpy(PartialLabels(known_ratio=0.1, seed=0)(train['labels'].numpy(),
                                                                  classes))
    assert 0.05 < (gt != -1).float().mean() < 0.15
    model = build_model(dict(type='LearnablePrompts', prompt_names=('pos', 'neg'), n_ctx=16,
                             class_specific=True, num_classes=len(classes)), classes)
    before = mean_average_precision(scores_of(model, test['feats']), test['labels'])
    train_contexts(model, train['feats'], gt, steps=1000, lr=0.03)
    after = mean_average_precision(scores_of(model, test['feats']), test['labels'])

    zero_shot = {k: mean_average_precision(v, test['labels'])
                 for k, v in handcrafted_zero_shot_scores(test['feats'], classes).items()}
    pos_neg = mean_average_precision(scores_of(build_model(HANDCRAFTED, classes),
                                               test['feats']), test['labels'])
    print(f'DualCoOp@10% {after:.1f} (random contexts {before:.1f}); zero-shot: global '
          f'{zero_shot["global_"]:.1f}, dense {zero_shot["dense"]:.1f}, pos/neg head '
          f'{pos_neg:.1f}')
    assert after > before + 30.0
    assert after > zero_shot['global_'] + 5.0
    assert after > zero_shot['dense'] + 2.0
    assert after > pos_neg + 20.0


def test_zero_shot_on_held_out_classes_beats_a_random_scorer(features):
    """Shared contexts trained on the 15 seen classes score the 5 held-out classes better
    than random (a random scorer's expected AP is the positive rate)."""
    train, test = features['train'], features['test']
    classes = list(train['classes'])
    seen_cols = [classes.index(c) for c in DEMO_SEEN]
    unseen_cols = [classes.index(c) for c in DEMO_UNSEEN]
    model = build_model(dict(type='LearnablePrompts', prompt_names=('pos', 'neg'), n_ctx=16,
                             class_specific=False), DEMO_SEEN)
    train_contexts(model, train['feats'], train['labels'][:, seen_cols])
    model.set_class_names(DEMO_UNSEEN)  # names never used in training
    scores = scores_of(model, test['feats'])
    target = test['labels'][:, unseen_cols]
    ap = average_precision_per_class(scores, target) * 100
    random_ap = target.float().mean(0).numpy() * 100  # expected AP of random scores
    print('held-out AP', ap.round(1), 'random', random_ap.round(1))
    assert np.nanmean(ap) > np.nanmean(random_ap) + 10.0
