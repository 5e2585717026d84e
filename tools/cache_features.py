"""Run the frozen image tower once per image and augmented view and store its outputs
(fp16, memory-mapped shards + manifest) for training and testing without images.

    python tools/cache_features.py configs/demo/dualcoop_p10_cached.py
    python tools/cache_features.py CONFIG --out data/cache/x --num-views 8 --split train

Rerun after an interruption to finish the build (finished shards are kept). See
docs/feature_cache.md.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/, for _bootstrap
from _bootstrap import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Cache the image features of a config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--out', help='cache folder (default: the root of the config\'s '
                        'CachedFeatureDataset)')
    parser.add_argument('--num-views', type=cli.positive_int, help='augmented views per '
                        'training image (default: the config\'s num_views, else 1)')
    parser.add_argument('--split', choices=['train', 'val', 'test', 'all'], default='all')
    parser.add_argument('--batch-size', type=cli.positive_int,
                        help='images per tower forward (default: the dataloader\'s)')
    parser.add_argument('--shard-size', type=cli.positive_int, default=1024,
                        help='images per shard file (the unit of resuming)')
    parser.add_argument('--workers', type=int, help='decoding processes (default: the '
                        'dataloader\'s num_workers)')
    parser.add_argument('--overwrite', action='store_true',
                        help='rebuild splits cached with other settings')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config entries')
    cli.add_debug_arg(parser)
    args = parser.parse_args(argv)
    cli.check_config(args.config)
    cli.check_cfg_options(args.cfg_options)
    return args


def main(argv=None):
    args = parse_args(argv)
    from mlr_plugin.engine.feature_cache import SPLITS, build_feature_cache
    from mlr_plugin.engine.launch import load_config
    cfg = load_config(args.config, args.cfg_options)
    return build_feature_cache(
        cfg, out=args.out, num_views=args.num_views,
        splits=SPLITS if args.split == 'all' else (args.split, ),
        batch_size=args.batch_size, shard_size=args.shard_size, num_workers=args.workers,
        overwrite=args.overwrite)


if __name__ == '__main__':
    cli.run_cli(main)
