"""The environment shims of mlr_plugin.compat (ENVIRONMENT.md items 1-2)."""
import os
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer


def test_config_with_stdlib_imports_loads_and_dumps(tmp_path):
    (tmp_path / 'base_cfg.py').write_text('x = dict(a=dict(b=1))\n')
    (tmp_path / 'child_cfg.py').write_text(
        'import os\n'
        'import copy\n'
        'from os import path as osp\n'
        'from mmengine.config import read_base\n\n'
        'with read_base():\n'
        '    from .base_cfg import *  # noqa\n\n'
        "root = os.path.join('data', 'coco')\n"
        "y = copy.deepcopy(x)\n"
        "z = osp.join(root, 'train2014')\n"
        'x.a.b = 2\n')
    cfg = Config.fromfile(str(tmp_path / 'child_cfg.py'))
    assert cfg.root == 'data/coco' and cfg.z == 'data/coco/train2014'
    assert cfg.x.a.b == 2 and cfg.y.a.b == 1
    # The Runner dumps every config: the imported modules must not end up in it.
    text = cfg.pretty_text
    assert 'module' not in text and "root = 'data/coco'" in text
    out = tmp_path / 'dumped.py'
    cfg.dump(str(out))
    assert Config.fromfile(str(out)).z == 'data/coco/train2014'


def test_config_with_stdlib_import_builds_a_runner_and_trains(tmp_path):
    """The Runner deep-copies its config: the ``os`` module must not be in it."""
    from mmengine.runner import Runner
    from test_tools import REPO, coco_options

    from mlr_plugin.datasets.demo_world import generate_demo_world
    from mlr_plugin.engine.launch import build_runner_config

    world = tmp_path / 'world'
    generate_demo_world(world, seed=1, num_train=8, num_val=4, num_test=4, image_size=64)
    configs = tmp_path / 'configs'
    shutil.copytree(REPO / 'configs', configs)
    (configs / 'dualcoop_pp' / 'with_os.py').write_text(
        'import os\n'
        'from mmengine.config import read_base\n\n'
        'with read_base():\n'
        '    from .coco_p30 import *  # noqa\n\n'
        f"work_dir = os.path.join({str(tmp_path)!r}, 'work')\n")
    options = coco_options(world) + ['model.prompt_learner.num_classes=20',
                                     'train_dataloader.dataset.pipeline.4.shape=32',
                                     'train_cfg.max_epochs=1', 'train_cfg.val_interval=2']
    cfg = build_runner_config(str(configs / 'dualcoop_pp' / 'with_os.py'),
                              cfg_options=options)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1  # 8 images, batch 8
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()


def test_checkpoint_loader_accepts_mmengine_objects_plain_torch_does_not(tmp_path):
    from mlr_plugin.compat import load_checkpoint_file
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(2.5)
    payload = dict(message_hub=dict(log_scalars={'loss': buffer}),
                   seed=np.int64(3), arr=np.arange(3, dtype=np.float32),
                   dtype=np.dtype('float64'), scalar=np.float64(0.25))
    path = tmp_path / 'ckpt.pth'
    torch.save(payload, path)
    loaded = load_checkpoint_file(path)
    assert loaded['message_hub']['log_scalars']['loss'].mean() == pytest.approx(2.0)
    np.testing.assert_array_equal(loaded['arr'], payload['arr'])
    assert loaded['dtype'] == np.dtype('float64') and loaded['scalar'] == 0.25
    # the allow-list lasted for that load only
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(path, weights_only=True)


class NotAllowlisted:
    pass


def test_weights_only_still_refuses_arbitrary_objects(tmp_path):
    from mlr_plugin.compat import CheckpointError, load_checkpoint_file
    path = tmp_path / 'evil.pth'
    torch.save({'x': NotAllowlisted()}, path)
    with pytest.raises(Exception, match='NotAllowlisted'):
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match=r'^checkpoint .* refused .*NotAllowlisted'):
        load_checkpoint_file(path)


def test_atomic_open_keeps_the_old_file_when_writing_fails(tmp_path):
    from mlr_plugin.fileio import atomic_open
    path = tmp_path / 'sub' / 'out.json'
    with atomic_open(path) as f:
        f.write('old')
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write('half-writ')
            raise RuntimeError('interrupted')
    assert path.read_text() == 'old'
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ['out.json']  # no temp file left
    with pytest.raises(ValueError, match='mode'):
        with atomic_open(path, 'r'):
            pass
