"""Learning, not only shapes: prompt learning on the demo world with the shipped tiny CLIP.

The image tower is frozen and these runs use no augmentation, so its features are
computed once per test session (conftest.py's ``demo_features``, through the classifier's
own ``extract_feat``) and reused at every step.
"""
import numpy as np
import pytest
import torch

from demo_helpers import (HANDCRAFTED, build_model, handcrafted_zero_shot_scores,
                          scores_of, train_contexts)
from mlr_plugin.datasets.demo_world import DEMO_SEEN, DEMO_UNSEEN
from mlr_plugin.datasets.label_simulation import PartialLabels
from mlr_plugin.evaluation import average_precision_per_class, mean_average_precision


@pytest.fixture(scope='module')
def features(demo_features):
    return demo_features


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
