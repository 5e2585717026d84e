"""What tools/train.py, tools/test.py and the inferencer share: loading a config the
mlr_plugin way (registries, work dir, AMP, CPU distributed runs)."""
import os
import os.path as osp
from typing import Optional, Sequence

import torch

# one implementation: the tools load cli.py before torch; the Runner helpers live there
from .cli import (add_runner_args, missing_data_root_message,  # noqa: F401
                  parse_runner_args, run_cli)


def setup_distributed(launcher: str) -> None:
    """Initialise the process group ourselves when there is no GPU.

    mmengine's ``--launcher pytorch`` calls ``torch.cuda.set_device``; on CPU machines we
    start gloo before the Runner (which then skips its own initialisation).
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher} needs GPUs; on CPU use --launcher pytorch '
                         '(torchrun)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def parse_cfg_options(options: Optional[Sequence[str]]) -> dict:
    """``['a.b=1', 'c=x']`` -> ``{'a.b': 1, 'c': 'x'}`` with mmengine's value parsing."""
    if not options:
        return {}
    from mmengine.config import DictAction
    out = {}
    for item in options:
        if '=' not in item:
            raise ValueError(f'--cfg-options entry {item!r} is not KEY=VALUE')
        key, value = item.split('=', 1)
        out[key] = DictAction._parse_iterable(value)
    return out


def load_config(config: str, cfg_options: Optional[Sequence[str]] = None):
    """Load a config file with every mlr_plugin module registered.

    Misspelt top-level keys (``modle``, ``trian_cfg``), in the file or in
    ``cfg_options``, are an error naming the likely key.
    """
    import mlr_plugin  # noqa: F401  (registers modules, applies the shims)
    from mmengine.config import Config

    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    from mmengine.registry import init_default_scope

    from .config_checks import check_top_level_keys

    cfg = Config.fromfile(config)
    check_top_level_keys(cfg, config)
    options = parse_cfg_options(cfg_options)
    if options:
        check_top_level_keys([key.split('.', 1)[0] for key in options], '--cfg-options')
        cfg.merge_from_dict(options)
    # string types resolve in mmpretrain's registries, also outside a Runner
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return cfg


def default_work_dir(config: str) -> str:
    """``work_dirs/<model name>`` when the ``metafile.yml`` next to the config lists it
    (names are unique across methods: dualcoop/coco_p30.py and dualcoop_pp/coco_p30.py
    do not share a folder), else ``work_dirs/<config file stem>`` (OpenMMLab's default)."""
    from .metafile import model_name_for_config
    name = model_name_for_config(config)
    return osp.join('work_dirs', name or osp.splitext(osp.basename(config))[0])


class FailedRunCleanup:
    """Remove what a failed run added to its *default* work dir when it wrote no
    checkpoint, so mistakes leave no empty run folders behind; a work dir the user chose,
    or one holding checkpoints, is never touched.

    Example:
        >>> cleanup = FailedRunCleanup(cfg.work_dir, enabled=args.work_dir is None)
        >>> try: ... train ...
        ... except Exception: cleanup(); raise
    """

    def __init__(self, work_dir: str, enabled: bool = True):
        self.work_dir = osp.abspath(work_dir)
        self.enabled = enabled
        # the first folder of the path that does not exist yet is ours to remove
        self.created_root = None
        path = self.work_dir
        while not osp.exists(path):
            self.created_root = path
            path = osp.dirname(path)
        self.before = set() if self.created_root else set(os.listdir(self.work_dir))

    def __call__(self) -> None:
        if not self.enabled or not osp.isdir(self.work_dir):
            return
        new = set(os.listdir(self.work_dir)) - self.before
        if any(name.endswith('.pth') or name == 'last_checkpoint' for name in new):
            return
        import shutil
        if self.created_root is not None:
            shutil.rmtree(self.created_root, ignore_errors=True)
            return
        for name in new:
            path = osp.join(self.work_dir, name)
            if osp.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


def runner_config_from_args(args, amp: str = 'off'):
    """What tools/train.py and tools/test.py do first: start the process group (CPU runs)
    and load the config with the command line's work dir, options and launcher."""
    setup_distributed(args.launcher)
    return build_runner_config(args.config, work_dir=args.work_dir,
                               cfg_options=args.cfg_options, launcher=args.launcher,
                               amp=amp)


_runs_in_this_process = 0


def distinct_experiment_name(cfg, config: str) -> str:
    """The run's name, with ``-runN`` from a process's second run on.

    mmengine names the logger, message hub and visualizer ``{name}_{start second}`` and
    reuses an instance of the same name, so two runs started in one second by one process
    (tests, tools/demo/make_table.py) would log into each other. Every rank builds the
    same number of runners, so the names still agree across ranks.
    """
    global _runs_in_this_process
    _runs_in_this_process += 1
    name = cfg.get('experiment_name') or osp.splitext(osp.basename(config))[0]
    return name if _runs_in_this_process == 1 else f'{name}-run{_runs_in_this_process}'


def build_runner_config(config: str, work_dir: Optional[str] = None,
                        cfg_options: Optional[Sequence[str]] = None,
                        launcher: str = 'none', amp: str = 'off'):
    cfg = load_config(config, cfg_options)
    cfg.launcher = launcher
    cfg.experiment_name = distinct_experiment_name(cfg, config)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config)

    if amp == 'on' and not torch.cuda.is_available():
        raise RuntimeError('--amp on needs a CUDA GPU (mmengine AmpOptimWrapper); '
                           'use --amp auto or off on CPU')
    if amp in ('on', 'auto') and torch.cuda.is_available() and 'optim_wrapper' in cfg:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'

    if launcher != 'none' and not torch.cuda.is_available():
        # CPU DDP: no device_ids (the Runner passes the local rank as a default argument;
        # an explicit None in the wrapper config wins over it).
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel',
                                     broadcast_buffers=False, device_ids=None)
        cfg.env_cfg.dist_cfg = dict(backend='gloo')
    if not torch.cuda.is_available():
        # pinned memory needs an accelerator; keep CPU runs quiet
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            loader = cfg.get(key)
            if loader is not None:
                loader['pin_memory'] = False
    return cfg


def check_data_roots(cfg, loaders: Sequence[str]) -> None:
    """A one-line FileNotFoundError when a dataloader's ``dataset.data_root`` is a local
    folder that does not exist (the demo world's says how to generate it), before the
    Runner builds anything."""
    for key in loaders:
        loader = cfg.get(key)
        dataset = loader.get('dataset') if loader else None
        root = dataset.get('data_root') if hasattr(dataset, 'get') else None
        if isinstance(root, str) and root and '://' not in root and not osp.isdir(root):
            raise FileNotFoundError(missing_data_root_message(f'{key}.dataset.data_root',
                                                              root))
