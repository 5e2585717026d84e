"""Evaluate a model and print its metrics table.

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out work_dirs/scores.json   # per-image scores
    python tools/test.py configs/dualcoop/coco_zsl_handcrafted.py       # nothing to load
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mlr_plugin.engine.launch import (add_runner_args, build_runner_config,  # noqa: E402
                                     parse_runner_args, run_cli, setup_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test an mlr_plugin model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file (omit for models with nothing trained, '
                        'e.g. hand-crafted zero-shot prompts)')
    parser.add_argument('--work-dir', help='where the test log goes')
    parser.add_argument('--out', help='write per-image scores, labels and class names '
                        'to this .json file')
    parser.add_argument('--amp', choices=['auto', 'on', 'off'], default='auto',
                        help='bf16 autocast at test time (auto = on with CUDA)')
    add_runner_args(parser)
    return parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    setup_distributed(args.launcher)
    import torch
    from mmengine.runner import Runner

    from mlr_plugin.evaluation import format_metrics_table

    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith('.json'):
        raise ValueError(f'--out must be a .json file, got {args.out}')
    cfg = build_runner_config(args.config, work_dir=args.work_dir,
                              cfg_options=args.cfg_options, launcher=args.launcher)
    cfg.load_from = None  # loaded below, strictly, and checked to be complete
    cfg.resume = False
    if args.amp == 'on' or (args.amp == 'auto' and torch.cuda.is_available()):
        cfg.test_cfg = dict(type='TestLoop', fp16=True)
    if args.out is not None:
        evaluators = cfg.test_evaluator
        if not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        cfg.test_evaluator = list(evaluators) + [
            dict(type='DumpMultiLabelPredictions', out_file=args.out)]
    runner = Runner.from_cfg(cfg)
    if args.checkpoint is not None:
        from mlr_plugin.models.checkpoint import require_complete
        runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        require_complete(model, args.checkpoint)
    metrics = runner.test()
    print(format_metrics_table(metrics))
    return metrics


if __name__ == '__main__':
    run_cli(main)
