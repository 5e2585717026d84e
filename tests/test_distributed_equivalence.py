"""N processes train like 1 process on the same global batch, for every method's loss
(2 gloo processes on CPU, DDP without device_ids, as tools/dist_train.sh runs them)."""
import copy

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

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
    model.train()
    trained = wrap(model) if wrap else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x, gt = _images()[rows], GLOBAL_GT[rows]
    for _ in range(STEPS):
        losses = trained(x, [DataSample().set_gt_score(row) for row in gt], mode='loss')
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _worker(rank, world_size, init_file, out_file):
    import mlr_plugin  # noqa: F401  (registers the modules in the spawned process)
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world_size)
    from mmengine.model import MMDistributedDataParallel
    results = {}
    for method in METHODS:
        model = _build(method)
        rows = list(range(rank, len(GLOBAL_GT), world_size))  # this process's share
        results[method] = _train(model, rows, wrap=lambda m: MMDistributedDataParallel(
            m, device_ids=None, broadcast_buffers=False))
    if rank == 0:
        torch.save(results, out_file)
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_process_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ddp')
    out_file = str(folder / 'params.pt')
    mp.spawn(_worker, args=(2, str(folder / 'init'), out_file), nprocs=2, join=True)
    return torch.load(out_file, weights_only=True)


@pytest.mark.parametrize('method', list(METHODS))
def test_two_processes_train_like_one(method, two_process_results):
    single = _train(_build(method), list(range(len(GLOBAL_GT))))
    start = {n: p.detach() for n, p in _build(method).named_parameters() if p.requires_grad}
    assert single.keys() == two_process_results[method].keys()
    for name, value in single.items():
        assert not torch.allclose(value, start[name])  # it trained
        torch.testing.assert_close(two_process_results[method][name], value, rtol=1e-4,
                                   atol=1e-5, msg=f'{method}: {name}')
