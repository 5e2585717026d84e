"""TRM-ML learns on the demo world (cached frozen-tower features, conftest.py's
``demo_features``), its prototype pseudo-labels are better than the class prior, and with
a single positive label per image it beats "assume negative" trained the same way."""
import numpy as np
import pytest
import torch

from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from demo_helpers import DEMO_WEIGHTS, handcrafted_zero_shot_scores
from mlr_plugin.datasets.label_simulation import PartialLabels, SinglePositiveLabel
from mlr_plugin.evaluation import mean_average_precision

STEPS = 300
# the demo config's optimizer (configs/demo/trm_ml_p10.py): AdamW + OneCycle, max lr 2e-3
LR = 2e-3


def trm_model(classes, **overrides):
    """The demo config's model (configs/demo/trm_ml_p10.py), seeded."""
    cfg = dict(
        type='TRMMLClassifier',
        backbone=dict(type='OpenCLIPBackbone', model_name='mlr-demo-rn',
                      pretrained=DEMO_WEIGHTS, image_size=128),
        prompt_learner=dict(type='LearnablePrompts', prompt_names=('pos', 'neg'), n_ctx=16,
                            class_specific=True, num_classes=len(classes)),
        head=dict(type='TRMMLHead', init_logit_scale=13.198, baseline_spatial_scale=2.64,
                  decoder_init='clip', init_energy_offset=0.3),
        prototype_bank=dict(type='MultimodalPrototypeBank'),
        contrastive_loss=dict(type='MultimodalContrastiveLoss'),
        class_names=list(classes))
    cfg.update(overrides)
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(cfg)


def train(model, feats, gt, true=None, steps=STEPS, batch=32):
    """AdamW + OneCycle on every trainable parameter, the classifier's own training step
    after the frozen tower. With ``true`` labels: (precision of pseudo-positives,
    precision of pseudo-negatives, coverage of unknown entries) over the second half."""
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=LR, total_steps=steps)
    rng = np.random.RandomState(0)
    counts = np.zeros(5)  # pseudo-pos, right, pseudo-neg, right, unknown
    model.train()
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(len(gt), batch, replace=False))
        losses = model.loss_from_features({k: v[idx] for k, v in feats.items()}, gt[idx], idx)
        optim.zero_grad()
        sum(losses.values()).backward()
        optim.step()
        sched.step()
        if true is not None and step >= steps // 2:
            target, unknown, y = model.last_pseudo_labels, gt[idx] == -1, true[idx]
            pos, neg = unknown & (target == 1), unknown & (target == 0)
            counts += [int(pos.sum()), int((pos & (y == 1)).sum()), int(neg.sum()),
                       int((neg & (y == 0)).sum()), int(unknown.sum())]
    model.eval()
    if true is not None:
        return (counts[1] / max(counts[0], 1), counts[3] / max(counts[2], 1),
                (counts[0] + counts[2]) / counts[4])


def map_on_test(model, test):
    with torch.no_grad():
        out = model.head(test['feats'], model.encode_classes())
    return mean_average_precision(model.head.predict_scores(out), test['labels'])


@pytest.fixture(scope='module')
def world(demo_features):
    train_split = demo_features['train']
    classes = train_split['classes']
    labels = train_split['labels'].float()
    p10 = torch.from_numpy(PartialLabels(known_ratio=0.1, seed=0)(
        train_split['labels'].numpy(), classes)).float()
    single = torch.from_numpy(SinglePositiveLabel(seed=0)(
        train_split['labels'].numpy(), classes)).float()
    return dict(train=train_split, test=demo_features['test'], classes=classes,
                labels=labels, p10=p10, single=single)


def test_trm_ml_at_10_percent_learns_with_precise_pseudo_labels(world):
    """Full TRM-ML (CARL with the 'clip' decoder init, KD, both prototypes, contrastive
    loss), 10% of the labels, 300 AdamW steps of batch 32.

    Measured (torch 2.14 CPU, one run): test mAP 18.6 -> 69.0, above CLIP's own
    zero-shot scores (global 62.3, dense 64.4) and the all-off "modified DualCoOp"
    baseline trained the same way (59.5; configs/trm_ml/README.md). From PyTorch's
    default decoder init the same run reached 43.2. Pseudo-labels of unknown entries over
    the second half: positive precision 0.641 (positive rate 0.125), negative precision
    0.995, coverage 0.557. The floors below leave room for platform noise."""
    model = trm_model(world['classes'])
    before = map_on_test(model, world['test'])
    pos_prec, neg_prec, coverage = train(model, world['train']['feats'], world['p10'],
                                         true=world['labels'])
    after = map_on_test(model, world['test'])
    zero_shot = {k: mean_average_precision(v, world['test']['labels']) for k, v in
                 handcrafted_zero_shot_scores(world['test']['feats'],
                                              world['classes']).items()}
    prior = float(world['labels'].mean())
    print(f'TRM-ML@10% {after:.1f} (start {before:.1f}); zero-shot global '
          f'{zero_shot["global_"]:.1f}, dense {zero_shot["dense"]:.1f}; pseudo-labels: '
          f'positive precision {pos_prec:.3f} (prior {prior:.3f}), negative precision '
          f'{neg_prec:.3f} (prior {1 - prior:.3f}), coverage {coverage:.3f}')
    assert after > before + 40.0
    assert after > zero_shot['dense'] + 2.5 and after > zero_shot['global_'] + 4.0
    assert pos_prec > 0.55 > prior + 0.4
    assert neg_prec > 0.98 > 1 - prior
    assert coverage > 0.45


def test_single_positive_learns_with_pseudo_positives(world):
    """One positive per image (every other entry unknown): TRM-ML with prototype
    pseudo-positives, the entries left unknown assumed negative (the demo config
    configs/demo/trm_ml_single_positive.py), 300 AdamW steps of batch 32.

    With no known negative there is no negative threshold: the bank only adds positives.
    Measured (one run, 'clip' decoder init): test mAP 18.6 -> 69.5 (69.6 on a rerun); pseudo-positive
    precision 0.511 (positive rate 0.125). "Assume negative" trained the same way (no
    pseudo-labels) reached 65.4 with the same model and 63.6 with the all-off baseline
    (configs/trm_ml/README.md); from PyTorch's default decoder init TRM-ML reached 49.5.
    The test trains "assume negative" next to it (the same model and steps, no
    pseudo-labels: every unknown entry a negative) and asserts TRM-ML beats it by > 2,
    and CLIP's dense zero-shot score by > 2.5."""
    model = trm_model(world['classes'], unknown_as_negative=True)
    before = map_on_test(model, world['test'])
    pos_prec = train(model, world['train']['feats'], world['single'],
                     true=world['labels'])[0]
    after = map_on_test(model, world['test'])
    prior = float(world['labels'].mean())
    dense = mean_average_precision(handcrafted_zero_shot_scores(
        world['test']['feats'], world['classes'])['dense'], world['test']['labels'])
    print(f'TRM-ML single positive {after:.1f} (start {before:.1f}; zero-shot dense '
          f'{dense:.1f}); pseudo-positive precision {pos_prec:.3f} (prior {prior:.3f})')
    assert after > before + 40.0
    assert after > dense + 2.5
    assert pos_prec > 0.42 > prior + 0.25
    assert (model.last_pseudo_labels != -1).all()  # assume negative: nothing unknown

    assume_negative = trm_model(world['classes'], unknown_as_negative=True,
                                pseudo_label_sources=())
    train(assume_negative, world['train']['feats'], world['single'])
    baseline = map_on_test(assume_negative, world['test'])
    print(f'assume negative, trained the same way: {baseline:.1f}')
    assert after > baseline + 2.0
