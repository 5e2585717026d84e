"""tools/benchmark.py: JSON rows and ratios to the bound, what each row runs, and the
measurement that made the old tool report inference at 267% of its own tower."""
import json
import math

import pytest
import torch
from test_tools import REPO, SIZE, _load_tool, coco_options, small_model_options

from mlr_plugin.datasets.demo_world import generate_demo_world

bench = _load_tool('benchmark')
CONFIG = str(REPO / 'configs/dualcoop/coco_p30.py')
TINY = ['--num-classes', '5', '--device', 'cpu', '--cfg-options', *small_model_options()[:3],
        'model.prompt_learner.num_classes=5']
KEYS = dict(batch_size=int, device=str, bound_img_s=float, step_img_s=float,
            reference_step_img_s=float, cache_step_img_s=float, infer_img_s=float,
            peak_mem_mb=float)
DATA_KEYS = ('data_img_s', 'data_pil_img_s', 'data_loader_img_s', 'e2e_img_s')


def _tiny_model(num_classes=5, *options):
    from mmpretrain.registry import MODELS

    from mlr_plugin.engine.launch import load_config
    cfg = load_config(CONFIG, small_model_options()[:3] +
                      [f'model.prompt_learner.num_classes={num_classes}', *options])
    model = MODELS.build(cfg.model)
    model.set_class_names([f'class {i}' for i in range(num_classes)])
    return model


def _rows(model, bs=2):
    from mmengine.optim import build_optim_wrapper
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=1e-3)))
    inputs, samples = bench._inputs(model, bs, len(model.class_names),
                                    torch.device('cpu'), False)
    return bench.build_rows(model, optim, inputs, samples, torch.device('cpu'), False)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('bench_world') / 'coco_format'
    generate_demo_world(root, seed=2, num_train=12, num_val=4, num_test=4, image_size=SIZE)
    return root


def test_json_has_every_row_as_a_ratio_to_the_bound(world, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    opts = coco_options(world) + ['model.prompt_learner.num_classes=20',
                                  'train_dataloader.dataset.pipeline.4.shape=32']
    results = bench.main([CONFIG, '--batch-size', '2', '3', '--iters', '2', '--warmup', '1',
                          '--device', 'cpu', '--data', '--data-iters', '1', '--gpu-data',
                          '--data-workers', '0', '--json', str(out), '--cfg-options', *opts])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(results))
    assert [r['batch_size'] for r in written] == [2, 3]
    for r in written:
        for key, kind in KEYS.items():
            assert isinstance(r[key], kind), key
        for key in [k for k in r if k.endswith('_img_s')]:
            assert math.isfinite(r[key]) and r[key] > 0, key
            stem = key[:-len('_img_s')]
            if stem != 'bound':
                assert r[f'{stem}_vs_bound'] == pytest.approx(r[key] / r['bound_img_s'])
        for key in DATA_KEYS + ('data_gpu_img_s', 'e2e_gpu_img_s'):
            assert r[key] > 0, key
        assert r['cache_vs_step'] == pytest.approx(r['cache_step_img_s'] / r['step_img_s'])
        assert r['step_vs_reference'] == pytest.approx(
            r['step_img_s'] / r['reference_step_img_s'])
        assert r['data_vs_pil'] == pytest.approx(r['data_img_s'] / r['data_pil_img_s'])
        assert r['device'].startswith('CPU') and len(r['loadavg_before']) == 3
        assert set(r['peak_mem_mb_rows']) == set(bench.MODEL_ROWS)
    table = capsys.readouterr().out
    assert 'fraction of the bound' in table and 'step_vs_reference' in table


def test_json_is_written_atomically(tmp_path, monkeypatch):
    """A failure while writing leaves the previous file whole."""
    out = tmp_path / 'bench.json'
    out.write_text('[{"old": 1}]')
    import mlr_plugin.fileio as fileio

    def boom(obj, f, **kwargs):
        f.write('[{"half')
        raise RuntimeError('disk full')
    monkeypatch.setattr(fileio.json, 'dump', boom)
    with pytest.raises(RuntimeError, match='disk full'):
        bench.main([CONFIG, '--batch-size', '1', '--iters', '1', '--warmup', '0',
                    '--json', str(out), *TINY])
    assert json.loads(out.read_text()) == [{'old': 1}]


def _trace(model, fn):
    """(module, training, grad enabled, autocast, input dtype/shape/layout) of every
    image-tower module call (the backbone and ``clip.visual``) while ``fn`` runs."""
    calls = []

    def hook(module, args):
        x = next((a for a in args if torch.is_tensor(a)), None)
        calls.append((names[module], module.training, torch.is_grad_enabled(),
                      torch.is_autocast_enabled('cpu'),
                      None if x is None else (x.dtype, tuple(x.shape),
                                              x.is_contiguous())))
    names = {m: n for n, m in model.backbone.named_modules()
             if n == '' or n.startswith('clip.visual')}
    handles = [m.register_forward_pre_hook(hook) for m in names]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return calls


def test_bound_runs_the_tower_exactly_as_inference_does():
    """Regression (issue 13): the old "tower" row called ``model.backbone`` directly in
    whatever mode the model was left in (train mode on the first batch size) instead of
    inference's path; the bound must run the same modules in the same modes."""
    model = _tiny_model()
    rows = _rows(model)
    model.train()  # as a fresh model, or one left by a train row
    bound, infer = _trace(model, rows['bound']), _trace(model, rows['infer'])
    assert bound and bound == infer
    step = _trace(model, rows['step'])
    tower = [c for c in step if c[0] != '']  # inside the backbone: frozen, no grad
    assert tower == [c for c in bound if c[0] != '']

    inputs = torch.randn(2, 3, SIZE, SIZE)

    def old_tower():  # tools/benchmark.py before this fix
        with torch.no_grad():
            model.backbone(inputs)
    model.train()
    assert _trace(model, old_tower) != infer  # the check above catches the old row


def test_reference_step_encodes_full_length_text_of_every_class_and_restores():
    model = _tiny_model(5, 'model.num_train_classes=3')
    rows = _rows(model)
    lengths = []
    text = model.backbone._text.transformer
    handle = text.register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape))
    rows['step']()
    rows['reference_step']()
    handle.remove()
    ours, reference = lengths
    context = model.backbone.context_length
    assert reference[1] == context and ours[1] < context
    assert reference[0] == 2 * 5 and ours[0] == 2 * 3  # pos + neg prompts per class
    assert model.num_train_classes == 3
    assert 'encode_prompt_embeddings' not in vars(model.backbone)


def test_reference_step_turns_class_chunking_off_where_a_module_has_it():
    model = _tiny_model()
    model.head.class_chunk_size = 2  # as the chunked heads (branch speed_scale) have it
    seen = []
    with bench.plain_text_encoding(model):
        seen.append(model.head.class_chunk_size)
        assert not hasattr(model.prompt_learner, 'encode_chunk_size') or \
            model.prompt_learner.encode_chunk_size is None
    assert seen == [None] and model.head.class_chunk_size == 2


def test_cache_step_skips_the_image_tower_and_computes_the_same_loss():
    model = _tiny_model()
    rows = _rows(model)
    calls = []
    handles = [model.backbone.register_forward_pre_hook(lambda m, a: calls.append(1)),
               model.backbone.clip.visual.register_forward_pre_hook(
                   lambda m, a: calls.append(2))]
    rows['cache_step']()
    for h in handles:
        h.remove()
    assert calls == []
    inputs, samples = bench._inputs(model, 2, 5, torch.device('cpu'), False)
    cached = bench.cached_features(model, inputs)
    model.train()
    with torch.no_grad():
        from_images = model.loss(inputs, samples)
        from_cache = model.loss(cached, samples)
    for key in from_images:
        torch.testing.assert_close(from_cache[key], from_images[key], rtol=1e-2, atol=1e-4)


def test_interleaved_best_of_rounds_survives_a_load_burst():
    """The cause of the old tool's 267%: rows timed one after the other as means, so a
    burst of load from other processes during the tower row made inference (which runs
    the tower and more) look faster. Fake clock: the tower costs 1, inference 1.2, and
    the machine is 3.5x slower during the first 12 time units."""
    clock = dict(t=0.0)

    def work(cost):
        def fn():
            clock['t'] += cost * (3.5 if clock['t'] < 12 else 1)
        return fn
    fns = dict(bound=work(1.0), infer=work(1.2))

    def sequential_means(iters=3):  # the old tool's measurement
        out = {}
        for name, fn in fns.items():
            start = clock['t']
            for _ in range(iters):
                fn()
            out[name] = (clock['t'] - start) / iters
        return out
    old = sequential_means()
    assert old['bound'] > old['infer']  # "inference faster than its own tower"
    clock['t'] = 0.0
    new = bench.measure(fns, rounds=6, warmup=0, clock=lambda: clock['t'])
    assert new['bound']['best'] == pytest.approx(1.0)
    assert new['infer']['best'] == pytest.approx(1.2)


def test_rows_faster_than_the_bound_are_flagged():
    """The issue's figures (tower 161, train 158, inference 430 img/s) are reported as
    untrustworthy instead of as a 267% ratio."""
    r = bench.add_ratios(dict(batch_size=32, bound_img_s=161.0, step_img_s=158.0,
                              reference_step_img_s=100.0, cache_step_img_s=900.0,
                              infer_img_s=430.0))
    assert r['infer_vs_bound'] == pytest.approx(430 / 161)
    assert len(r['warnings']) == 1 and r['warnings'][0].startswith('infer ran faster')
    fine = bench.add_ratios(dict(batch_size=32, bound_img_s=161.0, step_img_s=150.0,
                                 reference_step_img_s=100.0, cache_step_img_s=900.0,
                                 infer_img_s=160.0))
    assert fine['warnings'] == []


def test_busy_cpu_machine_is_reported():
    """The other cause of the old figures: 2 OpenMP threads on 2 cores with other
    processes running. A CPU run on a machine busier than its cores says so."""
    cpu = torch.device('cpu')
    busy = bench.busy_warning(cpu, [16.0, 15.0, 12.0], [17.0, 16.0, 13.0], 2, cores=2)
    assert len(busy) == 1 and 'load average 17.0 on 2 cores' in busy[0]
    assert '--threads 1' in busy[0]
    assert '--threads 1' not in bench.busy_warning(cpu, [16.0] * 3, None, 1, cores=2)[0]
    assert bench.busy_warning(cpu, [1.5, 1, 1], [1.9, 1, 1], 2, cores=2) == []
    assert bench.busy_warning(torch.device('cuda'), [16.0] * 3, None, 2, cores=2) == []


def test_memory_is_each_rows_own_peak():
    """CPU memory per row is that row's own peak: a big batch first must not make the
    small batch after it report the big one's memory (a process-wide max RSS did)."""
    rows = bench.main([CONFIG, '--batch-size', '256', '1', '--iters', '1', '--warmup', '0',
                       *TINY])
    big, small = rows[0]['peak_mem_mb'], rows[1]['peak_mem_mb']
    assert small < big - 20, (big, small)


def test_pil_pipeline_follows_the_config_steps(tmp_path):
    """The torchvision comparison pipeline runs the config's steps on a file and gives
    a uint8 CHW tensor of the configured size; an unknown step is a one-line error."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO / 'configs/_base_/datasets/common_224px.py'))
    import cv2
    import numpy as np
    path = tmp_path / 'a.jpg'
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (300, 260, 3),
                                                             dtype=np.uint8))
    for pipeline in (cfg.train_pipeline, cfg.train_pipeline_rrc):
        img = bench.pil_pipeline(pipeline)(str(path))
        assert img.dtype == torch.uint8 and img.shape == (3, 224, 224)
    with pytest.raises(ValueError, match="pipeline step 'Mosaic'"):
        bench.pil_pipeline([dict(type='Mosaic')])
