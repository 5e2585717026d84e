"""Train and test every demo config, then print the README's demo table (markdown).

    python -m mlr_plugin.datasets.demo_world --out data/demo_world
    python tools/demo/make_table.py            # ~10 min on 2 CPU cores

Each row trains with tools/train.py (except the hand-crafted baseline, which has nothing
to train), evaluates the final checkpoint on the demo world's *test* split with
tools/test.py and reports mAP / CF1 / OF1 (zero-shot rows: on the 5 held-out classes).
Two more rows score the same split with the shipped CLIP's own zero-shot classifier
("a photo of a {}.", tiny_clip_eval.py): on the image embedding and, densely, max over
locations; they rank images only, so they have mAP and no F1.

Every trained row has the same budget (read back from the run, printed in the table's
"budget" column and in its caption): iterations x batch, optimizer and schedule, training
augmentation. When the trained rows' budgets differ, the caption says so. The time column
is the wall-clock time of the row (train + test) and, in brackets, the CPU time of this
process (the model's forward/backward on 2 threads; the data-loader workers, which only
decode and flip images, are not counted); the caption gives the load average, since
another job on the machine inflates the wall-clock time much more than the CPU time.

``--png PATH`` also draws the table as a bar chart (mAP / CF1 / OF1 per row);
``--chart-from README.md --png PATH`` draws it from a table already printed there,
without running anything.
"""
import argparse
import importlib.util
import os
import os.path as osp
import platform
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# metric "prefix" of a row that averages the held-out classes' APs among all classes
GZSL_HELD_OUT = 'AP/held-out'
ROWS = [  # (label, config, metric prefix[, F1 metric suffix])
    ('zero-shot, hand-crafted prompts (no training), held-out 5 classes',
     'configs/demo/zeroshot_handcrafted.py', 'zsl/'),
    ('zero-shot DualCoOp (trained on 15 seen), held-out 5 classes',
     'configs/demo/zeroshot_dualcoop.py', 'zsl/'),
    ('zero-shot, hand-crafted prompts (no training), all 20 classes',
     'configs/demo/zeroshot_handcrafted.py', ''),
    ('DualCoOp, 10% labels', 'configs/demo/dualcoop_p10.py', ''),
    ('DualCoOp++, 10% labels', 'configs/demo/dualcoop_pp_p10.py', ''),
    ('DualCoOp, 100% labels', 'configs/demo/dualcoop_full.py', ''),
    ('Semantic decoupling + CSP, 10% labels', 'configs/demo/sd_csp_p10.py', ''),
    ('TRM-ML, 10% labels', 'configs/demo/trm_ml_p10.py', ''),
    ('TRM-ML, single positive label', 'configs/demo/trm_ml_single_positive.py', ''),
    # MKT's scores are rank-only (no calibrated threshold): its F1 columns are at top 3.
    # They depend on the classes scored together: ZSL normalises over the 5 held-out
    # classes alone, GZSL over all 20 (its held-out columns: the mean of their APs).
    ('zero-shot MKT stage 1 (ViT demo CLIP, trained on 15 seen), held-out 5 classes, '
     'F1 at top 3', 'configs/demo/mkt_zsl.py', 'zsl/', '_top3'),
    ('zero-shot MKT stage 1 (ViT demo CLIP, trained on 15 seen), held-out 5 classes '
     'scored among all 20 (GZSL)', 'configs/demo/mkt_zsl.py', GZSL_HELD_OUT),
    ('zero-shot MKT stage 1 (ViT demo CLIP, trained on 15 seen), all 20 classes, F1 at '
     'top 3', 'configs/demo/mkt_zsl.py', '', '_top3'),
]
# The shipped CLIPs' own zero-shot classifiers, (label, model, held-out 5 only?): their
# rows go after the hand-crafted all-20 row (rn) and before the MKT rows (vit).
CLIP_ROWS = [
    ('zero-shot CLIP ({model}), "a photo of a {{}}." on the image embedding, all 20 classes',
     'mlr-demo-rn', False, 'zs_map_global'),
    ('zero-shot CLIP ({model}), "a photo of a {{}}." max over locations (dense), all 20 '
     'classes', 'mlr-demo-rn', False, 'zs_map_dense'),
    ('zero-shot CLIP ({model}), "a photo of a {{}}." on the image embedding, held-out 5 '
     'classes', 'mlr-demo-vit', True, 'zs_map_global'),
    ('zero-shot CLIP ({model}), "a photo of a {{}}." on the image embedding, all 20 classes',
     'mlr-demo-vit', False, 'zs_map_global'),
]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def budget_of(runner) -> str:
    """'1000 it x batch 32 (4 ep), SGD lr 0.03 cosine, aug: RandomFlip' of a trained runner."""
    cfg = runner.cfg
    transforms = [t['type'] if isinstance(t['type'], str) else t['type'].__name__
                  for t in cfg.train_dataloader.dataset.pipeline]
    aug = [t for t in transforms if t not in ('LoadImageCV2', 'PackInputs')] or ['none']
    optim = cfg.optim_wrapper.optimizer
    schedule = '+'.join(str(s['type']).replace('AnnealingLR', '').replace('LR', '')
                        for s in cfg.param_scheduler)
    return (f'{runner.max_iters} it x batch {cfg.train_dataloader.batch_size} '
            f'({runner.max_epochs} ep), {optim["type"]} lr {optim["lr"]:g} {schedule.lower()}, '
            f'aug: {", ".join(aug)}')


def _clip_zero_shot(data_root, model='mlr-demo-rn', held_out_only=False):
    """tiny_clip_eval's metrics of a shipped demo CLIP on the test split; with
    ``held_out_only``, scored on the zero-shot protocol's 5 held-out classes only."""
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))
    from tiny_clip_eval import evaluate_backbone, load_backbone, load_demo_split

    from mlr_plugin.datasets.demo_world import DEMO_UNSEEN
    backbone = load_backbone(osp.join(REPO, 'mlr_plugin', 'demo', f'{model}.safetensors'),
                             model)
    split = load_demo_split(data_root, 'test')
    if held_out_only:
        keep = [split['class_names'].index(c) for c in DEMO_UNSEEN]
        split = dict(split, labels=split['labels'][:, keep], areas=split['areas'][:, keep],
                     class_names=list(DEMO_UNSEEN))
    return evaluate_backbone(backbone, split)


TABLE_HEADER = '| setting | mAP | CF1 | OF1 | budget | train + test time: wall (CPU) |'


def results_from_markdown(path: str) -> list:
    """The rows of a demo table printed by this script, read back from a Markdown file
    (e.g. README.md) as ``(label, mAP, CF1, OF1, budget, None)``."""
    lines = open(path, encoding='utf-8').read().splitlines()
    if TABLE_HEADER not in lines:
        raise ValueError(f'{path}: no demo table (no line {TABLE_HEADER!r})')
    rows = []
    for line in lines[lines.index(TABLE_HEADER) + 2:]:
        if not line.startswith('|'):
            break
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if len(cells) != 6:
            raise ValueError(f'{path}: demo table row has {len(cells)} cells, not 6: {line}')
        number = (lambda cell: None if cell in ('—', '-', '') else float(cell))
        rows.append((cells[0], number(cells[1]), number(cells[2]), number(cells[3]),
                     cells[4], None))
    if not rows:
        raise ValueError(f'{path}: the demo table has no rows')
    return rows


def table_figure(results, caption: str = ''):
    """The table's rows as grouped horizontal bars (mAP, CF1, OF1; a missing value has no
    bar), top row first. Returns (figure, {metric: [value per row]} as plotted)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    metrics = [('mAP', 1, '#3b75af'), ('CF1', 2, '#d1802f'), ('OF1', 3, '#4a8c5c')]
    width = 0.27
    fig, ax = plt.subplots(figsize=(9, 0.75 + 0.62 * len(results)))
    plotted = {}
    for k, (name, column, colour) in enumerate(metrics):
        values = [row[column] for row in results]
        plotted[name] = values
        ys = [y + (k - 1) * width for y, v in enumerate(values) if v is not None]
        xs = [v for v in values if v is not None]
        ax.barh(ys, xs, height=width, color=colour, label=name)
        for y, x in zip(ys, xs):
            ax.text(x + 0.6, y, f'{x:.1f}', va='center', fontsize=7)
    ax.set_yticks(range(len(results)))
    ax.set_yticklabels([_wrap(row[0], 48) for row in results], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel('%  (demo world test split)')
    ax.grid(axis='x', alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    if caption:
        ax.set_title(caption, fontsize=9, loc='left')
    fig.tight_layout()
    return fig, plotted


def plot_table(results, path: str, caption: str = '') -> dict:
    """:func:`table_figure` saved as a PNG at ``path``; returns its plotted values."""
    import matplotlib.pyplot as plt

    from mlr_plugin.fileio import atomic_open
    fig, plotted = table_figure(results, caption)
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=110)
    plt.close(fig)
    return plotted


def _wrap(text: str, width: int) -> str:
    import textwrap
    return '\n'.join(textwrap.wrap(text, width, break_on_hyphens=False))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo_table')
    parser.add_argument('--data-root', default='data/demo_world')
    parser.add_argument('--only', nargs='+', metavar='CONFIG',
                        help='rerun just these configs (e.g. dualcoop_pp_p10) and print their '
                             'rows, without the CLIP zero-shot rows')
    parser.add_argument('--png', help='also draw the table as a bar chart into this .png')
    parser.add_argument('--chart-from', metavar='MARKDOWN',
                        help='draw --png from the demo table in this file (e.g. README.md) '
                             'instead of running anything')
    args = parser.parse_args(argv)
    if args.png is not None and not args.png.endswith('.png'):
        raise ValueError(f'--png must end with .png, got {args.png}')
    if args.chart_from is not None:
        if args.png is None:
            raise ValueError('--chart-from needs --png PATH (where to draw the chart)')
        plot_table(results_from_markdown(args.chart_from), args.png,
                   f'demo table of {osp.basename(args.chart_from)} (demo world test split)')
        print(f'wrote {args.png}')
        return
    if not osp.isfile(osp.join(args.data_root, 'annotations', 'instances_train.json')):
        raise FileNotFoundError(f'no demo world at {args.data_root}: run python -m '
                                f'mlr_plugin.datasets.demo_world --out {args.data_root}')
    train, test = _tool('train'), _tool('test')
    options = [f'{loader}.dataset.data_root={args.data_root}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    results, trained, budgets = [], {}, {}
    rows = [r for r in ROWS if not args.only
            or osp.splitext(osp.basename(r[1]))[0] in args.only]
    if not rows:
        raise ValueError(f'--only {args.only}: no such demo config; choose from '
                         f'{sorted({osp.splitext(osp.basename(r[1]))[0] for r in ROWS})}')
    for label, config, prefix, *f1_suffix in rows:
        f1_suffix = f1_suffix[0] if f1_suffix else ''
        name = osp.splitext(osp.basename(config))[0]
        work = osp.join(args.work_dir, name)
        start, cpu = time.perf_counter(), time.process_time()
        checkpoint = None
        if 'handcrafted' not in name:
            if config not in trained:
                runner = train.main([config, '--work-dir', work, '--cfg-options', *options])
                trained[config] = osp.join(work, f'epoch_{runner.max_epochs}.pth')
                budgets[config] = budget_of(runner)
            checkpoint = trained[config]
        argv = [config] + ([checkpoint] if checkpoint else []) + [
            '--work-dir', osp.join(work, 'test'), '--cfg-options', *options]
        metrics = test.main(argv)
        seconds = (time.perf_counter() - start, time.process_time() - cpu)
        if prefix == GZSL_HELD_OUT:  # needs the config's per_class=True test metric
            from mlr_plugin.datasets.demo_world import DEMO_UNSEEN
            scores = (sum(metrics[f'AP/{name}'] for name in DEMO_UNSEEN) / len(DEMO_UNSEEN),
                      None, None)
        else:
            scores = (metrics[f'{prefix}mAP'], metrics.get(f'{prefix}CF1{f1_suffix}'),
                      metrics.get(f'{prefix}OF1{f1_suffix}'))
        results.append((label, *scores, budgets.get(config, 'no training'), seconds))

    if not args.only:
        clip_rows, cache = {}, {}
        for label, model, held_out_only, key in CLIP_ROWS:
            start, cpu = time.perf_counter(), time.process_time()
            if (model, held_out_only) not in cache:
                cache[model, held_out_only] = _clip_zero_shot(args.data_root, model,
                                                              held_out_only)
            seconds = (time.perf_counter() - start, time.process_time() - cpu)
            clip_rows.setdefault(model, []).append(
                (label.format(model=model), cache[model, held_out_only][key], None, None,
                 'no training', seconds))
        # rn: after the hand-crafted pos/neg row on all 20 classes; vit: before MKT's
        labels = [r[0] for r in results]
        mkt = next(i for i, label in enumerate(labels) if 'MKT' in label)
        results[mkt:mkt] = clip_rows['mlr-demo-vit']
        results[3:3] = clip_rows['mlr-demo-rn']

    machine = (f'{platform.machine()} CPU, {torch.get_num_threads()} threads, '
               f'torch {torch.__version__}')
    distinct = sorted(set(budgets.values()))
    if len(distinct) == 1:
        budget_note = f'every trained row: {distinct[0]}'
    else:
        budget_note = ('**the trained rows do not share one budget**: ' + '; '.join(
            f'{osp.basename(c)}: {b}' for c, b in budgets.items()))
    print(f'\nDemo world test split (500 images, 20 classes), {machine}, load average '
          f'{os.getloadavg()[2]:.1f} over the last 15 min; `python tools/demo/make_table.py`; '
          f'{budget_note}.\n')
    print(TABLE_HEADER)
    print('|---|---|---|---|---|---|')
    for label, mAP, cf1, of1, budget, (wall, cpu) in results:
        fmt = (lambda v: f'{v:.1f}' if v is not None else '—')
        print(f'| {label} | {fmt(mAP)} | {fmt(cf1)} | {fmt(of1)} | {budget} | '
              f'{wall:.0f} s ({cpu:.0f} s) |')
    if args.png is not None:
        plot_table(results, args.png, f'demo world test split, {machine}')
        print(f'\nwrote {args.png}')


if __name__ == '__main__':
    main()
