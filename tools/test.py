"""Evaluate a model and print its metrics table.

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out work_dirs/scores.json   # per-image scores
    python tools/test.py configs/dualcoop/coco_zsl_handcrafted.py       # nothing to load
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mlr_plugin.engine.launch import build_runner_config, setup_distributed  # noqa: E402


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
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


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
    cfg.load_from = args.checkpoint
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
    metrics = runner.test()
    print(format_metrics_table(metrics))
    return metrics


if __name__ == '__main__':
    from mlr_plugin.compat import CheckpointError
    try:
        main()
    except CheckpointError as error:  # a bad file, not a bug: one line, no traceback
        sys.exit(f'error: {error}')
