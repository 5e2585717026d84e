"""Every config under configs/ loads, dumps and builds (with a tiny CLIP in place of the
real weights), and the shared recipes say what METHODS.md says."""
import math
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

CONFIG_DIR = Path(__file__).parent.parent / 'configs'
CONFIGS = sorted(p for p in CONFIG_DIR.rglob('*.py') if '_base_' not in p.parts)
NUM_CLASSES = {'coco': 80, 'voc07': 20, 'nuswide': 81}


def _rel(path):
    return str(path.relative_to(CONFIG_DIR))


def test_required_entry_points_exist():
    names = {_rel(p) for p in CONFIGS}
    assert 'dualcoop_pp/coco_p30.py' in names
    for method in ('dualcoop', 'dualcoop_pp'):
        for ds in NUM_CLASSES:
            for p in range(10, 100, 10):
                assert f'{method}/{ds}_p{p}.py' in names
        assert f'{method}/coco_zsl.py' in names and f'{method}/nuswide_zsl.py' in names
    assert 'dualcoop/coco_zsl_handcrafted.py' in names
    for folder in {p.parent for p in CONFIGS}:
        assert (folder / 'README.md').is_file(), f'{folder} has no README.md'


@pytest.mark.parametrize('path', CONFIGS, ids=_rel)
def test_config_loads_dumps_and_builds(path):
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmpretrain'
    assert any(h.type == 'ClassNamesHook' for h in cfg.custom_hooks)
    for key in ('model', 'train_dataloader', 'test_dataloader', 'test_evaluator',
                'optim_wrapper', 'param_scheduler'):
        assert key in cfg, f'{path} has no {key}'
    Config.fromstring(cfg.pretty_text, '.py')  # the Runner's dump must parse back

    name = path.stem
    match = re.fullmatch(r'(coco|voc07|nuswide)_p(\d0)', name)
    if match:
        ds, ratio = match.group(1), int(match.group(2)) / 100
        assert cfg.train_dataloader.dataset.label_simulation.known_ratio == ratio
        assert cfg.model.prompt_learner.num_classes == NUM_CLASSES[ds]
        assert cfg.model.backbone.model_name == 'RN101'
        assert cfg.model.backbone.image_size == 448
    if name.endswith('zsl') or name.endswith('zsl_handcrafted'):
        assert cfg.model.prompt_learner.get('class_specific', False) is False
        subsets = cfg.test_evaluator.class_subsets
        assert 'zsl' in subsets

    # Build the model with a tiny random CLIP instead of the real weights (once per
    # distinct model: the per-ratio configs share theirs).
    model_cfg = cfg.model.copy()
    if model_cfg.backbone.type == 'OpenCLIPBackbone':
        model_cfg.backbone.update(model_name='mlr-tiny-rn', pretrained=None, image_size=64)
    key = repr(model_cfg.to_dict())
    if key not in _BUILT:
        _BUILT[key] = _build_and_predict(model_cfg)
    assert _BUILT[key]


_BUILT = {}


def _build_and_predict(model_cfg):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    names = [f'class {i}' for i in range(model_cfg.prompt_learner.get('num_classes') or 3)]
    model.set_class_names(names)
    model.eval()
    with torch.no_grad():
        scores = model.predict(torch.randn(1, 3, 64, 64))[0].pred_score
    assert scores.shape == (len(names), ) and torch.isfinite(scores).all()
    return True


def _lr_sequence(schedule_cfg, base_lr, epochs):
    from mmengine.optim.scheduler import ConstantLR, CosineAnnealingLR
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    kinds = dict(ConstantLR=ConstantLR, CosineAnnealingLR=CosineAnnealingLR)
    schedulers = [kinds[c['type']](opt, **{k: v for k, v in c.items() if k != 'type'})
                  for c in schedule_cfg]
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        for s in schedulers:
            s.step()
    return lrs


@pytest.mark.parametrize('config, base_lr', [('dualcoop/coco_p50.py', 0.002),
                                             ('dualcoop/voc07_p50.py', 0.001),
                                             ('dualcoop_pp/coco_p30.py', 0.005)])
def test_warmup_then_cosine_schedule(config, base_lr):
    """1 warm-up epoch at a constant 1e-5, then cosine from the base lr over 49 epochs
    (METHODS.md sections 1-2), compared with the formula written out."""
    cfg = Config.fromfile(str(CONFIG_DIR / config))
    assert cfg.optim_wrapper.optimizer.lr == base_lr
    assert cfg.train_cfg.max_epochs == 50
    lrs = _lr_sequence(cfg.param_scheduler, base_lr, 50)
    expected = [1e-5] + [base_lr * (1 + math.cos(math.pi * (e - 1) / 49)) / 2
                         for e in range(1, 50)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)
