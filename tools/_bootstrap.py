"""What every tool runs first: the repository on ``sys.path`` and the command-line
helpers of ``mlr_plugin/engine/cli.py``, loaded from their file (standard library only)
so that options and paths are checked before torch and mmpretrain are imported.
Importing them as ``mlr_plugin.engine.cli`` would import the whole package first."""
import importlib.util
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def load_cli():
    if '_mlr_plugin_cli' not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            '_mlr_plugin_cli', osp.join(REPO, 'mlr_plugin', 'engine', 'cli.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules['_mlr_plugin_cli']


cli = load_cli()
