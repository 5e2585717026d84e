"""Train a model from an mlr_plugin config with mmengine's Runner.

    python tools/train.py configs/dualcoop_pp/coco_p30.py
    python tools/train.py CONFIG --resume                 # continue the latest run
    python tools/train.py CONFIG --cfg-options train_dataloader.dataset.data_root=data/x
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/, for _bootstrap
from _bootstrap import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train an mlr_plugin model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in '
                        'the work dir when no path is given (the one last_checkpoint '
                        'names, else the newest loadable epoch_*/iter_*.pth)')
    parser.add_argument('--amp', choices=['auto', 'on', 'off'], default='auto',
                        help='bf16 mixed precision: auto = on when CUDA is available')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    cli.add_runner_args(parser, cfg_help='override config entries, e.g. '
                        'model.backbone.pretrained=/path/RN101.pt')
    args = cli.parse_runner_args(parser, argv)
    # checked before anything heavy is imported: a typo costs a fraction of a second
    cli.check_config(args.config)
    cli.check_cfg_options(args.cfg_options)
    if args.resume not in (None, 'auto'):
        cli.check_file(args.resume, 'checkpoint to resume from (--resume)')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mlr_plugin.engine.launch import (FailedRunCleanup, check_data_roots,
                                         default_work_dir, runner_config_from_args)
    cfg = runner_config_from_args(args, amp=args.amp)
    from mmengine.runner import Runner

    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint.pop('save_best', None)
    check_data_roots(cfg, ['train_dataloader', 'val_dataloader'])
    resume_note = ''
    if args.resume == 'auto':
        from mlr_plugin.engine.checkpointing import find_resume_checkpoint
        resume_from, resume_note = find_resume_checkpoint(cfg.work_dir)
        cfg.resume, cfg.load_from = resume_from is not None, resume_from
        if resume_from is None:  # said plainly, before the Runner's long banner
            print(f'--resume: {resume_note}', file=sys.stderr)
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    cleanup = FailedRunCleanup(cfg.work_dir, enabled=args.work_dir is None and
                               cfg.work_dir == default_work_dir(args.config))
    try:
        runner = Runner.from_cfg(cfg)
    except Exception:
        cleanup()
        raise
    if resume_note:
        runner.logger.info(resume_note)
    validation = make_final_validation()
    runner.register_hook(validation, priority='LOWEST')
    try:
        runner.train()
    except BaseException as error:
        if not caused_by_ctrl_c(error):
            cleanup()
            raise
        # Ctrl-C: run_cli prints this one line (where to continue from) and exits 130
        raise cli.Interrupted(interrupted_message(runner)) from None
    summary = final_validation_summary(validation.metrics)
    if summary:
        runner.logger.info(f'final validation: {summary}  (work dir: {runner.work_dir})')
    return runner


def caused_by_ctrl_c(error: BaseException) -> bool:
    """A KeyboardInterrupt, or an error raised while handling one: mmengine turns any
    exception while it formats the config for a checkpoint (a bare ``except``) into a
    SyntaxError, and Ctrl-C often lands there."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def interrupted_message(runner) -> str:
    """'interrupted at iteration N; rerun with --resume to continue from CKPT' (the
    checkpoint --resume would pick), or '...; no checkpoint yet'."""
    from mlr_plugin.engine.checkpointing import find_resume_checkpoint
    where = f'interrupted at iteration {runner.iter + 1}'  # 1-based, as the log counts
    latest, _ = find_resume_checkpoint(runner.work_dir)
    if latest is None:
        return f'{where}; no checkpoint yet (a rerun starts from scratch)'
    return f'{where}; rerun with --resume to continue from {latest}'


def make_final_validation():
    """The hook (built here: mmengine is imported only once the options are checked)."""
    from mmengine.hooks import Hook

    class FinalValidation(Hook):
        """Keeps the metrics of the validations run in this process, and validates once
        more after training when the last one did not see the final weights (a run resumed
        from a checkpoint written before its final validation trains nothing more, so
        mmengine would not validate it)."""

        def __init__(self):
            self.metrics = None
            self.validated_at = None

        def after_val_epoch(self, runner, metrics=None) -> None:
            self.metrics = dict(metrics or {})
            self.validated_at = runner.iter

        def after_train(self, runner) -> None:
            if runner.val_loop is not None and self.validated_at != runner.iter:
                runner.logger.info('the final weights were not validated in this run: '
                                   'validating them now')
                runner.val_loop.run()

    return FinalValidation()


def final_validation_summary(metrics, keys=('mAP', 'CF1', 'OF1', 'zsl/mAP')) -> str:
    """'mAP 61.20 | CF1 55.10 | ...' from validation metrics, '' without any."""
    metrics = metrics or {}
    return ' | '.join(f'{key} {metrics[key]:.2f}' for key in keys if key in metrics)


if __name__ == '__main__':
    cli.run_cli(main)
