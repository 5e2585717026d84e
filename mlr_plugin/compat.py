"""Shims for known breakages between the pinned OpenMMLab stack and torch/Python.

Each shim is applied once, on ``import mlr_plugin``, and is narrow on purpose:

1. torch >= 2.6 loads checkpoints with ``weights_only=True``; mmengine 0.10.7 pickles a
   ``HistoryBuffer`` and numpy objects into them, so resume / test / load_from fail.
   We allow exactly those globals instead of turning ``weights_only`` off.
2. mmengine's ``_is_builtin_module`` misclassifies the standard library inside a venv
   (and frozen modules on Python >= 3.11), so ``import os`` in a pure-Python config
   fails. We also accept every name in ``sys.stdlib_module_names``. Once such an import
   loads, mmengine keeps the module object in the config (``import os`` is not recorded
   as an imported name), which breaks the config dump every Runner writes: we record it.
3. mmcv-lite (no compiled ops) makes mmpretrain warn on import about an op nothing here
   uses: that one warning is silenced.
"""
import ast
import sys
import warnings

_APPLIED = False


def _checkpoint_safe_globals():
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    dtype_classes = [
        getattr(np.dtypes, name) for name in dir(np.dtypes)
        if name.endswith('DType') and isinstance(getattr(np.dtypes, name), type)
    ]
    return [HistoryBuffer, multiarray._reconstruct, multiarray.scalar,
            np.ndarray, np.dtype, getattr, *dtype_classes]


def allow_mmengine_checkpoints():
    """Let ``torch.load(weights_only=True)`` read mmengine's checkpoints."""
    import torch
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(_checkpoint_safe_globals())


def allow_stdlib_imports_in_configs():
    """Accept standard-library imports (``import os``) in pure-Python configs."""
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils

    original = config_utils._is_builtin_module
    if getattr(original, '_mlr_patched', False):
        return

    def _is_builtin_module(module_name: str) -> bool:
        if not module_name.startswith('.') and \
                module_name.split('.')[0] in sys.stdlib_module_names:
            return True
        return original(module_name)

    _is_builtin_module._mlr_patched = True
    config_utils._is_builtin_module = _is_builtin_module
    # config.py imported the function by name, so patch its reference too.
    config_module._is_builtin_module = _is_builtin_module

    gather = config_utils._gather_abs_import_lazyobj

    def _gather_abs_import_lazyobj(tree, filename=None):
        # ``import os`` stays a real import: remember its name so the dump drops it.
        stdlib_names = {
            alias.asname or alias.name.split('.')[0]
            for node in tree.body if isinstance(node, ast.Import)
            for alias in node.names if _is_builtin_module(alias.name)
        }
        tree, abs_imported = gather(tree, filename=filename)
        return tree, abs_imported | stdlib_names

    config_utils._gather_abs_import_lazyobj = _gather_abs_import_lazyobj
    config_module._gather_abs_import_lazyobj = _gather_abs_import_lazyobj


def silence_mmcv_lite_ops_warning():
    """mmcv-lite has no compiled ops; mmpretrain's import warns about one we never use."""
    warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')


def apply():
    global _APPLIED
    if _APPLIED:
        return
    silence_mmcv_lite_ops_warning()
    allow_mmengine_checkpoints()
    allow_stdlib_imports_in_configs()
    _APPLIED = True
