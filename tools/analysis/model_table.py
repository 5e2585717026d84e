"""Print the Markdown table of every model in configs/*/metafile.yml (for the README).

    python tools/analysis/model_table.py                  # all models
    python tools/analysis/model_table.py --pattern demo   # names matching a pattern
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from _bootstrap import cli  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description='Markdown table of the metafile models')
    parser.add_argument('--pattern', help='only names matching this (see list_models)')
    cli.add_debug_arg(parser)
    args = parser.parse_args(argv)
    from mlr_plugin.apis.model_zoo import list_models, model_table
    names = None if args.pattern is None else list_models(args.pattern)
    if names == []:
        raise ValueError(f'no model name matches --pattern {args.pattern!r}')
    table = model_table(names=names)
    print(table, end='')
    return table


if __name__ == '__main__':
    cli.run_cli(main)
