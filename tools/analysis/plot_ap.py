"""Plot per-class AP and precision-recall curves of a ``tools/test.py --out`` file.

    python tools/test.py configs/demo/zeroshot_dualcoop.py CKPT --out work_dirs/scores.json
    python tools/analysis/plot_ap.py work_dirs/scores.json --out work_dirs/plots

Writes ``ap_per_class.png`` (one horizontal AP bar per class, best first) and
``pr_curves.png`` (precision-recall of every class, thin, and of the class set pooled,
bold) with one panel per class set: *seen* and *unseen* when the file carries the test
metric's zero-shot subset (``class_subsets`` with a ``zsl`` entry, as ``tools/test.py``
writes it for zero-shot configs), else *all classes*. Each set is scored as the metric
scores it: ``-1`` labels are ignored and, when the metric drops images without a positive
among a set's classes (``drop_empty_rows``), so does the plot; the unseen panel's mAP is
then the metric's ``zsl/mAP``.
"""
import argparse
import json
import os
import os.path as osp
import pickle
import sys
from typing import Dict, List, NamedTuple, Optional

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from _bootstrap import cli  # noqa: E402  (also puts the repository on sys.path)

from mlr_plugin.evaluation.functional import average_precision_per_class  # noqa: E402

SEEN_COLOUR, UNSEEN_COLOUR, ALL_COLOUR = '#3b75af', '#d1802f', '#4a8c5c'


class ClassSet(NamedTuple):
    """One panel: a name, the class columns and the image rows it is scored on."""
    name: str
    columns: List[int]
    rows: np.ndarray
    colour: str


class _PlainDataUnpickler(pickle.Unpickler):
    """tools/test.py's .pkl holds dicts, lists, str and numbers: refuse anything else
    (a crafted pickle could otherwise run code)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f'{module}.{name} is not plain data')


def load_results(path: str) -> Dict:
    """The ``--out`` file of tools/test.py as dict(classes, scores (N, C), target (N, C),
    class_subsets, drop_empty_rows); a one-line error naming what is missing."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'results file not found: {path}')
    if path.endswith('.pkl'):
        with open(path, 'rb') as f:
            try:
                data = _PlainDataUnpickler(f).load()
            except pickle.UnpicklingError as error:
                raise ValueError(f'{path}: {error}') from None
    elif path.endswith('.json'):
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    else:
        raise ValueError(f'{path}: expected the .json or .pkl file of tools/test.py --out')
    if not isinstance(data, dict) or 'predictions' not in data or 'classes' not in data:
        raise ValueError(f'{path}: not a tools/test.py --out file (needs "classes" and '
                         '"predictions")')
    classes, predictions = list(data['classes']), data['predictions']
    if not predictions:
        raise ValueError(f'{path}: "predictions" is empty')
    missing = [i for i, p in enumerate(predictions) if 'gt_score' not in p]
    if missing:
        raise ValueError(f'{path}: predictions[{missing[0]}] has no "gt_score" (a test '
                         'split without labels cannot be scored)')
    scores = np.asarray([p['pred_score'] for p in predictions], dtype=np.float64)
    target = np.asarray([p['gt_score'] for p in predictions], dtype=np.float64)
    if scores.shape != target.shape or scores.shape[1] != len(classes):
        raise ValueError(f'{path}: pred_score {scores.shape}, gt_score {target.shape} and '
                         f'{len(classes)} classes do not match')
    streams = None
    if all('pred_streams' in p for p in predictions):  # MKT: (N, S, C) raw stream scores
        streams = np.asarray([p['pred_streams'] for p in predictions], dtype=np.float64)
        if streams.ndim != 3 or streams.shape[2] != len(classes):
            raise ValueError(f'{path}: pred_streams {streams.shape} do not match '
                             f'{len(classes)} classes')
    return dict(classes=classes, scores=scores, target=target, streams=streams,
                class_subsets=dict(data.get('class_subsets') or {}),
                drop_empty_rows=bool(data.get('drop_empty_rows', False)))


def class_sets(results: Dict) -> List[ClassSet]:
    """Seen / unseen (a ``zsl`` class subset in the file) or all classes, each with the
    rows the metric scores it on."""
    classes, target = results['classes'], results['target']
    unseen_names = results['class_subsets'].get('zsl')
    if unseen_names:
        position = {name: i for i, name in enumerate(classes)}
        unknown = [n for n in unseen_names if n not in position]
        if unknown:
            raise ValueError(f'class_subsets["zsl"] names {unknown[0]!r}, not a class of '
                             'the file')
        unseen = sorted(position[n] for n in unseen_names)
        seen = [c for c in range(len(classes)) if c not in set(unseen)]
        groups = [('seen', seen, SEEN_COLOUR), ('unseen', unseen, UNSEEN_COLOUR)]
        groups = [g for g in groups if g[1]]
    else:
        groups = [('all classes', list(range(len(classes))), ALL_COLOUR)]
    sets = []
    for name, columns, colour in groups:
        if results['drop_empty_rows']:
            rows = np.flatnonzero((target[:, columns] == 1).any(axis=1))
        else:
            rows = np.arange(len(target))
        sets.append(ClassSet(name, columns, rows, colour))
    return sets


def set_average_precisions(results: Dict, class_set: ClassSet) -> np.ndarray:
    """(C',) AP in % of the set's classes on its rows (NaN: no positive)."""
    scores = results['scores'][np.ix_(class_set.rows, class_set.columns)]
    if results.get('streams') is not None and class_set.name == 'unseen':
        # as the metric's zsl/ keys: each stream L2-normalised over the unseen classes
        import torch

        from mlr_plugin.models.heads.mkt import fuse_streams
        sub = results['streams'][class_set.rows][:, :, class_set.columns]
        scores = fuse_streams(torch.from_numpy(sub)).numpy()
    target = results['target'][np.ix_(class_set.rows, class_set.columns)]
    return 100.0 * average_precision_per_class(scores, target)


def precision_recall_points(scores: np.ndarray, positive: np.ndarray):
    """(recall, precision) at every distinct score threshold, highest first; tied
    scores are one point (as the AP). Empty arrays when there is no positive."""
    num_pos = positive.sum()
    if num_pos == 0 or scores.size == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind='stable')
    scores, positive = scores[order], positive[order]
    tp = np.cumsum(positive)
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    return tp[last] / num_pos, tp[last] / (last + 1)


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> None:
    from mlr_plugin.fileio import atomic_open
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=110, bbox_inches='tight')


def ap_bar_figure(results: Dict, sets: List[ClassSet], title: str = ''):
    """Horizontal per-class AP bars, one panel per class set, best first (a class with no
    positive has an empty bar labelled 'n/a').

    Returns (figure, {set name: {class name: AP %}} as plotted)."""
    plt = _pyplot()
    heights = [max(len(s.columns), 2) for s in sets]
    fig, axes = plt.subplots(len(sets), 1, squeeze=False,
                             figsize=(7.5, 0.9 + 0.24 * sum(heights) + 0.5 * len(sets)),
                             gridspec_kw=dict(height_ratios=heights))
    plotted = {}
    for ax, class_set in zip(axes[:, 0], sets):
        aps = set_average_precisions(results, class_set)
        names = [results['classes'][c] for c in class_set.columns]
        order = sorted(range(len(names)), key=lambda i: (np.nan_to_num(-aps[i], nan=1.0), i))
        values = [0.0 if np.isnan(aps[i]) else aps[i] for i in order]
        ax.barh(range(len(order)), values, color=class_set.colour, height=0.72)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels([names[i] for i in order], fontsize=8)
        ax.invert_yaxis()
        for y, i in enumerate(order):
            text = 'n/a' if np.isnan(aps[i]) else f'{aps[i]:.1f}'
            ax.text(values[y] + 0.8, y, text, va='center', fontsize=7)
        ax.set_xlim(0, 108)
        mean = np.nanmean(aps) if not np.all(np.isnan(aps)) else float('nan')
        ax.set_title(f'{class_set.name}: {len(names)} classes, {len(class_set.rows)} images, '
                     f'mAP {mean:.1f}', fontsize=10, loc='left')
        ax.grid(axis='x', alpha=0.3)
        plotted[class_set.name] = {names[i]: float(aps[i]) for i in range(len(names))}
    axes[-1, 0].set_xlabel('average precision (%)')
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig, plotted


def plot_ap_bars(results: Dict, sets: List[ClassSet], path: str, title: str = '') -> Dict:
    """:func:`ap_bar_figure` saved to ``path``; returns its plotted values."""
    fig, plotted = ap_bar_figure(results, sets, title)
    _save(fig, path)
    _pyplot().close(fig)
    return plotted


def plot_pr_curves(results: Dict, sets: List[ClassSet], path: str, title: str = '') -> None:
    """Precision-recall of each class (thin) and of the set pooled over its classes
    (bold: every (image, class) pair ranked together), one panel per class set."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sets), squeeze=False, figsize=(4.6 * len(sets), 4.4))
    for ax, class_set in zip(axes[0], sets):
        scores = results['scores'][np.ix_(class_set.rows, class_set.columns)]
        target = results['target'][np.ix_(class_set.rows, class_set.columns)]
        for c in range(scores.shape[1]):
            known = target[:, c] != -1
            recall, precision = precision_recall_points(scores[known, c],
                                                        target[known, c] == 1)
            if not recall.size:  # no positive: no curve (its AP bar says n/a)
                continue
            ax.step(np.r_[0, recall], np.r_[precision[:1], precision], where='post',
                    color=class_set.colour, alpha=0.25, linewidth=0.8)
        known = target != -1
        recall, precision = precision_recall_points(scores[known], target[known] == 1)
        if recall.size:
            ax.step(np.r_[0, recall], np.r_[precision[:1], precision], where='post',
                    color='black', linewidth=2.0, label='its classes pooled')
        ax.plot([], [], color=class_set.colour, alpha=0.5, label='one class')
        ax.set_xlim(0, 1.01)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel('recall')
        ax.set_ylabel('precision')
        ax.set_title(f'{class_set.name} ({len(class_set.columns)} classes)', fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc='best', fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_results(results_file: str, out_dir: Optional[str] = None) -> Dict[str, str]:
    """Both plots of one results file; returns {'ap': path, 'pr': path}."""
    results = load_results(results_file)
    out_dir = out_dir or osp.splitext(results_file)[0] + '_plots'
    os.makedirs(out_dir, exist_ok=True)
    sets = class_sets(results)
    title = osp.basename(results_file)
    paths = dict(ap=osp.join(out_dir, 'ap_per_class.png'),
                 pr=osp.join(out_dir, 'pr_curves.png'))
    plot_ap_bars(results, sets, paths['ap'], title)
    plot_pr_curves(results, sets, paths['pr'], title)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('results', help='the .json / .pkl file of tools/test.py --out')
    parser.add_argument('--out', help='folder for the PNGs (default: next to RESULTS, '
                        '<name>_plots/)')
    cli.add_debug_arg(parser)
    args = parser.parse_args(argv)
    paths = plot_results(args.results, args.out)
    for path in paths.values():
        print(f'wrote {path}')
    return paths


if __name__ == '__main__':
    cli.run_cli(main)
