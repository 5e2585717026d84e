"""N processes train like 1 process on the same global batch, for every method's loss
(2 gloo processes on CPU, DDP without device_ids, as tools/dist_train.sh runs them)."""
import copy

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ddp_helpers import run_in_two_processes, sgd_train

NAMES = [f'c{i}' for i in range(6)]
GLOBAL_GT = torch.tensor([[1., 0., -1., 0., 1., 0.],
                          [0., 1., -1., -1., 0., 0.],
                          [-1., 0., 1., 0., -1., 1.],
                          [0., 0., 0., 1., -1., -1.]])
STEPS = 3


def _backbone():
    return dict(type='OpenCLIPBackbone', model_name='mlr-tiny-rn', pretrained=None,
                image_size=64)


METHODS = {
    'dualcoop': dict(
        prompt_learner=dict(type='LearnablePrompts', n_ctx=4, class_specific=True,
                            num_classes=len(NAMES)),
        head=dict(type='DualCoOpHead', spatial_scale=7.0, logit_scale=2.0)),
    'dualcoop_pp': dict(
        prompt_learner=dict(type='LearnablePrompts', prompt_names=('evidence', 'pos', 'neg'),
                            n_ctx=4, class_specific=True, num_classes=len(NAMES)),
        head=dict(type='DualCoOpPlusPlusHead')),
    'dualcoop_mean_loss': dict(
        prompt_learner=dict(type='LearnablePrompts', n_ctx=4),
        head=dict(type='DualCoOpHead', loss=dict(type='PairSoftmaxASL', reduction='mean'))),
    'dualcoop_class_subsets': dict(
        prompt_learner=dict(type='LearnablePrompts', n_ctx=4),
        head=dict(type='DualCoOpHead', spatial_scale=7.0, logit_scale=2.0),
        num_train_classes=3),
}


def _build(method):
    torch.manual_seed(0)
    return MODELS.build(dict(type='CLIPPromptClassifier', backbone=_backbone(),
                             class_names=NAMES, **copy.deepcopy(METHODS[method])))


def _images():
    return torch.randn(len(GLOBAL_GT), 3, 64, 64, generator=torch.Generator().manual_seed(3))


def _train(model, rows, wrap=None):
    """STEPS SGD steps on the batch rows ``rows`` of the global batch."""
    samples = [DataSample().set_gt_score(row) for row in GLOBAL_GT[rows]]
    return sgd_train(model, _images()[rows], samples, STEPS, lr=0.01, wrap=wrap)


def _job(rows, wrap):
    return {method: _train(_build(method), rows, wrap) for method in METHODS}


_job.num_rows = len(GLOBAL_GT)


@pytest.fixture(scope='module')
def two_process_results(tmp_path_factory):
    return run_in_two_processes(tmp_path_factory.mktemp('ddp'), _job)[0]


@pytest.mark.parametrize('method', list(METHODS))
def test_two_processes_train_like_one(method, two_process_results):
    single = _train(_build(method), list(range(len(GLOBAL_GT))))
    start = {n: p.detach() for n, p in _build(method).named_parameters() if p.requires_grad}
    assert single.keys() == two_process_results[method].keys()
    for name, value in single.items():
        assert not torch.allclose(value, start[name])  # it trained
        torch.testing.assert_close(two_process_results[method][name], value, rtol=1e-4,
                                   atol=1e-5, msg=f'{method}: {name}')
