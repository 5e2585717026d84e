"""tools/train.py, tools/test.py and tools/infer.py end to end on generated data in the
real COCO and NUS-WIDE formats, with a tiny random CLIP (nothing downloaded)."""
import functools
import importlib.util
import json
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mlr_plugin.compat import load_checkpoint_file
from mlr_plugin.datasets.demo_world import DEMO_CLASSES, DEMO_SEEN, DEMO_UNSEEN, \
    generate_demo_world

REPO = Path(__file__).parent.parent
SIZE = 64  # image size of the tiny runs


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('world') / 'coco_format'
    generate_demo_world(root, seed=1, num_train=24, num_val=12, num_test=12, image_size=64)
    return root


def free_port() -> int:
    """A TCP port nobody listens on now (a fixed one collides with parallel runs)."""
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def coco_options(root):
    """The --cfg-options a user passes to run a COCO config on other data and a tiny
    CLIP (README: 'Run a config on your own data / another backbone')."""
    opts = []
    for split, loader in (('train', 'train_dataloader'), ('val', 'val_dataloader'),
                          ('test', 'test_dataloader')):
        opts += [f'{loader}.dataset.data_root={root}',
                 f'{loader}.dataset.ann_file=annotations/instances_{split}.json',
                 f'{loader}.dataset.data_prefix.img_path={split}',
                 f'{loader}.num_workers=0', f'{loader}.persistent_workers=False',
                 f'{loader}.batch_size=8']
    return opts + small_model_options()


@functools.lru_cache(maxsize=None)
def tiny_clip_weights() -> str:
    """A fixed random mlr-tiny-rn CLIP saved as a weights file: training, testing and
    inference must load the same frozen weights (checkpoints check them by digest)."""
    from mlr_plugin.models.clip import OpenCLIPBackbone
    path = Path(tempfile.mkdtemp(prefix='mlr_tiny_clip_')) / 'mlr-tiny-rn.pt'
    with torch.random.fork_rng():
        torch.manual_seed(0)
        clip = OpenCLIPBackbone('mlr-tiny-rn', pretrained=None).clip
    torch.save(clip.state_dict(), path)
    return str(path)


def small_model_options():
    return ['model.backbone.model_name=mlr-tiny-rn',
            f'model.backbone.pretrained={tiny_clip_weights()}',
            f'model.backbone.image_size={SIZE}',
            f'train_dataloader.dataset.pipeline.0.target_size={SIZE}',
            f'train_dataloader.dataset.pipeline.1.scale={SIZE}',
            f'val_dataloader.dataset.pipeline.0.target_size={SIZE}',
            f'val_dataloader.dataset.pipeline.1.scale=({SIZE},{SIZE})',
            f'test_dataloader.dataset.pipeline.0.target_size={SIZE}',
            f'test_dataloader.dataset.pipeline.1.scale=({SIZE},{SIZE})',
            'default_hooks.logger.interval=1']


def test_train_resume_test_infer_partial_labels(world, tmp_path, capsys):
    """configs/dualcoop_pp/coco_p30.py, the README's entry point, on COCO-format data."""
    train, test = _load_tool('train'), _load_tool('test')
    work = tmp_path / 'work'
    config = str(REPO / 'configs/dualcoop_pp/coco_p30.py')
    opts = coco_options(world) + ['model.prompt_learner.num_classes=20',
                                  'train_dataloader.dataset.pipeline.4.shape=32']
    runner = train.main([config, '--work-dir', str(work), '--cfg-options',
                         *opts, 'train_cfg.max_epochs=2', 'train_cfg.val_interval=1'])
    first_labels = runner.train_dataloader.dataset.get_label_matrix()
    known = (first_labels != -1).mean()
    assert 0.1 < known < 0.5  # 30% of 24 x 20 entries, within sampling error
    ckpt = load_checkpoint_file(work / 'epoch_2.pth')
    assert set(ckpt['state_dict']) - {'_extra_state'} == {
        'prompt_learner.ctx_evidence', 'prompt_learner.ctx_pos', 'prompt_learner.ctx_neg',
        'head.log_temperature'}
    assert set(ckpt['meta']['trained']) == set(ckpt['state_dict']) - {'_extra_state'}
    assert ckpt['meta']['dataset_meta']['classes'] == DEMO_CLASSES
    assert (work / 'best_mAP_epoch_1.pth').is_file() or \
        (work / 'best_mAP_epoch_2.pth').is_file()

    # --resume continues from epoch 2 with the same partial-label mask.
    runner = train.main([config, '--work-dir', str(work), '--resume', '--cfg-options',
                         *opts, 'train_cfg.max_epochs=3', 'train_cfg.val_interval=1'])
    assert runner.epoch == 3 and (work / 'epoch_3.pth').is_file()
    np.testing.assert_array_equal(runner.train_dataloader.dataset.get_label_matrix(),
                                  first_labels)
    resumed = load_checkpoint_file(work / 'epoch_3.pth')
    assert not torch.equal(resumed['state_dict']['prompt_learner.ctx_pos'],
                           ckpt['state_dict']['prompt_learner.ctx_pos'])

    # tools/test.py prints mAP / CF1 / OF1 and writes per-image scores.
    out = tmp_path / 'scores.json'
    metrics = test.main([config, str(work / 'epoch_3.pth'), '--work-dir', str(tmp_path / 't'),
                         '--out', str(out), '--cfg-options', *opts])
    printed = capsys.readouterr().out
    for key in ('mAP', 'CF1', 'OF1'):
        assert key in printed and math.isfinite(metrics[key])
    # the README's promise: the metrics also land in the JSON file the tool names
    written = Path(printed.split('metrics written to ')[1].split()[0])
    assert written.parent.parent == tmp_path / 't'
    assert json.loads(written.read_text())['mAP'] == pytest.approx(metrics['mAP'])
    dumped = json.loads(out.read_text())
    assert dumped['classes'] == list(DEMO_CLASSES) and len(dumped['predictions']) == 12
    scores = np.array([p['pred_score'] for p in dumped['predictions']])
    assert scores.shape == (12, 20) and ((scores >= 0) & (scores <= 1)).all()

    # tools/infer.py on the checkpoint alone: its config and class names travel with it.
    infer = _load_tool('infer')
    image = sorted((world / 'test').glob('*.jpg'))[0]
    results = infer.main([str(work / 'epoch_3.pth'), str(image), '--topk', '3',
                          '--out', str(tmp_path / 'pred.json')])
    assert len(results[0]['topk']) == 3 and set(results[0]['scores']) == set(DEMO_CLASSES)
    assert json.loads((tmp_path / 'pred.json').read_text())[0]['image'] == str(image)


def test_train_and_test_zero_shot(world, tmp_path, capsys):
    """configs/dualcoop/coco_zsl.py: train on seen classes, test GZSL + ZSL in one run."""
    train, test = _load_tool('train'), _load_tool('test')
    cfg = Config.fromfile(str(REPO / 'configs/dualcoop/coco_zsl.py'))
    cfg.merge_from_dict(_options_dict(coco_options(world)))
    cfg.train_dataloader.dataset.classes = list(DEMO_SEEN)
    cfg.val_dataloader.dataset.classes = list(DEMO_CLASSES)
    cfg.test_dataloader.dataset.classes = list(DEMO_CLASSES)
    subsets = dict(zsl=list(DEMO_UNSEEN))
    cfg.val_evaluator.class_subsets = subsets
    cfg.test_evaluator.class_subsets = subsets
    cfg.model.prompt_learner.n_ctx = 4
    cfg.train_dataloader.dataset.pipeline[4].shape = 32
    cfg.train_cfg.max_epochs = 1
    config = tmp_path / 'zsl.py'
    cfg.dump(str(config))
    work = tmp_path / 'work'
    runner = train.main([str(config), '--work-dir', str(work)])
    assert runner.train_dataloader.dataset.metainfo['classes'] == DEMO_SEEN
    ckpt = load_checkpoint_file(work / 'epoch_1.pth')
    assert ckpt['state_dict']['prompt_learner.ctx_pos'].shape == (4, 32)  # shared context
    metrics = test.main([str(config), str(work / 'epoch_1.pth'),
                         '--work-dir', str(tmp_path / 't')])
    for key in ('mAP', 'P@3', 'F1@5', 'zsl/mAP', 'zsl/P@3', 'zsl/R@5', 'zsl/F1@3'):
        assert math.isfinite(metrics[key]), key
    assert 'zsl/mAP' in capsys.readouterr().out


def test_hand_crafted_zero_shot_baseline_tests_without_checkpoint(world, tmp_path):
    test = _load_tool('test')
    cfg = Config.fromfile(str(REPO / 'configs/dualcoop/coco_zsl_handcrafted.py'))
    cfg.merge_from_dict(_options_dict(coco_options(world)))
    # (class names with spaces cannot travel through --cfg-options: mmengine strips them)
    cfg.test_dataloader.dataset.classes = None
    cfg.test_evaluator.class_subsets = dict(zsl=list(DEMO_UNSEEN))
    config = tmp_path / 'handcrafted.py'
    cfg.dump(str(config))
    metrics = test.main([str(config), '--work-dir', str(tmp_path / 't')])
    assert math.isfinite(metrics['mAP']) and math.isfinite(metrics['zsl/mAP'])


def test_train_and_test_nus_wide_list_format(world, tmp_path):
    """configs/dualcoop/nuswide_p30.py on NUS-WIDE list files written from the world."""
    from pycocotools.coco import COCO
    train, test = _load_tool('train'), _load_tool('test')
    root = tmp_path / 'nus'
    (root / 'images').mkdir(parents=True)
    for split in ('train', 'test'):
        coco = COCO(str(world / 'annotations' / f'instances_{split}.json'))
        cat_ids = sorted(coco.getCatIds())
        rows, paths = [], []
        for img_id in sorted(coco.getImgIds()):
            info = coco.loadImgs(img_id)[0]
            present = {a['category_id'] for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))}
            rows.append(' '.join('1' if c in present else '0' for c in cat_ids))
            paths.append(f'{split}/{info["file_name"]}')
        (root / f'{split}_images.txt').write_text('\n'.join(paths) + '\n')
        (root / f'{split}_labels.txt').write_text('\n'.join(rows) + '\n')
        (root / 'images' / split).symlink_to(world / split)
    (root / 'classes.txt').write_text('\n'.join(DEMO_CLASSES) + '\n')

    cfg = Config.fromfile(str(REPO / 'configs/dualcoop/nuswide_p30.py'))
    cfg.merge_from_dict(_options_dict(small_model_options()))
    for loader, split in ((cfg.train_dataloader, 'train'), (cfg.val_dataloader, 'test')):
        loader.update(num_workers=0, persistent_workers=False, batch_size=8)
        loader.dataset.update(data_root=str(root), ann_file=f'{split}_images.txt',
                              label_file=f'{split}_labels.txt', label_dir=None,
                              classes_file='classes.txt', data_prefix=dict(img_path='images'))
    cfg.test_dataloader = cfg.val_dataloader
    cfg.model.prompt_learner.num_classes = 20
    cfg.train_dataloader.dataset.pipeline[4].shape = 32
    cfg.train_cfg.max_epochs = 1
    config = tmp_path / 'nus.py'
    cfg.dump(str(config))
    runner = train.main([str(config), '--work-dir', str(tmp_path / 'work')])
    assert runner.train_dataloader.dataset.metainfo['classes'] == DEMO_CLASSES
    metrics = test.main([str(config), str(tmp_path / 'work' / 'epoch_1.pth'),
                         '--work-dir', str(tmp_path / 't')])
    assert math.isfinite(metrics['mAP'])


def test_bad_inputs_fail_with_one_line_errors(tmp_path):
    train, test = _load_tool('train'), _load_tool('test')
    with pytest.raises(FileNotFoundError, match='config file not found: nope.py'):
        train.main(['nope.py'])
    config = str(REPO / 'configs/dualcoop/coco_p30.py')
    with pytest.raises(FileNotFoundError, match='checkpoint not found: missing.pth'):
        test.main([config, 'missing.pth'])
    with pytest.raises(ValueError, match='--cfg-options entry'):
        train.main([config, '--cfg-options', 'no_equals_sign'])
    # a config whose data are missing names the annotation file, and writes nothing
    work = tmp_path / 'work'
    with pytest.raises(Exception, match='instances_train2014.json'):
        train.main([config, '--work-dir', str(work), '--cfg-options',
                    *small_model_options(), f'train_dataloader.dataset.data_root={tmp_path}',
                    f'val_dataloader.dataset.data_root={tmp_path}',
                    'train_dataloader.num_workers=0',
                    'train_dataloader.persistent_workers=False'])
    assert not list(work.rglob('*.pth'))


def _options_dict(options):
    from mlr_plugin.engine.launch import parse_cfg_options
    return parse_cfg_options(options)


def test_dist_train_two_cpu_processes(world, tmp_path):
    """tools/dist_train.sh with torchrun: 2 processes over gloo on CPU (DDP without
    device_ids), one epoch, gathered validation, a checkpoint; and the trained prompts
    equal those of one process on the same global batch (2 x 4 = 8 images), with the
    real data pipeline and augmentation."""
    import os
    import subprocess
    import sys
    work = tmp_path / 'work'
    env = dict(os.environ, PATH=f'{Path(sys.executable).parent}:{os.environ["PATH"]}',
               PORT=str(free_port()), OMP_NUM_THREADS='1')
    opts = coco_options(world) + ['model.prompt_learner.num_classes=20',
                                  'train_dataloader.dataset.pipeline.4.shape=32',
                                  'train_dataloader.batch_size=4', 'train_cfg.max_epochs=1',
                                  'train_cfg.val_interval=1']
    proc = subprocess.run(['bash', str(REPO / 'tools/dist_train.sh'),
                           str(REPO / 'configs/dualcoop/coco_p30.py'), '2',
                           '--work-dir', str(work), '--cfg-options', *opts],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(work.rglob('*.log')).read_text()
    assert 'Distributed training: True' in log and 'Epoch(val)' in log
    assert (work / 'epoch_1.pth').is_file()

    single = tmp_path / 'single'
    opts[opts.index('train_dataloader.batch_size=4')] = 'train_dataloader.batch_size=8'
    _load_tool('train').main([str(REPO / 'configs/dualcoop/coco_p30.py'),
                              '--work-dir', str(single), '--cfg-options', *opts])
    two = load_checkpoint_file(work / 'epoch_1.pth')['state_dict']
    one = load_checkpoint_file(single / 'epoch_1.pth')['state_dict']
    from mmengine.runner import Runner

    from mlr_plugin.engine.launch import build_runner_config
    init = Runner.from_cfg(build_runner_config(  # the same seeded initial contexts
        str(REPO / 'configs/dualcoop/coco_p30.py'), work_dir=str(tmp_path / 'init'),
        cfg_options=opts)).model.state_dict()
    for key in ('prompt_learner.ctx_pos', 'prompt_learner.ctx_neg'):
        assert (one[key] - init[key]).abs().max() > 1e-4  # it trained
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ runs that must not
# exit 0 with wrong results, interruptions (issue 16, items 4a, 6, 8)
def _p30_options(world):
    return coco_options(world) + ['model.prompt_learner.num_classes=20',
                                  'train_dataloader.dataset.pipeline.4.shape=32']


def test_test_tool_refuses_untrained_prompts_unless_asked(world, tmp_path, capsys):
    """Without a checkpoint a model with trainable prompts is refused in one line;
    --untrained evaluates it on purpose; --out .pkl works like .json."""
    import pickle
    test = _load_tool('test')
    config = str(REPO / 'configs/dualcoop/coco_p30.py')
    opts = ['--work-dir', str(tmp_path / 't'), '--cfg-options', *_p30_options(world)]
    with pytest.raises(ValueError, match='trainable parameters .*prompt_learner.ctx_pos'
                       '.* no checkpoint was given: .*--untrained'):
        test.main([config, *opts])
    out = tmp_path / 'scores.pkl'
    metrics = test.main([config, '--untrained', '--out', str(out), *opts])
    assert math.isfinite(metrics['mAP'])
    assert f'wrote per-image scores to {out}' in capsys.readouterr().out
    with open(out, 'rb') as f:
        dumped = pickle.load(f)
    assert dumped['classes'] == list(DEMO_CLASSES) and len(dumped['predictions']) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ['scores.pkl', 't']


def test_ctrl_c_before_the_first_checkpoint_then_resume_says_nothing_to_resume(
        world, tmp_path, capsys, monkeypatch):
    train = _load_tool('train')
    config = str(REPO / 'configs/dualcoop/coco_p30.py')
    work = tmp_path / 'work'
    args = [config, '--work-dir', str(work), '--no-validate', '--cfg-options',
            *_p30_options(world), 'train_cfg.max_epochs=1']
    make_hook = train.make_final_validation

    def interrupting_hook():
        hook = make_hook()

        def after_train_iter(runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter == 1:  # during the second iteration: no checkpoint yet
                raise KeyboardInterrupt
        hook.after_train_iter = after_train_iter
        return hook

    monkeypatch.setattr(train, 'make_final_validation', interrupting_hook)
    with pytest.raises(SystemExit) as exit:  # as tools/train.py runs main
        train.cli.run_cli(train.main, args)
    assert exit.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == 'interrupted at iteration 2; no checkpoint yet (a rerun starts ' \
        'from scratch)'
    monkeypatch.undo()

    runner = train.main(args[:3] + ['--resume'] + args[3:])
    err = capsys.readouterr().err
    assert err.startswith('--resume: ') and 'nothing to resume' in err.splitlines()[0]
    assert runner.epoch == 1 and (work / 'epoch_1.pth').is_file()


def test_ctrl_c_in_a_training_process_prints_one_line_and_exits_130(world, tmp_path):
    """SIGINT to a real tools/train.py process once it has written a checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time
    work = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(
        [sys.executable, str(REPO / 'tools/train.py'), str(REPO / 'configs/dualcoop/coco_p30.py'),
         '--work-dir', str(work), '--no-validate', '--cfg-options', *_p30_options(world),
         'train_cfg.max_epochs=1000'],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (work / 'epoch_1.pth').is_file():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, 'no checkpoint within 120 s'
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert 'Traceback' not in err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r'interrupted at iteration \d+; rerun with --resume to continue '
                        rf'from {re.escape(str(work))}/epoch_\d+\.pth', last), last


def test_failed_run_leaves_no_run_folder_in_the_default_work_dir(world, tmp_path, monkeypatch):
    """A run that fails before its first checkpoint (here: a missing annotation file,
    found only when the Runner builds the dataset) leaves no work_dirs/<name>/<time>/
    debris behind when the work dir was the default; a chosen work dir is kept."""
    train = _load_tool('train')
    monkeypatch.chdir(tmp_path)
    config = str(REPO / 'configs/dualcoop/coco_p30.py')
    opts = coco_options(world) + ['model.prompt_learner.num_classes=20',
                                  'train_dataloader.dataset.ann_file=annotations/missing.json']
    with pytest.raises(FileNotFoundError, match='missing.json'):
        train.main([config, '--cfg-options', *opts])
    assert not (tmp_path / 'work_dirs').exists()
    # mmengine keys its logger and visualizer by the run's timestamp (1 s resolution): a
    # second Runner in the same second of one process would reuse the first run's folder
    time.sleep(1.1)
    chosen = tmp_path / 'mine'
    with pytest.raises(FileNotFoundError, match='missing.json'):
        train.main([config, '--work-dir', str(chosen), '--cfg-options', *opts])
    assert any(chosen.iterdir())  # the user's own folder keeps the log of what failed
