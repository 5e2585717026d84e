"""Command-line plumbing of the tools, in the standard library only.

``tools/train.py``, ``tools/test.py`` and ``tools/infer.py`` load this file by path (as
module ``_mlr_plugin_cli``, without importing the ``mlr_plugin`` package) before anything
imports torch, mmengine or mmpretrain, so a mistyped config, a missing checkpoint or a bad
option value is a one-line error in a fraction of a second, not after seconds of imports.
``--debug`` shows the traceback instead. ``mlr_plugin.engine.launch`` re-exports the
runner-option helpers.
"""
import argparse
import difflib
import glob
import os
import os.path as osp
import sys

#: the repository this file belongs to (configs/ lives there)
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_WORLD_COMMAND = 'python -m mlr_plugin.datasets.demo_world --out {root}'

# exit status of a process stopped by Ctrl-C (128 + SIGINT), as shells report it
EXIT_INTERRUPTED = 130


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line to print (e.g. where to resume from)."""


# ------------------------------------------------------------------ options
def add_debug_arg(parser) -> None:
    parser.add_argument('--debug', action='store_true',
                        help='show the full traceback of an error')


def add_runner_args(parser, cfg_help: str = 'override config entries') -> None:
    """The options every Runner tool takes: --cfg-options, --launcher, --local-rank,
    --debug."""
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help=cfg_help)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_arg(parser)


def parse_runner_args(parser, argv=None):
    """Parse, and export LOCAL_RANK the way torch.distributed.launch users expect."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _number(text: str, kind, low, high, expected: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected {expected}, got {text!r}')
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f'expected {expected}, got {value}')
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    return _number(text, int, 1, None, 'an integer >= 1')


def probability(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    return _number(text, float, 0.0, 1.0, 'a number in [0, 1]')


# ------------------------------------------------------------------ checks
def config_candidates(repo_root: str = REPO_ROOT):
    """Every config of the repository, as paths relative to its root."""
    found = glob.glob(osp.join(repo_root, 'configs', '**', '*.py'), recursive=True)
    return sorted(osp.relpath(path, repo_root) for path in found
                  if '_base_' not in path.split(os.sep))


def suggest_configs(path: str, repo_root: str = REPO_ROOT, n: int = 3):
    """Configs whose path or file name is close to ``path``, best first."""
    absolute = osp.abspath(path)
    rel = osp.relpath(absolute, repo_root) if absolute.startswith(repo_root + os.sep) \
        else path
    name = osp.basename(path)

    def score(candidate):
        by_path = difflib.SequenceMatcher(None, rel, candidate).ratio()
        by_name = difflib.SequenceMatcher(None, name, osp.basename(candidate)).ratio()
        return max(by_path, by_name)

    scored = sorted(((score(c), c) for c in config_candidates(repo_root)),
                    key=lambda item: -item[0])
    return [candidate for value, candidate in scored[:n] if value >= 0.6]


def check_config(path: str) -> None:
    """A one-line FileNotFoundError for a missing config, with close matches."""
    if osp.isfile(path):
        return
    message = f'config file not found: {path}'
    close = suggest_configs(path)
    if close:
        message += ' (did you mean ' + ' or '.join(close) + '?)'
    raise FileNotFoundError(message)


def check_file(path: str, what: str) -> None:
    """A one-line FileNotFoundError naming ``what`` when ``path`` is not a file."""
    if path is not None and not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')


def check_cfg_options(options) -> None:
    for item in options or ():
        if '=' not in item:
            raise ValueError(f'--cfg-options entry {item!r} is not KEY=VALUE')


def check_suffix(path: str, suffixes, option: str) -> None:
    if path is not None and not path.endswith(tuple(suffixes)):
        raise ValueError(f'{option} must end with {" or ".join(suffixes)}, got {path}')


def missing_data_root_message(field: str, root: str) -> str:
    """'<field>: <root> does not exist' plus how to get the data there."""
    message = f'{field}: data folder {root} does not exist'
    if 'demo_world' in osp.basename(osp.normpath(root)):
        return message + '; generate it with: ' + DEMO_WORLD_COMMAND.format(root=root)
    return message + f'; put the data there or pass --cfg-options {field}=/path/to/data'


# ------------------------------------------------------------------ running
def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    lines = text.splitlines()
    return lines[0] + (' ...' if len(lines) > 1 else '')


def _expected(error: BaseException) -> bool:
    """Errors whose message says all (missing files, bad values, our own errors)."""
    return isinstance(error, (FileNotFoundError, FileExistsError, ValueError)) or \
        type(error).__module__.startswith(('mlr_plugin', '_mlr_plugin'))


def run_cli(main, argv=None) -> None:
    """Run a tool's ``main``: an error is one line on stderr (exit 1), Ctrl-C exits
    130; ``--debug`` on the command line shows the traceback instead."""
    args = sys.argv[1:] if argv is None else argv
    debug = '--debug' in args
    try:
        main() if argv is None else main(argv)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        print(str(interrupt) if isinstance(interrupt, Interrupted) else 'interrupted',
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001  (every error becomes one line)
        if debug:
            raise
        if _expected(error):
            sys.exit(f'error: {_one_line(error)}')
        sys.exit(f'error: {type(error).__name__}: {_one_line(error)} '
                 '(rerun with --debug for the traceback)')

