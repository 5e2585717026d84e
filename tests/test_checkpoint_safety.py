"""Checkpoint loading is weights-only and scoped (ENVIRONMENT.md item 1): a file built
only from the globals mmengine checkpoints need must not run code, at any entry point."""
import io
import struct
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from test_tools import REPO, _load_tool, coco_options

from mlr_plugin.compat import CheckpointError, load_checkpoint_file
from mlr_plugin.datasets.demo_world import generate_demo_world
from mlr_plugin.engine.launch import build_runner_config

CONFIG = str(REPO / 'configs/dualcoop_pp/coco_p30.py')


def _text(value: str) -> bytes:
    data = value.encode()
    return b'X' + struct.pack('<I', len(data)) + data  # BINUNICODE


def _get(index: int) -> bytes:
    return b'h' + bytes([index])  # BINGET


def _put(index: int) -> bytes:
    return b'q' + bytes([index])  # BINPUT


def _getattr_call(obj_memo: int, name: str, out_memo: int) -> bytes:
    # getattr(memo[obj_memo], name) -> memo[out_memo]; memo 0 holds ``getattr``
    return _get(0) + _get(obj_memo) + _text(name) + b'\x86' + b'R' + _put(out_memo)


def exploit_pickle(code: str) -> bytes:
    """A protocol-2 pickle naming only ``builtins.getattr`` and ``HistoryBuffer``.

    With the real getattr allowed: ``getattr(getattr, '__self__')`` is the builtins
    module, so ``exec`` and ``slice`` are in reach. An inner HistoryBuffer gets
    ``setdefault=slice, update=exec`` as instance attributes, an outer one takes it as
    its ``_statistics_methods``, and the outer's next ``__setstate__`` then calls
    ``_statistics_methods.update(<code>)``, that is ``exec(code)``."""
    return b''.join([
        b'\x80\x02', b'(',  # PROTO 2, MARK: everything below ends up in one tuple
        b'cbuiltins\ngetattr\n', _put(0),
        _getattr_call(0, '__self__', 1),
        _getattr_call(1, 'exec', 2),
        _getattr_call(1, 'slice', 3),
        b'cmmengine.logging.history_buffer\nHistoryBuffer\n', _put(4),
        b')', b'\x81', _put(5),  # inner = HistoryBuffer()
        b'}', b'(', _text('setdefault'), _get(3), _text('update'), _get(2), b'u', b'b',
        _get(4), b')', b'\x81', _put(6),  # outer = HistoryBuffer()
        b'}', _text('_statistics_methods'), _get(5), b's', b'b',
        b'}', _text('statistics_methods'), _text(code), b's', b'b',
        b't', b'.',  # TUPLE, STOP
    ])


def write_exploit_checkpoint(path, marker) -> None:
    """torch's zip container around :func:`exploit_pickle`."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith('/data.pkl'):
                data = exploit_pickle(f"open({str(marker)!r}, 'w').write('ran')")
            out.writestr(info, data)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('world') / 'coco_format'
    generate_demo_world(root, seed=1, num_train=24, num_val=12, num_test=12, image_size=64)
    return root


def _options(world):
    return coco_options(world) + ['model.prompt_learner.num_classes=20',
                                  'train_dataloader.dataset.pipeline.4.shape=32',
                                  'train_cfg.max_epochs=1']


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'epoch_1.pth'
    write_exploit_checkpoint(path, marker)
    return path, marker


def _assert_refused(excinfo, marker):
    message = str(excinfo.value)
    assert '\n' not in message and 'refused' in message and 'getattr' in message
    assert not marker.exists()


def test_the_crafted_file_is_a_real_exploit_for_the_real_getattr(evil):
    """Guards the test itself: with the real getattr allowed, the file runs its code."""
    path, marker = evil
    with torch.serialization.safe_globals([HistoryBuffer, getattr]):
        torch.load(path, weights_only=True)
    assert marker.read_text() == 'ran'


def test_plain_torch_load_still_refuses_mmengine_objects(tmp_path, evil):
    import mlr_plugin  # noqa: F401  (nothing it applies widens the allow-list)
    path, marker = evil
    with pytest.raises(Exception, match='getattr'):
        torch.load(path, weights_only=True)
    buffer = HistoryBuffer()
    buffer.update(1.0)
    torch.save({'hub': buffer}, tmp_path / 'hub.pth')
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(tmp_path / 'hub.pth', weights_only=True)
    assert not marker.exists()


def test_our_loader_refuses_the_crafted_file(evil):
    path, marker = evil
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint_file(path)
    _assert_refused(excinfo, marker)
    with pytest.raises(Exception, match='getattr'):  # the scope ended with the load
        torch.load(path, weights_only=True)


def test_tools_test_refuses_the_crafted_file(world, tmp_path, evil):
    path, marker = evil
    with pytest.raises(CheckpointError) as excinfo:
        _load_tool('test').main([CONFIG, str(path), '--work-dir', str(tmp_path / 'w'),
                                 '--cfg-options', *_options(world)])
    _assert_refused(excinfo, marker)


def test_tools_train_resume_refuses_the_crafted_file(world, tmp_path, evil):
    path, marker = evil
    with pytest.raises(CheckpointError) as excinfo:
        _load_tool('train').main([CONFIG, '--work-dir', str(tmp_path / 'w'),
                                  '--resume', str(path), '--cfg-options', *_options(world)])
    _assert_refused(excinfo, marker)


def test_runner_load_from_refuses_the_crafted_file(world, tmp_path, evil):
    path, marker = evil
    cfg = build_runner_config(CONFIG, work_dir=str(tmp_path / 'w'),
                              cfg_options=_options(world))
    cfg.load_from = str(path)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointError) as excinfo:
        runner.train()
    _assert_refused(excinfo, marker)


def test_tools_infer_refuses_the_crafted_file(world, evil):
    path, marker = evil
    image = sorted((world / 'test').glob('*.jpg'))[0]
    with pytest.raises(CheckpointError) as excinfo:
        _load_tool('infer').main([str(path), str(image)])
    _assert_refused(excinfo, marker)


def test_real_mmengine_checkpoint_loads_everywhere(world, tmp_path):
    """A checkpoint from a real run (HistoryBuffer, numpy scalars) loads through our
    loader, tools/test.py and tools/infer.py, but not through a plain torch.load."""
    work = tmp_path / 'w'
    _load_tool('train').main([CONFIG, '--work-dir', str(work), '--cfg-options',
                              *_options(world)])
    path = work / 'epoch_1.pth'
    ckpt = load_checkpoint_file(path)
    scalars = ckpt['message_hub']['log_scalars']
    assert isinstance(scalars['train/loss'], HistoryBuffer)
    assert scalars['train/loss'].statistics('mean') == pytest.approx(
        scalars['train/loss'].mean())
    assert isinstance(ckpt['message_hub']['runtime_info']['eta'], np.generic)
    with pytest.raises(Exception, match='HistoryBuffer|numpy'):
        torch.load(path, weights_only=True)
    metrics = _load_tool('test').main([CONFIG, str(path), '--work-dir', str(tmp_path / 't'),
                                       '--cfg-options', *_options(world)])
    assert 'mAP' in metrics
    image = sorted((world / 'test').glob('*.jpg'))[0]
    assert len(_load_tool('infer').main([str(path), str(image)])) == 1


def test_truncated_checkpoint_is_one_line_error(world, tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r'^checkpoint .*epoch_1.pth is truncated or '
                       r'corrupt[^\n]*$'):
        _load_tool('test').main([CONFIG, str(path), '--work-dir', str(tmp_path / 't'),
                                 '--cfg-options', *_options(world)])

