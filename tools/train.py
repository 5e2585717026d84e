"""Train a model from an mlr_plugin config with mmengine's Runner.

    python tools/train.py configs/dualcoop_pp/coco_p30.py
    python tools/train.py CONFIG --resume                 # continue the latest run
    python tools/train.py CONFIG --cfg-options train_dataloader.dataset.data_root=data/x
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.hooks import Hook  # noqa: E402

from mlr_plugin.engine.launch import (add_runner_args, build_runner_config,  # noqa: E402
                                     parse_runner_args, run_cli, setup_distributed)


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
    add_runner_args(parser, cfg_help='override config entries, e.g. '
                    'model.backbone.pretrained=/path/RN101.pt')
    return parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    setup_distributed(args.launcher)
    from mmengine.runner import Runner

    cfg = build_runner_config(args.config, work_dir=args.work_dir,
                              cfg_options=args.cfg_options, launcher=args.launcher,
                              amp=args.amp)
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint.pop('save_best', None)
    resume_note = ''
    if args.resume == 'auto':
        from mlr_plugin.engine.checkpointing import find_resume_checkpoint
        resume_from, resume_note = find_resume_checkpoint(cfg.work_dir)
        cfg.resume, cfg.load_from = resume_from is not None, resume_from
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = Runner.from_cfg(cfg)
    if resume_note:
        runner.logger.info(resume_note)
    validation = FinalValidation()
    runner.register_hook(validation, priority='LOWEST')
    runner.train()
    summary = final_validation_summary(validation.metrics)
    if summary:
        runner.logger.info(f'final validation: {summary}  (work dir: {runner.work_dir})')
    return runner


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


def final_validation_summary(metrics, keys=('mAP', 'CF1', 'OF1', 'zsl/mAP')) -> str:
    """'mAP 61.20 | CF1 55.10 | ...' from validation metrics, '' without any."""
    metrics = metrics or {}
    return ' | '.join(f'{key} {metrics[key]:.2f}' for key in keys if key in metrics)


if __name__ == '__main__':
    run_cli(main)
