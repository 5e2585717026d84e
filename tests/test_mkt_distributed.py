"""MKT trains the same in 2 processes as in 1 on the same global batch (ranking loss and
distillation are means over the images of the *global* batch that have a known positive;
2 gloo processes on CPU, DDP without device_ids, as tools/dist_train.sh runs them)."""
import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ddp_helpers import run_in_two_processes, sgd_train

NAMES = ['cat', 'dog', 'bus', 'traffic light', 'tree']
# process 0 gets rows 0 and 2 (two images with a positive), process 1 rows 1 and 3 (one):
# local means would weigh the images differently from the global mean
GLOBAL_GT = torch.tensor([[1., 0., -1., 0., 1.],
                          [0., 0., -1., 0., 0.],
                          [-1., 1., 0., 0., 0.],
                          [0., 0., 1., 1., -1.]])
STEPS = 2
STAGES = (1, 2)


def _build(stage):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MKTClassifier',
        backbone=dict(type='OpenCLIPBackbone', model_name='mlr-tiny-vit', pretrained=None,
                      image_size=64, trainable_vision_blocks=1, with_teacher=True),
        prompt_learner=dict(type='TemplateContextPrompts', learnable=stage == 2),
        head=dict(type='MKTTwoStreamHead', topk_patches=4),
        train_image_tower=stage == 1,
        distill_loss=dict(type='EmbeddingL1Loss') if stage == 1 else None,
        class_names=NAMES))


def _train(model, rows, wrap=None):
    x = torch.randn(len(GLOBAL_GT), 3, 64, 64, generator=torch.Generator().manual_seed(3))
    samples = [DataSample().set_gt_score(row) for row in GLOBAL_GT[rows]]
    return sgd_train(model, x[rows], samples, STEPS, lr=0.05, wrap=wrap)


def _job(rows, wrap):
    return {stage: _train(_build(stage), rows, wrap) for stage in STAGES}


_job.num_rows = len(GLOBAL_GT)


@pytest.fixture(scope='module')
def two_process_results(tmp_path_factory):
    return run_in_two_processes(tmp_path_factory.mktemp('mkt_ddp'), _job)[0]


@pytest.mark.parametrize('stage', STAGES)
def test_two_processes_train_mkt_like_one(stage, two_process_results):
    single = _train(_build(stage), list(range(len(GLOBAL_GT))))
    start = {n: p.detach() for n, p in _build(stage).named_parameters() if p.requires_grad}
    assert single.keys() == two_process_results[stage].keys()
    for name, value in single.items():
        assert not torch.allclose(value, start[name])  # it trained
        torch.testing.assert_close(two_process_results[stage][name], value, rtol=1e-4,
                                   atol=1e-5, msg=f'stage {stage}: {name}')
