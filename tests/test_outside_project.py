"""A user's config in another folder inherits ours by package path and runs under
mmengine's own Runner, in a process that never imports mlr_plugin itself (issue 16).

The package is installed the way a regular install does it: the wheel `pip wheel` builds
from this checkout, unpacked into a folder that comes first on the path (with its
dist-info, which mmengine reads to find where the package lives)."""
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _install_wheel(tmp_path):
    # Build from a clean copy: an in-tree build/ left by an earlier build would be reused.
    source = tmp_path / 'source'
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        '.git', 'build', 'dist', '*.egg-info', '__pycache__', '.venv', 'venv', 'data',
        'work_dirs', '.pytest_cache'))
    wheels = tmp_path / 'wheels'
    out = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
         '--no-index', '-w', str(wheels), str(source)],
        capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = wheels.glob('mlr_plugin-*.whl')
    site = tmp_path / 'site'
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    return site, names


def test_wheel_ships_the_configs_as_mlr_plugin_configs(tmp_path):
    site, names = _install_wheel(tmp_path)
    shipped = {n[len('mlr_plugin/configs/'):] for n in names
               if n.startswith('mlr_plugin/configs/')}
    ours = {p.relative_to(REPO / 'configs').as_posix()
            for p in (REPO / 'configs').rglob('*') if p.is_file()
            and p.suffix in ('.py', '.md', '.yml') and '__pycache__' not in p.parts}
    assert ours and ours <= shipped, sorted(ours - shipped)

    user = tmp_path / 'user_project'
    user.mkdir()
    (user / 'my_dualcoop.py').write_text(textwrap.dedent("""
        from mmengine.config import read_base

        with read_base():
            from mlr_plugin.configs.demo.dualcoop_p10 import *  # noqa: F401,F403

        model.backbone.update(model_name='mlr-tiny-rn', pretrained=None, image_size=64)
    """))
    script = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmengine.runner import Runner

        cfg = Config.fromfile('my_dualcoop.py')
        cfg.work_dir = {str(tmp_path / 'work')!r}
        assert 'mlr_plugin' not in sys.modules, 'Config.fromfile imported the plugin'
        model = Runner.from_cfg(cfg).model
        import mlr_plugin
        print('RESULT', type(model).__name__, model.backbone.image_size,
              model.prompt_learner.num_classes, mlr_plugin.__file__)
    """)
    env = dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1',
               PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, '-c', script], cwd=user, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = [ln for ln in out.stdout.splitlines() if ln.startswith('RESULT')]
    assert result, out.stdout[-2000:]
    _, name, size, num_classes, module_file = result[-1].split()
    assert (name, size, num_classes) == ('CLIPPromptClassifier', '64', '20')
    assert Path(module_file).is_relative_to(site), module_file
