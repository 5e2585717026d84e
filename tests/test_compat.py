"""The environment shims of mlr_plugin.compat (ENVIRONMENT.md items 1-2)."""
import os

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


def test_weights_only_load_accepts_mmengine_checkpoint_objects(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(2.5)
    payload = dict(message_hub=dict(log_scalars={'loss': buffer}),
                   seed=np.int64(3), arr=np.arange(3, dtype=np.float32),
                   dtype=np.dtype('float64'), scalar=np.float64(0.25))
    path = tmp_path / 'ckpt.pth'
    torch.save(payload, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded['message_hub']['log_scalars']['loss'].mean() == pytest.approx(2.0)
    np.testing.assert_array_equal(loaded['arr'], payload['arr'])
    assert loaded['dtype'] == np.dtype('float64') and loaded['scalar'] == 0.25


class NotAllowlisted:
    pass


def test_weights_only_still_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'x': NotAllowlisted()}, path)
    with pytest.raises(Exception, match='NotAllowlisted'):
        torch.load(path, weights_only=True)


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
