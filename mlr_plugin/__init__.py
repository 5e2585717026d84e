"""mlr_plugin: multi-label recognition with limited labels on CLIP (mmpretrain plugin).

Importing this package applies the environment shims and registers every module
into mmpretrain's registries (MODELS, DATASETS, TRANSFORMS, METRICS, HOOKS).
"""
from . import compat
from .version import __version__

compat.apply()

from . import datasets, engine, evaluation, models, visualization  # noqa: E402,F401

__all__ = ['__version__']
