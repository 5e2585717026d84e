"""Compact evaluation storage and chunked metrics (Open Images scale): results kept as
float16/float32 + int8 numpy vectors, AP vectorised over chunks of classes, threshold /
top-k metrics over chunks of rows; all against sklearn and the unchunked results."""
import pickle

import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample
from sklearn.metrics import average_precision_score

from mlr_plugin.evaluation import (MultiLabelMAP, MultiLabelRecognitionMetric,
                                   average_precision_per_class, precision_recall_at_k,
                                   reduce_average_precision, threshold_metrics)
from mlr_plugin.evaluation import functional

N, C = 20000, 500


@pytest.fixture(scope='module')
def large_case():
    """20k x 500: scores on a 1/1024 grid in [0, 1) (many ties, and exactly
    representable in float16), 3% positives, 10% unknown, one class without positives
    and one whose positives are all unknown."""
    rng = np.random.default_rng(0)
    scores = (rng.integers(0, 1024, size=(N, C)) / 1024).astype(np.float32)
    target = (rng.random((N, C)) < 0.03).astype(np.int8)
    scores[target == 1] += 0.25 * rng.random(int((target == 1).sum())).astype(np.float32)
    scores = (np.round(scores * 1024) / 1024).clip(0, 1023 / 1024).astype(np.float32)
    target[rng.random((N, C)) < 0.1] = -1
    target[:, 7] = 0
    target[:, 9] = np.where(target[:, 9] == 1, -1, target[:, 9])
    return scores, target


def _sklearn_ap(scores, target, c):
    known = target[:, c] != -1
    if not (target[known, c] == 1).any():
        return float('nan')
    return average_precision_score(target[known, c] == 1, scores[known, c])


def test_vectorised_ap_matches_sklearn_on_a_subset(large_case):
    scores, target = large_case
    aps = average_precision_per_class(scores, target)
    assert aps.shape == (C, ) and np.isnan(aps[7]) and np.isnan(aps[9])
    assert np.isfinite(np.delete(aps, [7, 9])).all()
    for c in list(range(0, C, 25)) + [7, 9, C - 1]:
        expected = _sklearn_ap(scores, target, c)
        if np.isnan(expected):
            assert np.isnan(aps[c])
        else:
            assert abs(aps[c] - expected) < 1e-12, c


def test_ties_hand_worked():
    # scores 0.9 (pos), 0.5 (pos), 0.5 (neg), 0.5 (unknown), 0.1 (pos)
    # thresholds: 0.9 -> P 1, R 1/3; 0.5 -> P 2/3, R 2/3; 0.1 -> P 3/4, R 1
    # AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/4
    scores = np.array([[0.9], [0.5], [0.5], [0.5], [0.1]])
    target = np.array([[1], [1], [0], [-1], [1]])
    expected = (1 + 2 / 3 + 3 / 4) / 3
    assert average_precision_per_class(scores, target)[0] == pytest.approx(expected,
                                                                           abs=1e-15)


def test_chunking_does_not_change_any_metric(large_case, monkeypatch):
    scores, target = large_case[0][:3000, :60], large_case[1][:3000, :60]

    def everything():
        return (average_precision_per_class(scores, target),
                threshold_metrics(scores, target, thr=0.5),
                threshold_metrics(scores, target, topk=3, cf1='mean'),
                precision_recall_at_k(scores, target, 5))
    whole = everything()  # default chunks hold the whole case
    monkeypatch.setattr(functional, 'CHUNK_ELEMENTS', 1000)  # 16 rows / 1 class a chunk
    chunked = everything()
    np.testing.assert_array_equal(chunked[0], whole[0])
    for a, b in zip(chunked[1:], whole[1:]):
        assert a == b


def test_topk_mask_equals_stable_sort_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 4, size=(300, 40)).astype(np.float16)  # heavy ties
    scores[0, :] = 1.0  # a row of one value
    scores[1, :5] = [-0.0, 0.0, 0.0, -0.0, 3.0]
    for k in (1, 3, 7, 40):
        order = np.argsort(-scores.astype(np.float64), axis=1, kind='stable')[:, :k]
        expected = np.zeros(scores.shape, dtype=bool)
        np.put_along_axis(expected, order, True, axis=1)
        np.testing.assert_array_equal(functional.topk_mask(scores, k), expected)


def _samples(scores, target):
    return [DataSample().set_pred_score(torch.from_numpy(s)).set_gt_score(
        torch.from_numpy(t.astype(np.float32))) for s, t in zip(scores, target)]


def _evaluate(metric, scores, target, batch=500):
    metric.dataset_meta = dict(classes=[f'c{i}' for i in range(scores.shape[1])])
    for start in range(0, len(scores), batch):
        samples = _samples(scores[start:start + batch], target[start:start + batch])
        metric.process(None, [s.to_dict() for s in samples])
    return metric.evaluate(len(scores))


def test_metric_float32_and_float16_paths(large_case):
    scores, target = large_case
    rows = slice(0, 3000)
    fp32 = _evaluate(MultiLabelRecognitionMetric(ks=(3, )), scores[rows], target[rows])
    aps = average_precision_per_class(scores[rows], target[rows])
    assert fp32['mAP'] == pytest.approx(float(np.nanmean(aps)) * 100, abs=1e-12)
    # every score is a multiple of 1/1024 below 1: exact in float16, so the compact
    # path gives exactly the same numbers
    fp16 = _evaluate(MultiLabelRecognitionMetric(ks=(3, ), score_dtype='float16'),
                     scores[rows], target[rows])
    assert fp16 == fp32


def test_float16_ranks_the_rounded_scores_exactly():
    """Continuous sigmoid scores: float16 rounding makes close scores tie. The float16
    path equals the metric of the rounded scores; the change from float32 is what
    rounding does to the ranking (measured here: 0.02 mAP points, docs/scaling.md), so
    float16 is opt-in."""
    rng = np.random.default_rng(1)
    target = (rng.random((4000, 200)) < 0.05).astype(np.int8)
    logits = rng.normal(-3, 2, size=target.shape) + 3 * target
    scores = (1 / (1 + np.exp(-logits))).astype(np.float32)
    fp32 = _evaluate(MultiLabelMAP(), scores, target)['mAP']
    fp16 = _evaluate(MultiLabelMAP(score_dtype='float16'), scores, target)['mAP']
    rounded = scores.astype(np.float16)
    assert fp16 == reduce_average_precision(average_precision_per_class(rounded, target))
    known = target[:, 3] != -1
    assert average_precision_per_class(rounded, target)[3] == pytest.approx(
        average_precision_score(target[known, 3] == 1, rounded[known, 3]), abs=1e-12)
    assert 0 < abs(fp16 - fp32) < 0.1


def test_results_are_compact_and_pickle_small():
    """Per sample: 2 bytes a score (float16) + 1 byte a label, also in the pickle
    mmengine's collect sends between processes."""
    classes = 7586
    metric = MultiLabelMAP(score_dtype='float16')
    sample = DataSample().set_pred_score(torch.rand(classes)).set_gt_score(
        (torch.rand(classes) < 0.01).float())
    metric.process(None, [sample.to_dict()] * 4)
    entry = metric.results[0]
    assert entry['pred_score'].dtype == np.float16 and entry['gt_score'].dtype == np.int8
    assert entry['pred_score'].nbytes + entry['gt_score'].nbytes == 3 * classes
    payload = len(pickle.dumps(metric.results, protocol=pickle.HIGHEST_PROTOCOL))
    assert payload < 4 * (3 * classes + 400)
    assert len(pickle.dumps(MultiLabelMAP().results)) < 100
    fp32 = MultiLabelMAP()
    fp32.process(None, [sample.to_dict()])
    assert fp32.results[0]['pred_score'].nbytes == 4 * classes


def test_compute_frees_each_result_while_stacking(large_case):
    metric = MultiLabelMAP()
    scores, target = large_case[0][:50, :10], large_case[1][:50, :10]
    for s in _samples(scores, target):
        metric.process(None, [s.to_dict()])
    results = list(metric.results)
    metric.dataset_meta = dict(classes=[str(i) for i in range(10)])
    metric.compute_metrics(results)
    assert all(r is None for r in results)


def test_bad_inputs_are_one_clear_error():
    with pytest.raises(ValueError, match='score_dtype'):
        MultiLabelMAP(score_dtype='int8')
    metric = MultiLabelMAP(score_dtype='float16')
    with pytest.raises(ValueError, match="as float16.*score_dtype='float32'"):
        metric.process(None, [DataSample().set_pred_score(torch.tensor([1e5, 0.]))
                              .set_gt_score(torch.tensor([1., 0.])).to_dict()])
    with pytest.raises(ValueError, match=r'gt_score must be in \{1, 0, -1\}, found 0.5'):
        metric.process(None, [DataSample().set_pred_score(torch.tensor([0.2, 0.]))
                              .set_gt_score(torch.tensor([0.5, 0.])).to_dict()])
    assert metric.results == []
    with pytest.raises(ValueError, match='target must be in'):
        average_precision_per_class(np.zeros((2, 2)), np.array([[2, 0], [1, 0]], np.int8))


class _ToyModel(torch.nn.Module):
    """Scores (C,) per image: enough for a test loop with the real hooks and metric."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def test_step(self, data):
        return [DataSample().set_pred_score(torch.as_tensor(x, dtype=torch.float32)
                                            * self.weight).set_gt_score(
            torch.as_tensor(y, dtype=torch.float32)) for x, y in zip(*data)]


def test_long_evaluation_logs_progress_and_eta(tmp_path):
    """The shared runtime's LoggerHook + IterTimerHook print ``[done/total]`` and an
    ETA for test loops every ``default_hooks.logger.interval`` iterations."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.runner import Runner
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    runtime = Config.fromfile(osp.join(root, 'configs/_base_/default_runtime.py'))
    rng = np.random.default_rng(0)
    data = [(rng.random(4).astype(np.float32), (rng.random(4) < 0.5).astype(np.float32))
            for _ in range(90)]
    runner = Runner(
        model=_ToyModel(), work_dir=str(tmp_path),
        test_dataloader=dict(dataset=data, batch_size=2, num_workers=0,
                             sampler=dict(type='DefaultSampler', shuffle=False),
                             collate_fn=lambda batch: tuple(zip(*batch))),
        test_cfg=dict(), test_evaluator=dict(type='MultiLabelMAP'),
        default_hooks=dict(timer=runtime.default_hooks.timer,
                           logger=runtime.default_hooks.logger),
        log_processor=runtime.log_processor, default_scope='mmpretrain')
    runner.test()
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    interval = runtime.default_hooks.logger.interval
    for done in (interval, 2 * interval):
        assert f'Epoch(test) [{done}/45]    eta: ' in log
    assert 'mAP: ' in log
