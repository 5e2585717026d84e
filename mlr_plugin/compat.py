"""Shims for known breakages between the pinned OpenMMLab stack and torch/Python.

Each shim is applied once, on ``import mlr_plugin``, and is narrow on purpose:

1. torch >= 2.6 loads checkpoints with ``weights_only=True``; mmengine 0.10.7 pickles a
   ``HistoryBuffer`` and numpy objects into them, so resume / test / load_from fail.
   We allow exactly those globals, with ``builtins.getattr`` mapped to a function that
   reads only HistoryBuffer's statistics methods, and only inside our loads
   (:func:`load_checkpoint_file`, which mmengine's local loader is routed to): a plain
   ``torch.load`` elsewhere in the process is as strict as torch makes it.
2. mmengine's ``_is_builtin_module`` misclassifies the standard library inside a venv
   (and frozen modules on Python >= 3.11), so ``import os`` in a pure-Python config
   fails. We also accept every name in ``sys.stdlib_module_names``. Once such an import
   loads, mmengine keeps the module object in the config (``import os`` is not recorded
   as an imported name), which breaks the config dump and the deep copy every Runner
   makes: we record the name and drop the module object.
3. mmcv-lite (no compiled ops) makes mmpretrain warn on import about an op nothing here
   uses: that one warning is silenced.
"""
import ast
import os
import pickle
import sys
import threading
import types
import warnings
import zipfile
from contextlib import contextmanager

_APPLIED = False


# The only attribute reads an mmengine checkpoint pickles: HistoryBuffer keeps its
# statistics methods (``HistoryBuffer.min`` ...) in its state, and protocol 2 stores a
# function defined in a class as ``getattr(HistoryBuffer, 'min')``.
_HISTORY_BUFFER_METHODS = frozenset({'min', 'max', 'current', 'mean'})


def checkpoint_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while a checkpoint is unpickled.

    The real ``getattr`` reaches any attribute (``getattr.__self__`` is the builtins
    module, hence ``exec``), so only HistoryBuffer's statistics methods are allowed."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    label = 'getattr' if obj is checkpoint_getattr else \
        getattr(obj, '__qualname__', type(obj).__name__)
    raise pickle.UnpicklingError(f'refused attribute read getattr({label}, {name!r}): only '
                                 'HistoryBuffer statistics methods are allowed')


def checkpoint_safe_globals() -> list:
    """The globals an mmengine checkpoint needs, for ``torch.serialization.safe_globals``."""
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
            np.ndarray, np.dtype, (checkpoint_getattr, 'builtins.getattr'), *dtype_classes]


_SCOPE_LOCK = threading.RLock()


@contextmanager
def checkpoint_globals_allowed():
    """Allow :func:`checkpoint_safe_globals` for the loads inside the block only; on
    exit the allow-list is exactly what it was (re-entrant, and a user's own
    ``add_safe_globals`` entries survive)."""
    import torch
    serialization = torch.serialization
    with _SCOPE_LOCK:
        before = list(serialization.get_safe_globals())
        serialization.add_safe_globals(checkpoint_safe_globals())
        try:
            yield
        finally:
            serialization.clear_safe_globals()
            serialization.add_safe_globals(before)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded; the message is one line."""


def _first_reason(message: str) -> str:
    # torch's weights-only errors are paragraphs: keep the cause, on one line.
    if 'WeightsUnpickler error:' in message:
        message = message.split('WeightsUnpickler error:', 1)[1]
        message = message.split('Check the documentation of torch.load', 1)[0]
    return ' '.join(line.strip() for line in message.splitlines() if line.strip())


def load_checkpoint_file(path, map_location='cpu'):
    """``torch.load(path, weights_only=True)`` with mmengine's globals allowed for this
    load only. Raises :class:`CheckpointError` (one line) for a refused, truncated or
    corrupt file, ``FileNotFoundError`` for a missing one."""
    import torch
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        with checkpoint_globals_allowed():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f'checkpoint {path} was refused by the weights-only loader: '
            f'{_first_reason(str(e))}') from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as e:
        reason = _first_reason(str(e)).split('. ')[0]  # torch adds paragraphs of advice
        raise CheckpointError(f'checkpoint {path} is truncated or corrupt '
                              f'({type(e).__name__}: {reason})') from None


def _load_from_local(filename, map_location):
    return load_checkpoint_file(os.path.expanduser(filename), map_location)


def route_mmengine_local_loads():
    """mmengine's local-file loader (``load_from``, resume, ``load_checkpoint``) goes
    through :func:`load_checkpoint_file`, so its allow-list is scoped to that load."""
    from mmengine.runner import checkpoint as mm_checkpoint
    mm_checkpoint.CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local,
                                                   force=True)


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

    parse_lazy = config_module.Config._parse_lazy_import

    def _parse_lazy_import(filename):
        # ``import os`` leaves the module object among the config's values; the Runner
        # deep-copies its config, and a module cannot be copied: drop it.
        cfg_dict, imported_names = parse_lazy(filename)
        for key in [k for k, v in cfg_dict.items() if isinstance(v, types.ModuleType)]:
            del cfg_dict[key]
        return cfg_dict, imported_names

    config_module.Config._parse_lazy_import = staticmethod(_parse_lazy_import)


def silence_mmcv_lite_ops_warning():
    """mmcv-lite has no compiled ops; mmpretrain's import warns about one we never use."""
    warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')


def apply():
    global _APPLIED
    if _APPLIED:
        return
    silence_mmcv_lite_ops_warning()
    route_mmengine_local_loads()
    allow_stdlib_imports_in_configs()
    _APPLIED = True
