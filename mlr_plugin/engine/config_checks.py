"""Catch misspelt top-level config keys: ``modle=`` or ``trian_cfg=`` would otherwise
train silently with the defaults (mmengine ignores keys it does not read)."""
import difflib
from typing import Iterable, Optional

# Top-level keys read by mmengine's Runner / FlexibleRunner (``from_cfg`` and the
# ``self.cfg.get`` calls), by mmpretrain's tools, and by mlr_plugin's launch code.
KNOWN_TOP_LEVEL_KEYS = frozenset({
    # mmengine Runner.from_cfg
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader',
    'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper',
    'param_scheduler', 'val_evaluator', 'test_evaluator', 'default_hooks',
    'custom_hooks', 'data_preprocessor', 'load_from', 'resume', 'launcher', 'env_cfg',
    'log_processor', 'log_level', 'visualizer', 'default_scope', 'randomness',
    'experiment_name',
    # read later by the Runner / FlexibleRunner / Config
    'model_wrapper_cfg', 'sync_bn', 'find_unused_parameters', 'activation_checkpointing',
    'efficient_conv_bn_eval', 'compile', 'strategy', 'runner_type', 'custom_imports',
    # mmpretrain configs and tools
    # (not tta_model / tta_pipeline: unused here, and too close to users' train_pipeline)
    'vis_backends', 'dist_params',
})

# difflib ratio above which an unknown key is taken for a misspelling ...
SIMILARITY_CUTOFF = 0.8
# ... when it is also about as long as the known key: typos swap, drop or add a letter
# or two, while users' own names (``train_loader`` next to ``train_dataloader``) differ
# by whole words.
MAX_LENGTH_DIFFERENCE = 2


def likely_typo_of(key: str, known: Iterable[str] = KNOWN_TOP_LEVEL_KEYS) -> Optional[str]:
    """The known key ``key`` is probably a misspelling of, or None."""
    if key in known or key.startswith('_'):
        return None
    candidates = [k for k in known if abs(len(k) - len(key)) <= MAX_LENGTH_DIFFERENCE]
    matches = difflib.get_close_matches(key, candidates, n=1, cutoff=SIMILARITY_CUTOFF)
    return matches[0] if matches else None


def check_top_level_keys(cfg, source: str = 'config') -> None:
    """Raise a one-line ``ValueError`` for a top-level key that looks like
    a misspelt known key; keys far from every known key (users' own variables such as
    ``image_size``, ``data_root``, ``train_pipeline``) are allowed.

    Args:
        cfg: a :class:`mmengine.config.Config`, a dict, or an iterable of key names.
        source (str): where the keys come from, for the message (a file, --cfg-options).
    """
    for key in (cfg.keys() if hasattr(cfg, 'keys') else cfg):
        match = likely_typo_of(str(key))
        if match is not None:
            raise ValueError(f'{source}: unknown top-level key {key!r}, did you mean '
                             f'{match!r}? (prefix your own variables with "_" to keep '
                             f'a similar name)')
