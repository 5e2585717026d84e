"""A training run SIGKILLed at any moment of a checkpoint save leaves a work dir that
``tools/train.py --resume`` continues from, to the same final weights as a run that was
never interrupted (AtomicCheckpointHook, find_resume_checkpoint)."""
import os
import re
import signal
import sys
import time
import traceback

import pytest
import torch
from test_tools import REPO, _load_tool, coco_options

from mlr_plugin.compat import CheckpointError, load_checkpoint_file
from mlr_plugin.datasets.demo_world import generate_demo_world
from mlr_plugin.engine import checkpointing
from mlr_plugin.engine.checkpointing import find_resume_checkpoint
from mlr_plugin.fileio import atomic_open

CONFIG = str(REPO / 'configs/dualcoop_pp/coco_p30.py')
MAX_EPOCHS = 4
CHUNK = 48 * 1024  # a checkpoint here is 0.2-0.4 MB: 4-8 writes per file
TEXT_CHUNK = 8  # last_checkpoint: 3-5 writes
# The child is killed at the k-th chunk write of its own run; each kill is followed by
# a --resume run that is killed in turn, until one run reaches the end.
KILL_AT = [1, 9, 3, 14, 6, 21, 11, 4, 17, 8, 25, 13]


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('world') / 'coco_format'
    generate_demo_world(root, seed=1, num_train=24, num_val=12, num_test=12, image_size=64)
    return root


def _argv(world, work, resume):
    opts = coco_options(world) + ['model.prompt_learner.num_classes=20',
                                  'train_dataloader.dataset.pipeline.4.shape=32',
                                  f'train_cfg.max_epochs={MAX_EPOCHS}',
                                  'train_cfg.val_interval=1',
                                  'default_hooks.logger.interval=50']
    return [CONFIG, '--work-dir', str(work), *(['--resume'] if resume else []),
            '--cfg-options', *opts]


def _child(argv, events_fd, log_path):
    """Runs in the forked child: train with every checkpoint write slowed down into
    chunks, each announced on ``events_fd`` before it is written."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)

    def announce(name, index, total):
        os.write(events_fd, f'{os.path.basename(name)} {index + 1}/{total}\n'.encode())

    def write_in_chunks(f, data, chunk, name):
        total = max(1, -(-len(data) // chunk))
        for index in range(total):
            announce(name, index, total)
            f.write(data[index * chunk:(index + 1) * chunk])
            f.flush()
            time.sleep(0.003)

    def slow_write_bytes(f, data):
        # atomic_open's temporary file is '.<name>.<random>.tmp'
        target = os.readlink(f'/proc/self/fd/{f.fileno()}')
        write_in_chunks(f, data, CHUNK, os.path.basename(target)[1:].rsplit('.', 2)[0])

    def slow_write_text(text, path):
        with atomic_open(path) as f:
            write_in_chunks(f, text, TEXT_CHUNK, path)

    checkpointing._write_bytes = slow_write_bytes
    checkpointing.write_text_atomic = slow_write_text
    # no reseeding here: the configs' EpochSeededSampler makes the augmentation of a
    # resumed epoch equal to an uninterrupted one's
    code = 0
    try:
        _load_tool('train').main(argv)
        os.write(events_fd, b'DONE\n')
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(argv, log_path, kill_at=None):
    """Train in a forked process; SIGKILL it when it announces its ``kill_at``-th chunk
    write. Returns (the announced writes, 'killed' | 'done')."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child never returns)
        os.close(read_fd)
        _child(argv, write_fd, log_path)
    os.close(write_fd)
    events, outcome = [], None
    with os.fdopen(read_fd) as stream:
        for line in stream:
            events.append(line.strip())
            if line.strip() == 'DONE':
                outcome = 'done'
            elif kill_at is not None and len(events) == kill_at:
                os.kill(pid, signal.SIGKILL)
                outcome = 'killed'
                break
    _, status = os.waitpid(pid, 0)
    if outcome is None:
        raise AssertionError(f'training failed (status {status}); see {log_path}:\n'
                             + open(log_path).read()[-3000:])
    return events, outcome


def _state_dict(path):
    return load_checkpoint_file(path)['state_dict']


def _check_work_dir(work, best_seen):
    """What must hold after any kill: every visible checkpoint loads, last_checkpoint
    (when there is one) names a loadable file, and a best checkpoint survives."""
    visible = sorted(p for p in work.glob('*.pth'))
    for path in visible:
        load_checkpoint_file(path)  # raises on a truncated file
    resume_from, note = find_resume_checkpoint(str(work))
    if (work / 'last_checkpoint').exists():
        assert note == '' and resume_from is not None, note
    if best_seen:
        assert any(p.name.startswith('best_') for p in visible)
    return resume_from


def test_sigkill_during_saves_then_resume_matches_uninterrupted_run(world, tmp_path):
    reference = tmp_path / 'reference'
    events, outcome = _run(_argv(world, reference, resume=False), str(tmp_path / 'ref.log'))
    assert outcome == 'done' and (reference / f'epoch_{MAX_EPOCHS}.pth').is_file()

    work = tmp_path / 'killed'
    kills, best_seen, resume = [], False, False
    for kill_at in KILL_AT:
        events, outcome = _run(_argv(world, work, resume), str(tmp_path / 'run.log'), kill_at)
        if outcome == 'done':
            break
        kills.append(events[-1])
        resume_from = _check_work_dir(work, best_seen)
        if resume_from is None:  # killed before the first checkpoint was complete
            assert not list(work.glob('*.pth'))
        best_seen = best_seen or any(work.glob('best_*.pth'))
        resume = True
    else:
        events, outcome = _run(_argv(world, work, resume=True), str(tmp_path / 'run.log'))
    assert outcome == 'done'
    assert len(kills) >= 10, kills
    # kills landed in epoch, best and last_checkpoint writes, first to last chunk
    kinds = {re.sub(r'_\d+', '_N', k.split()[0]) for k in kills}
    assert {'epoch_N.pth', 'best_mAP_epoch_N.pth', 'last_checkpoint'} <= kinds, kills
    assert not [p for p in work.iterdir() if p.name.endswith('.tmp')]

    final, expected = (_state_dict(d / f'epoch_{MAX_EPOCHS}.pth') for d in (work, reference))
    assert final.keys() == expected.keys()
    for key in expected:
        assert torch.equal(final[key], expected[key]), key  # bit for bit
    print(f'{len(kills)} kills, at: {kills}')


def test_resume_falls_back_to_newest_loadable_checkpoint(tmp_path):
    def save(name, epoch):
        torch.save({'meta': {'epoch': epoch}, 'state_dict': {}}, tmp_path / name)

    assert find_resume_checkpoint(str(tmp_path / 'missing'))[0] is None
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path is None and 'nothing to resume' in note and '\n' not in note

    save('epoch_1.pth', 1)
    save('epoch_10.pth', 10)
    (tmp_path / 'epoch_12.pth').write_bytes(b'PK\x03\x04 truncated')
    (tmp_path / 'last_checkpoint').write_text('')
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'epoch_10.pth')  # 10 > 1 numerically, 12 is corrupt
    assert 'last_checkpoint is empty' in note and 'resuming from' in note

    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_99.pth'))
    assert 'does not exist' in find_resume_checkpoint(str(tmp_path))[1]
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_12.pth'))
    assert 'truncated or corrupt' in find_resume_checkpoint(str(tmp_path))[1]
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == (str(tmp_path / 'epoch_1.pth'), '')


def test_train_resume_logs_the_fallback_and_test_refuses_truncated_file(world, tmp_path):
    """The work dir the old CheckpointHook left after a kill: empty last_checkpoint and a
    truncated newest checkpoint."""
    train = _load_tool('train')
    work = tmp_path / 'work'
    argv = _argv(world, work, resume=False)
    argv[argv.index(f'train_cfg.max_epochs={MAX_EPOCHS}')] = 'train_cfg.max_epochs=1'
    train.main(argv)
    good = (work / 'epoch_1.pth').read_bytes()
    (work / 'epoch_2.pth').write_bytes(good[:len(good) // 2])
    (work / 'last_checkpoint').write_text('')
    with pytest.raises(CheckpointError, match=r'epoch_2.pth is truncated or corrupt'):
        load_checkpoint_file(work / 'epoch_2.pth')

    resumed_argv = _argv(world, work, resume=True)
    resumed_argv[resumed_argv.index(f'train_cfg.max_epochs={MAX_EPOCHS}')] = \
        'train_cfg.max_epochs=2'
    runner = train.main(resumed_argv)
    assert runner.epoch == 2
    logs = '\n'.join(p.read_text() for p in work.glob('*/*.log'))
    assert 'last_checkpoint is empty: resuming from' in logs
    assert load_checkpoint_file(work / 'epoch_2.pth')['meta']['epoch'] == 2


def test_resume_after_a_kill_during_the_final_validation_validates(world, tmp_path,
                                                                  monkeypatch):
    """epoch_2.pth is written before the final validation; a run killed during that
    validation, resumed, has nothing left to train: it must validate, and print only the
    metrics of that validation (not epoch 1's, restored with the message hub)."""
    from mmengine.runner.loops import ValLoop
    train = _load_tool('train')
    work = tmp_path / 'work'
    argv = _argv(world, work, resume=False)
    argv[argv.index(f'train_cfg.max_epochs={MAX_EPOCHS}')] = 'train_cfg.max_epochs=2'
    validations = []
    real_run = ValLoop.run

    def killed_at_epoch_2(loop):
        if loop.runner.epoch == 2:
            raise KeyboardInterrupt('killed during the final validation')
        validations.append(loop.runner.epoch)
        return real_run(loop)

    monkeypatch.setattr(ValLoop, 'run', killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.main(argv)
    assert validations == [1]
    stale = load_checkpoint_file(work / 'epoch_2.pth')['message_hub']['log_scalars']
    assert 'val/mAP' in stale  # epoch 1's validation travels with the checkpoint

    def counted(loop):
        validations.append(loop.runner.epoch)
        return real_run(loop)

    monkeypatch.setattr(ValLoop, 'run', counted)
    runner = train.main(argv[:3] + ['--resume'] + argv[3:])
    assert validations == [1, 2]  # the resumed process validated the final weights
    final = next(h for h in runner._hooks if type(h).__name__ == 'FinalValidation')
    expected = f"final validation: mAP {final.metrics['mAP']:.2f}"
    logs = '\n'.join(p.read_text() for p in work.glob('*/*.log'))
    assert logs.count('final validation:') == 1 and expected in logs


def test_no_second_validation_when_the_last_epoch_was_validated(world, tmp_path,
                                                                monkeypatch):
    from mmengine.runner.loops import ValLoop
    validations = []
    real_run = ValLoop.run

    def counted(loop):
        validations.append(loop.runner.epoch)
        return real_run(loop)

    monkeypatch.setattr(ValLoop, 'run', counted)
    argv = _argv(world, tmp_path / 'work', resume=False)
    argv[argv.index(f'train_cfg.max_epochs={MAX_EPOCHS}')] = 'train_cfg.max_epochs=1'
    _load_tool('train').main(argv)
    assert validations == [1]
