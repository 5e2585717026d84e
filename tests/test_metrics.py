"""Multi-label metrics: functional formulas vs sklearn / hand-worked numbers / plain loops,
and the registered mmengine metrics fed with fake data samples."""
import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from mmpretrain.registry import METRICS
from mmpretrain.structures import DataSample
from sklearn.metrics import average_precision_score

from mlr_plugin.evaluation import (MultiLabelMAP, MultiLabelPRF, MultiLabelRecognitionMetric,
                                   TopKPRF, average_precision_per_class,
                                   format_metrics_table, mean_average_precision,
                                   precision_recall_at_k, threshold_metrics, topk_mask)

# --------------------------------------------------------------------------- fixtures
# Hand-worked case used by several tests (3 images, 3 classes, two unknown entries).
HAND_SCORES = [[0.9, 0.6, 0.2],
               [0.4, 0.7, 0.8],
               [0.7, 0.1, 0.55]]
HAND_TARGET = [[1, 0, -1],
               [1, 1, 0],
               [0, -1, 1]]


def random_case(seed=0, n=40, c=7, unknown=0.2, ties=True):
    """Random scores / targets with some -1 entries; rounded scores give ties."""
    rng = np.random.default_rng(seed)
    scores = rng.random((n, c))
    if ties:
        scores = np.round(scores, 1)
    target = (rng.random((n, c)) < 0.3).astype(np.float64)
    target[rng.random((n, c)) < unknown] = -1
    target[0, :] = 1  # every class has at least one positive
    return scores, target


def loop_counts(scores, target, pred):
    """Plain python TP / FP / FN per class, skipping unknown entries."""
    n, c = len(scores), len(scores[0])
    tp, fp, fn = [0] * c, [0] * c, [0] * c
    for j in range(c):
        for i in range(n):
            if target[i][j] == -1:
                continue
            if pred[i][j] and target[i][j] == 1:
                tp[j] += 1
            elif pred[i][j] and target[i][j] == 0:
                fp[j] += 1
            elif not pred[i][j] and target[i][j] == 1:
                fn[j] += 1
    return tp, fp, fn


def div(a, b):
    return a / b if b else 0.0


def loop_topk(row, k):
    """Indices of the k largest scores, lower index first on ties (plain python)."""
    return sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]


def loop_threshold_metrics(scores, target, thr=0.5, topk=None, cf1='harmonic'):
    n, c = len(scores), len(scores[0])
    if topk is None:
        pred = [[scores[i][j] > thr for j in range(c)] for i in range(n)]
    else:
        pred = [[j in loop_topk(scores[i], topk) for j in range(c)] for i in range(n)]
    tp, fp, fn = loop_counts(scores, target, pred)
    ps = [div(tp[j], tp[j] + fp[j]) for j in range(c)]
    rs = [div(tp[j], tp[j] + fn[j]) for j in range(c)]
    cp, cr = sum(ps) / c, sum(rs) / c
    if cf1 == 'harmonic':
        cf1_value = div(2 * cp * cr, cp + cr)
    else:
        cf1_value = sum(div(2 * p * r, p + r) for p, r in zip(ps, rs)) / c
    op = div(sum(tp), sum(tp) + sum(fp))
    orec = div(sum(tp), sum(tp) + sum(fn))
    out = dict(CP=cp, CR=cr, CF1=cf1_value, OP=op, OR=orec, OF1=div(2 * op * orec, op + orec))
    return {key: value * 100 for key, value in out.items()}


def assert_dict_close(actual, expected, tol=1e-9):
    assert set(actual) == set(expected)
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], abs=tol), key


# --------------------------------------------------------------------------- AP / mAP
def test_ap_matches_sklearn_on_known_entries():
    scores, target = random_case(seed=1)
    aps = average_precision_per_class(scores, target)
    assert aps.shape == (scores.shape[1], )
    for j in range(scores.shape[1]):
        known = target[:, j] != -1
        expected = average_precision_score(target[known, j] == 1, scores[known, j])
        assert aps[j] == pytest.approx(expected, abs=1e-12)
    assert mean_average_precision(scores, target) == pytest.approx(aps.mean() * 100)


def test_ap_without_ties_matches_sklearn_and_torch_input():
    scores, target = random_case(seed=2, ties=False)
    aps = average_precision_per_class(torch.from_numpy(scores), torch.from_numpy(target))
    for j in range(scores.shape[1]):
        known = target[:, j] != -1
        expected = average_precision_score(target[known, j] == 1, scores[known, j])
        assert aps[j] == pytest.approx(expected, abs=1e-6)  # float32 via torch


def test_ap_hand_worked_ignores_unknown():
    # known ranking: 0.9 (+), 0.8 (-), 0.7 (+); the -1 image at 0.95 is dropped.
    scores = [[0.95], [0.9], [0.8], [0.7]]
    target = [[-1], [1], [0], [1]]
    ap = average_precision_per_class(scores, target)[0]
    assert ap == pytest.approx((1 + 2 / 3) / 2)


def test_empty_class_exclude_vs_zero():
    scores, target = random_case(seed=3, c=4)
    target[:, 2] = np.where(target[:, 2] == 1, 0, target[:, 2])  # class 2: no positive
    aps = average_precision_per_class(scores, target)
    assert math.isnan(aps[2]) and not np.isnan(aps[[0, 1, 3]]).any()
    expected_exclude = np.mean(aps[[0, 1, 3]]) * 100
    expected_zero = np.sum(aps[[0, 1, 3]]) / 4 * 100
    assert mean_average_precision(scores, target) == pytest.approx(expected_exclude)
    assert mean_average_precision(scores, target, 'zero') == pytest.approx(expected_zero)
    # nothing to average at all -> NaN (exclude) / 0 (zero)
    assert math.isnan(mean_average_precision(scores, np.zeros_like(target)))
    assert mean_average_precision(scores, np.zeros_like(target), 'zero') == 0.0


# --------------------------------------------------------------------------- CP..OF1
def test_threshold_metrics_hand_worked():
    # per class (TP, FP, FN): c0 (1, 1, 1), c1 (1, 1, 0), c2 (1, 1, 0)
    out = threshold_metrics(HAND_SCORES, HAND_TARGET, thr=0.5)
    cp, cr = 0.5, (0.5 + 1 + 1) / 3
    assert_dict_close(out, dict(CP=50.0, CR=cr * 100, CF1=2 * cp * cr / (cp + cr) * 100,
                                OP=50.0, OR=75.0, OF1=60.0))
    mean_f1 = (0.5 + 2 / 3 + 2 / 3) / 3
    assert threshold_metrics(HAND_SCORES, HAND_TARGET, cf1='mean')['CF1'] == \
        pytest.approx(mean_f1 * 100)


def test_threshold_metrics_top1_hand_worked_zero_division():
    # top-1 picks c0, c2, c0. c1 never predicted -> P = 0/0 = 0; c2 has TP 0 -> P = R = 0.
    out = threshold_metrics(HAND_SCORES, HAND_TARGET, topk=1)
    assert_dict_close(out, dict(CP=50 / 3, CR=50 / 3, CF1=50 / 3,
                                OP=100 / 3, OR=25.0, OF1=200 / 7))


def test_threshold_is_strict_and_zero_division_gives_zero():
    scores = [[0.5, 0.2], [0.1, 0.5]]
    out = threshold_metrics(scores, [[0, 0], [0, 0]], thr=0.5)  # no prediction, no positive
    assert out == dict(CP=0.0, CR=0.0, CF1=0.0, OP=0.0, OR=0.0, OF1=0.0)
    out = threshold_metrics(scores, [[1, -1], [-1, 1]], thr=0.4)
    assert out['CP'] == 100.0 and out['OR'] == 100.0


@pytest.mark.parametrize('cf1', ['harmonic', 'mean'])
@pytest.mark.parametrize('topk', [None, 3])
def test_threshold_metrics_match_plain_loop(cf1, topk):
    scores, target = random_case(seed=4, n=30, c=6)
    out = threshold_metrics(scores, target, thr=0.5, topk=topk, cf1=cf1)
    assert_dict_close(out, loop_threshold_metrics(scores.tolist(), target.tolist(), 0.5,
                                                  topk, cf1))


# --------------------------------------------------------------------------- P/R/F1@K
def test_precision_recall_at_k_hand_worked():
    # top-2 rows: {c0, c1}, {c2, c1}, {c0, c2} -> TP 3; positives 4.
    out = precision_recall_at_k(HAND_SCORES, HAND_TARGET, 2)
    assert_dict_close(out, {'P@2': 50.0, 'R@2': 75.0, 'F1@2': 60.0})


@pytest.mark.parametrize('k', [1, 3, 5])
def test_precision_recall_at_k_matches_plain_loop(k):
    scores, target = random_case(seed=5, n=25, c=8)
    target[3, :] = np.where(target[3] == 1, 0, target[3])  # an image without positives
    tp = positives = 0
    for row, labels in zip(scores.tolist(), target.tolist()):
        tp += sum(1 for j in loop_topk(row, k) if labels[j] == 1)
        positives += sum(1 for v in labels if v == 1)
    p, r = tp / (len(scores) * k), tp / positives
    expected = {f'P@{k}': p * 100, f'R@{k}': r * 100, f'F1@{k}': div(2 * p * r, p + r) * 100}
    assert_dict_close(precision_recall_at_k(scores, target, k), expected)


def test_topk_ties_take_lower_class_index():
    mask = topk_mask(np.array([[0.5, 0.5, 0.5, 0.9]]), 2)
    assert mask.tolist() == [[True, False, False, True]]
    out = precision_recall_at_k([[0.0, 0.0, 0.0]], [[0, 0, 1]], 2)
    assert out == {'P@2': 0.0, 'R@2': 0.0, 'F1@2': 0.0}


# --------------------------------------------------------------------------- inputs / errors
def test_functions_do_not_mutate_inputs():
    scores, target = random_case(seed=6)
    scores_t, target_t = torch.from_numpy(scores.copy()), torch.from_numpy(target.copy())
    average_precision_per_class(scores_t, target_t)
    threshold_metrics(scores, target, topk=2)
    precision_recall_at_k(scores_t, target_t, 3)
    assert torch.equal(scores_t, torch.from_numpy(scores))
    assert torch.equal(target_t, torch.from_numpy(target))
    assert (target == -1).any()  # the -1 entries survive


@pytest.mark.parametrize('call, match', [
    (lambda: average_precision_per_class([[0.1, 0.2]], [[1, 0], [0, 1]]), 'target shape'),
    (lambda: average_precision_per_class([0.1, 0.2], [1, 0]), r'\(N, C\)'),
    (lambda: average_precision_per_class([[0.1, 0.2]], [[2, 0]]), 'target must be in'),
    (lambda: average_precision_per_class([[float('nan'), 0.2]], [[1, 0]]), 'NaN'),
    (lambda: mean_average_precision([[0.1]], [[1]], empty_class='drop'), 'empty_class'),
    (lambda: threshold_metrics([[0.1]], [[1]], cf1='micro'), 'cf1'),
    (lambda: threshold_metrics([[0.1]], [[1]], thr='0.5'), 'thr'),
    (lambda: threshold_metrics([[0.1]], [[1]], topk=2), 'topk=2'),
    (lambda: precision_recall_at_k([[0.1]], [[1]], 0), 'k=0'),
    (lambda: precision_recall_at_k([[0.1]], [[1]], 1.5), 'k must be an int'),
    (lambda: precision_recall_at_k([['a']], [[1]], 1), 'scores is not a numeric'),
])
def test_functional_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- metric classes
CLASSES = ('cat', 'dog', 'car', 'bus', 'tree', 'sky')


def fake_samples(scores, target):
    return [dict(pred_score=torch.tensor(s, dtype=torch.float32),
                 gt_score=torch.tensor(t, dtype=torch.float32))
            for s, t in zip(scores, target)]


def run_metric(metric, scores, target, batch=4, classes=CLASSES):
    metric.dataset_meta = dict(classes=classes)
    samples = fake_samples(scores, target)
    for start in range(0, len(samples), batch):
        metric.process(None, samples[start:start + batch])
    return metric.evaluate(len(samples))


@pytest.fixture
def case():
    scores, target = random_case(seed=7, n=20, c=len(CLASSES))
    scores = scores.astype(np.float32).astype(np.float64)  # what the float32 samples hold
    target[:, 5] = np.where(target[:, 5] == 1, 0, target[:, 5])  # 'sky' has no positive
    return scores, target


def test_registered_names_are_ours():
    for cls in (MultiLabelMAP, MultiLabelPRF, TopKPRF, MultiLabelRecognitionMetric):
        assert METRICS.get(cls.__name__) is cls
    assert isinstance(METRICS.build(dict(type='MultiLabelMAP')), MultiLabelMAP)
    # as the Runner builds a config's evaluator (default_scope = 'mmpretrain')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        evaluator = Evaluator(dict(type='MultiLabelRecognitionMetric', ks=(3, 5)))
    assert isinstance(evaluator.metrics[0], MultiLabelRecognitionMetric)
    assert evaluator.metrics[0].ks == (3, 5) and evaluator.metrics[0].prefix == ''


def test_map_metric_per_class_and_subsets(case):
    scores, target = case
    subset = ['dog', 'sky', 'cat']
    metric = METRICS.build(dict(type='MultiLabelMAP', per_class=True,
                                class_subsets=dict(zsl=subset)))
    out = run_metric(metric, scores, target)
    aps = average_precision_per_class(scores, target) * 100
    assert out['mAP'] == pytest.approx(np.nanmean(aps))
    for name, ap in zip(CLASSES, aps):
        assert (math.isnan(out[f'AP/{name}']) and math.isnan(ap)) or \
            out[f'AP/{name}'] == pytest.approx(ap)
    idx = [CLASSES.index(n) for n in subset]
    assert out['zsl/mAP'] == pytest.approx(mean_average_precision(scores[:, idx], target[:, idx]))
    assert not any(key.startswith('zsl/AP/') for key in out)  # per-class only once
    zero = run_metric(MultiLabelMAP(empty_class='zero'), scores, target)
    assert zero['mAP'] == pytest.approx(np.nansum(aps) / len(CLASSES))


def test_prf_and_topk_metrics_with_subset_and_prefix(case):
    scores, target = case
    idx = [4, 0, 2]
    subsets = dict(zsl=[CLASSES[i] for i in idx])
    prf = run_metric(MultiLabelPRF(thr=0.4, topk=(1, 3), cf1='mean', class_subsets=subsets),
                     scores, target)
    expected = threshold_metrics(scores, target, thr=0.4, cf1='mean')
    for k in (1, 3):
        expected.update({f'{key}_top{k}': v for key, v in
                         threshold_metrics(scores, target, topk=k, cf1='mean').items()})
    assert_dict_close({k: v for k, v in prf.items() if '/' not in k}, expected)
    assert prf['zsl/CF1_top1'] == pytest.approx(
        threshold_metrics(scores[:, idx], target[:, idx], topk=1, cf1='mean')['CF1'])

    topk = run_metric(TopKPRF(ks=(1, 3), class_subsets=subsets, prefix='test'), scores, target)
    assert topk['test/P@3'] == pytest.approx(precision_recall_at_k(scores, target, 3)['P@3'])
    assert topk['test/zsl/R@1'] == pytest.approx(
        precision_recall_at_k(scores[:, idx], target[:, idx], 1)['R@1'])
    assert len(topk) == 12


def test_recognition_metric_combines_everything(case):
    scores, target = case
    metric = MultiLabelRecognitionMetric(per_class=True, topk=3, ks=(3, 5),
                                         class_subsets=dict(unseen=['bus', 'tree', 'cat',
                                                                    'sky', 'car']))
    out = run_metric(metric, scores, target, batch=3)
    keys = list(out)
    assert keys[0] == 'mAP' and all(k.startswith('AP/') for k in keys[-len(CLASSES):])
    for key in ('CP', 'CR', 'CF1', 'OP', 'OR', 'OF1', 'CF1_top3', 'OF1_top3', 'P@3', 'R@5',
                'F1@5', 'unseen/mAP', 'unseen/CF1', 'unseen/OF1_top3', 'unseen/F1@5'):
        assert key in out, key
    assert out['OF1'] == pytest.approx(threshold_metrics(scores, target)['OF1'])


def test_recognition_metric_subset_smaller_than_k_raises(case):
    scores, target = case
    # K larger than a subset's class count is an error naming k and the count.
    metric = MultiLabelRecognitionMetric(topk=None, ks=3, class_subsets=dict(u=['bus']))
    with pytest.raises(ValueError, match=r'k=3 must be in \[1, num_classes=1\]'):
        run_metric(metric, scores, target)


def test_evaluator_with_datasamples_and_no_mutation(case):
    scores, target = case
    samples = [DataSample().set_pred_score(torch.tensor(s, dtype=torch.float32))
               .set_gt_score(torch.tensor(t, dtype=torch.float32))
               for s, t in zip(scores, target)]
    before = [s.gt_score.clone() for s in samples]
    evaluator = Evaluator([MultiLabelMAP(), TopKPRF(ks=2)])
    evaluator.dataset_meta = dict(classes=CLASSES)
    evaluator.process(samples[:10])
    evaluator.process(samples[10:])
    out = evaluator.evaluate(len(samples))
    assert out['mAP'] == pytest.approx(mean_average_precision(scores, target), abs=1e-9)
    assert out['P@2'] == pytest.approx(precision_recall_at_k(scores, target, 2)['P@2'])
    assert all(torch.equal(b, s.gt_score) for b, s in zip(before, samples))


def test_gt_label_fallback_and_no_classes_meta():
    metric = MultiLabelMAP(per_class=True)
    metric.process(None, [dict(pred_score=torch.tensor([0.9, 0.1, 0.5]), gt_label=[0, 2]),
                          dict(pred_score=torch.tensor([0.2, 0.8, 0.4]), gt_label=[1])])
    out = metric.evaluate(2)  # no dataset_meta: class names are indices
    assert out == {'mAP': 100.0, 'AP/0': 100.0, 'AP/1': 100.0, 'AP/2': 100.0}


def test_metric_bad_args():
    with pytest.raises(ValueError, match="unknown class name 'zebra'"):
        MultiLabelMAP(class_subsets=dict(zsl=['cat', 'zebra'])).dataset_meta = \
            dict(classes=CLASSES)
    with pytest.raises(ValueError, match='class_subsets must be a dict'):
        MultiLabelMAP(class_subsets=['cat'])
    with pytest.raises(ValueError, match=r"class_subsets\['zsl'\] must be a non-empty list"):
        TopKPRF(class_subsets=dict(zsl=[]))
    # a string names a built-in split (configs hold no Python objects)
    with pytest.raises(ValueError, match="unknown class split 'cat'"):
        TopKPRF(class_subsets=dict(zsl='cat'))
    from mlr_plugin.datasets.splits import COCO_UNSEEN_17
    assert TopKPRF(class_subsets=dict(zsl='coco_unseen17')).class_subsets == \
        dict(zsl=list(COCO_UNSEEN_17))
    with pytest.raises(ValueError, match='empty_class'):
        MultiLabelMAP(empty_class='skip')
    with pytest.raises(ValueError, match='cf1'):
        MultiLabelPRF(cf1='geometric')
    with pytest.raises(ValueError, match='thr must be a number'):
        MultiLabelRecognitionMetric(thr=None)
    with pytest.raises(ValueError, match='topk must contain positive ints'):
        MultiLabelPRF(topk=(3, 0))
    with pytest.raises(ValueError, match='ks must name at least one K'):
        TopKPRF(ks=())
    metric = MultiLabelMAP()
    with pytest.raises(ValueError, match="no 'pred_score'"):
        metric.process(None, [dict(gt_score=torch.ones(3))])
    with pytest.raises(ValueError, match='gt_score has 2 classes but pred_score has 3'):
        metric.process(None, [dict(pred_score=torch.ones(3), gt_score=torch.ones(2))])
    metric = MultiLabelMAP()
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process(None, fake_samples([[0.1, 0.2]], [[1, 0]]))
    with pytest.raises(ValueError, match="has 6 names but pred_score has 2"):
        metric.compute_metrics(metric.results)


# --------------------------------------------------------------------------- table
def test_format_metrics_table():
    table = format_metrics_table({'mAP': 71.254, 'AP/traffic light': float('nan'),
                                  'zsl/P@3': 3, 'CF1': torch.tensor(60.0)})
    lines = table.splitlines()
    assert lines[1] == '| Metric           | Value |'
    assert lines[3] == '| mAP              | 71.25 |'
    assert lines[4] == '| AP/traffic light |   nan |'
    assert lines[5] == '| zsl/P@3          |     3 |'
    assert lines[6] == '| CF1              | 60.00 |'
    assert lines[0] == lines[2] == lines[-1] == '+------------------+-------+'
    with pytest.raises(ValueError, match='metrics must be a dict'):
        format_metrics_table([1, 2])


# ----------------------------------------------------------------- drop_empty_rows
def zsl_case(seed=3, n=60):
    """Images of which ~1/3 hold an 'unseen' class (tree, sky); the rest only seen ones,
    and a few images with no positive at all."""
    rng = np.random.default_rng(seed)
    target = (rng.random((n, len(CLASSES))) < 0.3).astype(np.float64)
    target[:, 4:] *= rng.random((n, 1)) < 0.35
    target[:5] = 0  # no positive anywhere
    target[rng.random(target.shape) < 0.05] = -1
    scores = np.round(rng.random(target.shape) + 0.4 * (target == 1), 2)
    return scores.astype(np.float32).astype(np.float64), target


def sklearn_map(scores, target):
    aps = [average_precision_score(target[target[:, c] != -1, c] == 1,
                                   scores[target[:, c] != -1, c])
           for c in range(target.shape[1]) if (target[:, c] == 1).any()]
    return 100 * float(np.mean(aps))


def plain_p_at_k(scores, target, k):
    hits = sum(target[i][j] == 1 for i in range(len(scores)) for j in loop_topk(scores[i], k))
    return 100 * hits / (len(scores) * k)


def test_drop_empty_rows_scores_each_set_on_its_own_images():
    scores, target = zsl_case()
    unseen = [4, 5]
    subsets = dict(zsl=[CLASSES[i] for i in unseen])
    kwargs = dict(topk=None, ks=(1, 2), class_subsets=subsets)
    dropped = run_metric(MultiLabelRecognitionMetric(drop_empty_rows=True, **kwargs),
                         scores, target)
    kept = run_metric(MultiLabelRecognitionMetric(**kwargs), scores, target)

    # plain computation on the images each set keeps
    rows_all = (target == 1).any(axis=1)
    rows_zsl = (target[:, unseen] == 1).any(axis=1)
    assert 0 < rows_zsl.sum() < rows_all.sum() < len(target)
    zs, zt = scores[rows_zsl][:, unseen], target[rows_zsl][:, unseen]
    assert dropped['zsl/mAP'] == pytest.approx(sklearn_map(zs, zt))
    assert dropped['zsl/P@1'] == pytest.approx(plain_p_at_k(zs, zt, 1))
    assert dropped['mAP'] == pytest.approx(sklearn_map(scores[rows_all], target[rows_all]))
    assert dropped['P@2'] == pytest.approx(plain_p_at_k(scores[rows_all], target[rows_all], 2))
    # without the option every image counts (today's behaviour)
    assert kept['zsl/P@1'] == pytest.approx(plain_p_at_k(scores[:, unseen], target[:, unseen], 1))
    assert kept['zsl/mAP'] == pytest.approx(sklearn_map(scores[:, unseen], target[:, unseen]))
    # the effect: images without an unseen positive only add false positives
    assert dropped['zsl/P@1'] > kept['zsl/P@1'] + 20
    assert dropped['zsl/mAP'] > kept['zsl/mAP'] + 5

    # same images in -> equal numbers
    same = run_metric(MultiLabelRecognitionMetric(**kwargs), scores[rows_zsl], target[rows_zsl])
    again = run_metric(MultiLabelRecognitionMetric(drop_empty_rows=True, **kwargs),
                       scores[rows_zsl], target[rows_zsl])
    assert_dict_close(again, same)


def test_drop_empty_rows_option_checks():
    with pytest.raises(ValueError, match="drop_empty_rows must be True or False, got 'yes'"):
        MultiLabelRecognitionMetric(drop_empty_rows='yes')
    assert METRICS.build(dict(type='MultiLabelMAP', drop_empty_rows=True)).drop_empty_rows
    metric = MultiLabelMAP(drop_empty_rows=True, class_subsets=dict(u=['sky']))
    scores, target = np.zeros((2, 6)), np.zeros((2, 6))
    target[:, 0] = 1
    with pytest.raises(ValueError, match=r"leaves no image for class_subsets\['u'\]"):
        run_metric(metric, scores, target)
