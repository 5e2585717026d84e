"""The tools fail fast and in one line on a mistyped config, a missing file or a bad
option value, before torch is imported (issue 16, item 7); pytest shows no warnings of
the stack's known harmless imports (item 8)."""
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent

# Each case runs the tool's main through run_cli in one fresh interpreter; the script
# reports each exit message and whether torch / mmengine got imported meanwhile.
_SCRIPT = textwrap.dedent('''
    import json, runpy, sys
    cases = json.loads(sys.argv[1])
    results = []
    for tool, argv in cases:
        module = runpy.run_path(f'tools/{tool}.py')
        try:
            module['cli'].run_cli(module['main'], argv)
            results.append(None)
        except SystemExit as exit:
            results.append(exit.code)
    heavy = [name for name in ('torch', 'mmengine', 'mmpretrain') if name in sys.modules]
    print(json.dumps(dict(results=results, heavy=heavy)))
''')


def _run_cases(cases):
    proc = subprocess.run([sys.executable, '-c', _SCRIPT, json.dumps(cases)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bad_paths_and_options_fail_in_one_line_before_torch_is_imported(tmp_path):
    image = tmp_path / 'a.jpg'
    image.write_bytes(b'not really a jpeg, never read')
    config = 'configs/demo/dualcoop_p10.py'
    cases = [
        ('train', ['configs/demo/dualcoop_p1O.py']),
        ('train', ['dualcoop_pp_p1.py']),
        ('train', [config, '--resume', str(tmp_path / 'gone.pth')]),
        ('train', [config, '--cfg-options', 'no_equals_sign']),
        ('test', [config, str(tmp_path / 'missing.pth')]),
        ('test', [config, str(image), '--out', str(tmp_path / 'scores.txt')]),
        ('infer', ['configs/demo/zeroshot_handcraftd.py', str(image)]),
        ('infer', [str(tmp_path / 'missing.pth'), str(image)]),
        ('infer', ['configs/demo/zeroshot_handcrafted.py', str(tmp_path / 'b.jpg')]),
    ]
    report = _run_cases(cases)
    assert report['heavy'] == []  # every error came before torch / mmengine imports
    messages = report['results']
    expected = [
        'config file not found: configs/demo/dualcoop_p1O.py (did you mean '
        'configs/demo/dualcoop_p10.py',
        'did you mean configs/demo/dualcoop_pp_p10.py',
        f'checkpoint to resume from (--resume) not found: {tmp_path / "gone.pth"}',
        "--cfg-options entry 'no_equals_sign' is not KEY=VALUE",
        f'checkpoint not found: {tmp_path / "missing.pth"}',
        '--out must end with .json or .pkl',
        'did you mean configs/demo/zeroshot_handcrafted.py',
        f'checkpoint not found: {tmp_path / "missing.pth"}',
        f'image not found: {tmp_path / "b.jpg"}',
    ]
    for message, part in zip(messages, expected):
        assert isinstance(message, str) and message.startswith('error: '), message
        assert '\n' not in message and part in message, (message, part)


def test_one_line_on_stderr_exit_1_and_traceback_only_with_debug():
    command = [sys.executable, 'tools/train.py', 'configs/demo/dualcoop_p1O.py']
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 1 and proc.stdout == ''
    assert proc.stderr.strip().count('\n') == 0 and 'did you mean' in proc.stderr
    assert elapsed < 2.5, elapsed  # about 0.05 s; the imports alone take about 3 s
    debug = subprocess.run(command + ['--debug'], cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert debug.returncode == 1 and 'Traceback' in debug.stderr
    assert 'FileNotFoundError: config file not found' in debug.stderr


@pytest.mark.parametrize('option', [['--topk', '0'], ['--threshold', '1.5']])
def test_option_values_are_checked_by_the_parser(option, tmp_path, capsys):
    import runpy
    tool = runpy.run_path(str(REPO / 'tools' / 'infer.py'))
    with pytest.raises(SystemExit) as exit:
        tool['parse_args'](['configs/demo/zeroshot_handcrafted.py', 'x.jpg', *option])
    assert exit.value.code == 2
    assert f'argument {option[0]}' in capsys.readouterr().err


def test_missing_demo_data_root_says_how_to_generate_it(tmp_path):
    import runpy
    train = runpy.run_path(str(REPO / 'tools' / 'train.py'))
    root = tmp_path / 'data' / 'demo_world'
    with pytest.raises(FileNotFoundError) as error:
        train['main']([str(REPO / 'configs/demo/dualcoop_p10.py'), '--work-dir',
                       str(tmp_path / 'work'), '--cfg-options',
                       f'train_dataloader.dataset.data_root={root}',
                       f'val_dataloader.dataset.data_root={root}'])
    assert str(error.value) == (
        f'train_dataloader.dataset.data_root: data folder {root} does not exist; generate '
        f'it with: python -m mlr_plugin.datasets.demo_world --out {root}')
    assert not (tmp_path / 'work').exists()  # failed before the Runner made anything


def test_pytest_config_silences_the_known_import_warnings(tmp_path):
    """pytest re-enables warnings per test; pytest.ini filters mmcv-lite's missing-op
    warning and pycocotools' numpy-2 copy warning (both harmless here)."""
    (tmp_path / 'test_warns.py').write_text(textwrap.dedent('''
        import numpy as np

        def test_imports_that_warn():
            import mmcv.cnn.bricks.transformer  # noqa: F401  (mmcv-lite: no ops)
            from pycocotools import mask
            rle = mask.encode(np.asfortranarray(np.ones((4, 4), np.uint8)))
            assert mask.decode(rle).sum() == 16
    '''))
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           '-c', str(REPO / 'pytest.ini'), '--rootdir', str(tmp_path),
                           str(tmp_path / 'test_warns.py')],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert '1 passed' in proc.stdout
    assert 'warning' not in proc.stdout.lower(), proc.stdout[-2000:]
