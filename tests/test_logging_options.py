"""Logging options: TensorBoard next to the local JSON logs with one switch
(``--cfg-options visualizer.tensorboard=True``), and the demo world's progress line."""
import importlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

from mlr_plugin.datasets.demo_world import GenerationProgress, generate_demo_world

REPO = Path(__file__).parent.parent
CONFIG = str(REPO / 'configs/demo/dualcoop_p10.py')


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tensorboard_missing_reason():
    try:
        for module in ('torch.utils.tensorboard',
                       'tensorboard.backend.event_processing.event_accumulator'):
            importlib.import_module(module)
    except ImportError as error:
        return f'tensorboard is not installed ({error}); pip install -e ".[tests]"'
    return None


@pytest.fixture(scope='module')
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp('tb_world') / 'world'
    return generate_demo_world(root, seed=2, num_train=8, num_val=2, num_test=2)


def _two_iterations(world, work, *extra):
    """dualcoop_p10 for 2 iterations (8 images, batch 4), logging every iteration."""
    options = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.dataset.data_root={world}', f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False', f'{loader}.batch_size=4']
    return _load_tool('train').main([
        CONFIG, '--work-dir', str(work), '--no-validate', '--cfg-options', *options,
        'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1', *extra])


def test_tensorboard_option_writes_events_next_to_the_json_log(tiny_world, tmp_path):
    reason = _tensorboard_missing_reason()
    if reason:
        print(f'SKIPPED: {reason}')
        pytest.skip(reason)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runner = _two_iterations(tiny_world, tmp_path / 'work', 'visualizer.tensorboard=True')
    assert runner.iter == 2
    vis_data = Path(runner.log_dir) / 'vis_data'
    events = sorted(vis_data.glob('events.out.tfevents.*'))
    assert len(events) == 1, sorted(p.name for p in vis_data.iterdir())
    # the local JSON log is still written, and TensorBoard holds the same losses
    records = [json.loads(line) for line in (vis_data / 'scalars.json').read_text()
               .splitlines()]
    json_loss = {r['step']: r['loss'] for r in records if 'loss' in r}
    assert sorted(json_loss) == [1, 2]
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tb_loss = {e.step: e.value for e in accumulator.Scalars('loss')}
    assert sorted(tb_loss) == [1, 2]
    for step in (1, 2):
        assert tb_loss[step] == pytest.approx(json_loss[step], rel=1e-5)


def test_default_run_writes_no_tensorboard_events(tiny_world, tmp_path):
    runner = _two_iterations(tiny_world, tmp_path / 'work')
    vis_data = Path(runner.log_dir) / 'vis_data'
    assert (vis_data / 'scalars.json').is_file()
    assert not list(vis_data.glob('events.out.tfevents.*'))


def test_two_runs_in_one_process_and_one_second_keep_their_own_logs(tiny_world, tmp_path,
                                                                    monkeypatch):
    """mmengine names a run's logger, message hub and visualizer after its start second;
    two in-process runs in the same second (the test suite, make_table) used to share
    them, so the second run's scalars.json landed in the first run's folder."""
    import time as real_time
    import types

    import mmengine.runner.runner as runner_module
    start = real_time.time()
    frozen = types.SimpleNamespace(time=lambda: start, strftime=real_time.strftime,
                                   localtime=real_time.localtime)
    monkeypatch.setattr(runner_module, 'time', frozen)  # both runs start in one second
    first = _two_iterations(tiny_world, tmp_path / 'first')
    second = _two_iterations(tiny_world, tmp_path / 'second')
    assert first.timestamp == second.timestamp
    assert first.experiment_name != second.experiment_name
    for runner, work in ((first, 'first'), (second, 'second')):
        vis_data = Path(runner.log_dir) / 'vis_data'
        assert Path(runner.log_dir).parent == tmp_path / work
        steps = [json.loads(line)['step'] for line in
                 (vis_data / 'scalars.json').read_text().splitlines()]
        assert steps == [1, 2]  # its own two iterations, nothing from the other run


def test_tensorboard_option_without_tensorboard_is_a_one_line_error(tiny_world, tmp_path,
                                                                     monkeypatch):
    # as if neither writer were installed: importing a None entry raises ImportError
    monkeypatch.setitem(sys.modules, 'tensorboardX', None)
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)
    with pytest.raises(ImportError) as error:
        _two_iterations(tiny_world, tmp_path / 'work', 'visualizer.tensorboard=True')
    message = str(error.value)
    assert 'pip install tensorboard' in message and '\n' not in message


def test_tensorboard_option_must_be_a_bool():
    from mlr_plugin.engine.visualizer import MLRVisualizer
    with pytest.raises(ValueError, match="visualizer.tensorboard must be True or False, "
                                         "got 'yes'"):
        MLRVisualizer(name='tb_bool_check', tensorboard='yes')


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_generation_progress_prints_rate_and_eta_every_few_seconds():
    clock, stream = _Clock(), io.StringIO()
    progress = GenerationProgress(total=80, every=3.0, stream=stream, clock=clock)
    for _ in range(23):  # one image every 0.125 s (exact in binary): 2.875 s, no line yet
        clock.now += 0.125
        progress.step()
    assert stream.getvalue() == ''
    clock.now += 0.125  # 24 images in 3 s: 8 img/s, 56 left -> 7 s
    progress.step()
    assert stream.getvalue() == 'demo world: 24/80 images, 8 img/s, ETA 7 s\n'
    for _ in range(56):
        clock.now += 0.125
        progress.step()
    lines = stream.getvalue().splitlines()
    assert lines[1:] == ['demo world: 48/80 images, 8 img/s, ETA 4 s',
                         'demo world: 72/80 images, 8 img/s, ETA 1 s',
                         'demo world: 80/80 images, 8 img/s, ETA 0 s']  # the end always


def test_generation_prints_progress_only_when_asked(tmp_path, capsys):
    generate_demo_world(tmp_path / 'quiet', seed=0, num_train=3, num_val=1, num_test=1,
                        image_size=32)
    assert capsys.readouterr().err == ''
    generate_demo_world(tmp_path / 'loud', seed=0, num_train=3, num_val=1, num_test=1,
                        image_size=32, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err and err[-1].startswith('demo world: 5/5 images, ')
