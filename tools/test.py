"""Evaluate a model and print its metrics table.

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out work_dirs/scores.json   # per-image scores
    python tools/test.py CONFIG CHECKPOINT --out work_dirs/scores.pkl    # the same, pickled
    python tools/test.py CONFIG --untrained       # an untrained model, on purpose
    python tools/test.py configs/dualcoop/coco_zsl_handcrafted.py       # nothing to load
    python tools/test.py CONFIG CHECKPOINT --show-dir work_dirs/vis  # attention maps
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/, for _bootstrap
from _bootstrap import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test an mlr_plugin model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file (omit for models with nothing trained, '
                        'e.g. hand-crafted zero-shot prompts)')
    parser.add_argument('--untrained', action='store_true',
                        help='evaluate a model with trainable parameters without a '
                        'checkpoint (its untrained initialisation)')
    parser.add_argument('--work-dir', help='where the test log goes')
    parser.add_argument('--out', help='write per-image scores, labels and class names '
                        'to this .json (or .pkl) file')
    parser.add_argument('--show-dir', help="write each test image's top classes' "
                        'attention maps as <image name>.png into this folder')
    parser.add_argument('--amp', choices=['auto', 'on', 'off'], default='auto',
                        help='bf16 autocast at test time (auto = on with CUDA)')
    cli.add_runner_args(parser)
    args = cli.parse_runner_args(parser, argv)
    # checked before anything heavy is imported: a typo costs a fraction of a second
    cli.check_config(args.config)
    cli.check_file(args.checkpoint, 'checkpoint')
    cli.check_suffix(args.out, ('.json', '.pkl'), '--out')
    cli.check_cfg_options(args.cfg_options)
    if args.checkpoint is not None and args.untrained:
        raise ValueError('--untrained and a checkpoint exclude each other: '
                         f'{args.checkpoint} would be loaded')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mlr_plugin.engine.launch import check_data_roots, runner_config_from_args
    cfg = runner_config_from_args(args)
    import torch
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner

    from mlr_plugin.evaluation import format_metrics_table

    cfg.load_from = None  # loaded below, strictly, and checked to be complete
    cfg.resume = False
    check_data_roots(cfg, ['test_dataloader'])
    if args.amp == 'on' or (args.amp == 'auto' and torch.cuda.is_available()):
        cfg.test_cfg = dict(type='TestLoop', fp16=True)
    dump_file = None
    if args.out is not None:
        # the predictions are dumped as JSON; a .pkl is converted from it at the end
        dump_file = args.out if args.out.endswith('.json') else args.out + '.tmp.json'
        evaluators = cfg.test_evaluator
        if not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        # the metric's class subsets (zero-shot: the unseen classes) travel along
        protocol = next((dict(class_subsets=e.get('class_subsets'),
                              drop_empty_rows=e.get('drop_empty_rows', False))
                         for e in evaluators if e.get('class_subsets')), {})
        cfg.test_evaluator = list(evaluators) + [
            dict(type='DumpMultiLabelPredictions', out_file=dump_file, **protocol)]
    if args.show_dir is not None:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='AttentionVisHook', out_dir=args.show_dir)]
    runner = Runner.from_cfg(cfg)
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    if args.checkpoint is not None:
        from mlr_plugin.models.checkpoint import require_complete
        runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
        require_complete(model, args.checkpoint)
    elif not args.untrained:
        trainable = [name for name, p in model.named_parameters() if p.requires_grad]
        if trainable:
            shown = ', '.join(trainable[:3]) + (', ...' if len(trainable) > 3 else '')
            raise ValueError(
                f'{args.config}: the model has trainable parameters ({shown}) and no '
                'checkpoint was given: pass the CHECKPOINT to test, or --untrained to '
                'evaluate the untrained model on purpose')
    metrics = runner.test()
    print(format_metrics_table(metrics))
    if is_main_process():  # mmengine's LoggerHook wrote them there
        print(f'metrics written to {osp.join(runner.log_dir, runner.timestamp + ".json")}')
    if dump_file is not None and is_main_process():
        if dump_file != args.out:
            write_pickle_from_json(dump_file, args.out)
        print(f'wrote per-image scores to {args.out}')
    return metrics


def write_pickle_from_json(json_file: str, out: str) -> None:
    """The dumped predictions (classes, per-image scores and labels) as a pickle."""
    import json
    import pickle

    from mlr_plugin.fileio import atomic_open
    with open(json_file) as f:
        predictions = json.load(f)
    with atomic_open(out, 'wb') as f:
        pickle.dump(predictions, f)
    os.remove(json_file)


if __name__ == '__main__':
    cli.run_cli(main)
