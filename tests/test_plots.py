"""tools/analysis/plot_ap.py and make_table.py's chart: the PNGs are written, and the
values drawn are the metric's (checked against sklearn and the registered metric)."""
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, precision_recall_curve

from mlr_plugin.engine.dump import DumpMultiLabelPredictions
from mlr_plugin.evaluation import MultiLabelMAP

REPO = Path(__file__).parent.parent
CLASSES = ['cat', 'dog', 'car', 'bus', 'tree', 'sky']
UNSEEN = ['bus', 'sky']


def _load(relative, name):
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plot_ap = _load('tools/analysis/plot_ap.py', 'tool_plot_ap')
make_table = _load('tools/demo/make_table.py', 'tool_make_table')


def _fake_predictions(seed=0, num_images=60):
    """Scores with ties (rounded), labels with unknown (-1) entries, a few images with
    no unseen positive (so dropping empty rows matters)."""
    rng = np.random.RandomState(seed)
    target = (rng.rand(num_images, len(CLASSES)) < 0.3).astype(np.float32)
    target[0, :] = 1  # every class has a positive
    scores = np.round(0.5 * target + rng.rand(*target.shape) * 0.8, 1).astype(np.float32)
    unknown = rng.rand(*target.shape) < 0.1
    unknown[:, [CLASSES.index(n) for n in UNSEEN]] = False  # zero-shot: unseen all known
    unknown[0] = False
    target[unknown] = -1
    return scores, target


def _write_results(path, scores, target, class_subsets=None, drop_empty_rows=False):
    """The file tools/test.py --out writes, written by the same metric."""
    dump = DumpMultiLabelPredictions(str(path), class_subsets=class_subsets,
                                     drop_empty_rows=drop_empty_rows)
    dump.dataset_meta = dict(classes=CLASSES)
    dump.process(None, [dict(img_path=f'{i}.jpg', pred_score=torch.from_numpy(s),
                             gt_score=torch.from_numpy(t)) for i, (s, t) in
                        enumerate(zip(scores, target))])
    dump.compute_metrics(dump.results)
    return str(path)


def _metric(scores, target, class_subsets, drop_empty_rows):
    metric = MultiLabelMAP(class_subsets=class_subsets,
                           drop_empty_rows=drop_empty_rows)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process(None, [dict(pred_score=torch.from_numpy(s), gt_score=torch.from_numpy(t))
                          for s, t in zip(scores, target)])
    return metric.compute_metrics(metric.results)


def _sklearn_aps(scores, target, columns, drop_empty_rows):
    """Independent per-class AP (%) of a class set, as the metric scores it."""
    rows = np.arange(len(target))
    if drop_empty_rows:
        rows = np.array([i for i in rows if any(target[i, c] == 1 for c in columns)])
    aps = {}
    for c in columns:
        known = [i for i in rows if target[i, c] != -1]
        aps[CLASSES[c]] = 100 * average_precision_score(target[known, c] == 1,
                                                        scores[known, c])
    return aps, len(rows)


def _check_png(path, min_size=(400, 250)):
    with Image.open(path) as image:
        assert image.format == 'PNG'
        width, height = image.size
        image.verify()
    assert width >= min_size[0] and height >= min_size[1], (path, image.size)
    assert width <= 4000 and height <= 4000


def _bars(ax):
    """{y tick label: bar width} of a horizontal bar panel."""
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = [p.get_width() for p in ax.patches]
    ys = [round(p.get_y() + p.get_height() / 2) for p in ax.patches]
    return {labels[y]: w for y, w in zip(ys, widths)}


@pytest.mark.parametrize('drop_empty_rows', [False, True])
def test_ap_bars_are_the_metrics_per_class_ap_for_seen_and_unseen(tmp_path,
                                                                  drop_empty_rows):
    scores, target = _fake_predictions()
    path = _write_results(tmp_path / 'scores.json', scores, target,
                          class_subsets=dict(zsl=UNSEEN), drop_empty_rows=drop_empty_rows)
    paths = plot_ap.plot_results(path, str(tmp_path / 'plots'))
    for png in paths.values():
        _check_png(png)

    results = plot_ap.load_results(path)
    sets = plot_ap.class_sets(results)
    assert [s.name for s in sets] == ['seen', 'unseen']
    fig, plotted = plot_ap.ap_bar_figure(results, sets)
    unseen_columns = [CLASSES.index(n) for n in UNSEEN]
    seen_columns = [c for c in range(len(CLASSES)) if c not in unseen_columns]
    for ax, name, columns in zip(fig.axes, ('seen', 'unseen'), (seen_columns, unseen_columns)):
        expected, num_rows = _sklearn_aps(scores, target, columns, drop_empty_rows)
        drawn = _bars(ax)
        assert set(drawn) == set(expected)
        for cls, ap in expected.items():
            assert drawn[cls] == pytest.approx(ap, abs=1e-6)
            assert plotted[name][cls] == pytest.approx(ap, abs=1e-6)
        assert ax.get_title(loc='left').startswith(
            f'{name}: {len(columns)} classes, {num_rows} images, '
            f'mAP {np.mean(list(expected.values())):.1f}')
        widths = [p.get_width() for p in ax.patches]
        assert widths == sorted(widths, reverse=True)  # best first
    # the unseen panel is the metric's zero-shot mAP
    metrics = _metric(scores, target, dict(zsl=UNSEEN), drop_empty_rows)
    assert np.mean(list(plotted['unseen'].values())) == pytest.approx(metrics['zsl/mAP'],
                                                                      abs=1e-4)


def test_without_zsl_info_one_panel_of_all_classes_is_the_metrics_map(tmp_path):
    scores, target = _fake_predictions(seed=1)
    path = _write_results(tmp_path / 'scores.json', scores, target)
    data = json.loads(Path(path).read_text())
    assert data['class_subsets'] == {} and data['drop_empty_rows'] is False
    results = plot_ap.load_results(path)
    sets = plot_ap.class_sets(results)
    assert [s.name for s in sets] == ['all classes']
    fig, plotted = plot_ap.ap_bar_figure(results, sets)
    expected, _ = _sklearn_aps(scores, target, range(len(CLASSES)), False)
    assert _bars(fig.axes[0]) == pytest.approx(expected, abs=1e-6)
    assert np.mean(list(plotted['all classes'].values())) == pytest.approx(
        _metric(scores, target, None, False)['mAP'], abs=1e-4)


def test_precision_recall_points_are_sklearns_curve():
    scores, target = _fake_predictions(seed=2)
    for c in range(len(CLASSES)):
        known = target[:, c] != -1
        recall, precision = plot_ap.precision_recall_points(scores[known, c],
                                                            target[known, c] == 1)
        sk_precision, sk_recall, _ = precision_recall_curve(target[known, c] == 1,
                                                            scores[known, c])
        # sklearn: increasing thresholds, then the extra (recall 0, precision 1) point
        np.testing.assert_allclose(recall, sk_recall[:-1][::-1])
        np.testing.assert_allclose(precision, sk_precision[:-1][::-1])


def test_pickle_results_load_and_a_crafted_pickle_is_refused(tmp_path):
    scores, target = _fake_predictions(seed=3)
    path = _write_results(tmp_path / 'scores.json', scores, target, dict(zsl=UNSEEN))
    with open(tmp_path / 'scores.pkl', 'wb') as f:  # as tools/test.py --out x.pkl writes it
        pickle.dump(json.loads(Path(path).read_text()), f)
    from_pkl = plot_ap.load_results(str(tmp_path / 'scores.pkl'))
    np.testing.assert_array_equal(from_pkl['scores'], plot_ap.load_results(path)['scores'])

    class Exploit:
        def __reduce__(self):
            return (print, ('code ran',))
    with open(tmp_path / 'bad.pkl', 'wb') as f:
        pickle.dump(dict(classes=[], predictions=[Exploit()]), f)
    with pytest.raises(ValueError, match=r'bad.pkl: builtins.print is not plain data'):
        plot_ap.load_results(str(tmp_path / 'bad.pkl'))


def test_results_without_labels_are_a_one_line_error(tmp_path):
    path = tmp_path / 'scores.json'
    path.write_text(json.dumps(dict(classes=['a'], predictions=[dict(pred_score=[0.5])])))
    with pytest.raises(ValueError, match=r'scores.json: predictions\[0\] has no "gt_score"'):
        plot_ap.main([str(path), '--out', str(tmp_path / 'plots')])
    assert not (tmp_path / 'plots').exists()


FAKE_ROWS = [  # (label, mAP, CF1, OF1, budget, (wall s, CPU s)) as make_table collects them
    ('zero-shot, hand-crafted prompts (no training), held-out 5 classes', 7.9, 17.0, 17.8,
     'no training', (2.0, 3.0)),
    ('zero-shot CLIP, "a photo of a {}." on the image embedding, all 20 classes', 60.0,
     None, None, 'no training', (1.0, 2.0)),
    ('DualCoOp, 10% labels', 68.2, 67.7, 65.5, '1000 it x batch 32', (113.0, 130.0)),
]


def test_demo_table_chart_draws_the_tables_values(tmp_path):
    png = tmp_path / 'table.png'
    plotted = make_table.plot_table(FAKE_ROWS, str(png), 'fake rows')
    _check_png(png)
    assert plotted == dict(mAP=[7.9, 60.0, 68.2], CF1=[17.0, None, 67.7],
                           OF1=[17.8, None, 65.5])
    fig, _ = make_table.table_figure(FAKE_ROWS)
    bars = fig.axes[0].patches
    # one bar per value present (no CF1 / OF1 bar for the CLIP row), in metric order
    assert [round(b.get_width(), 6) for b in bars] == [7.9, 60.0, 68.2, 17.0, 67.7,
                                                       17.8, 65.5]


def test_demo_table_chart_from_markdown_reads_back_the_printed_rows(tmp_path, capsys):
    fmt = (lambda v: f'{v:.1f}' if v is not None else '—')
    lines = ['Some caption.', '', make_table.TABLE_HEADER, '|---|---|---|---|---|---|']
    lines += [f'| {label} | {fmt(m)} | {fmt(c)} | {fmt(o)} | {b} | {w:.0f} s ({cpu:.0f} s) |'
              for label, m, c, o, b, (w, cpu) in FAKE_ROWS]
    markdown = tmp_path / 'README.md'
    markdown.write_text('\n'.join(lines + ['', 'after the table']))
    rows = make_table.results_from_markdown(str(markdown))
    assert [r[:5] for r in rows] == [r[:5] for r in FAKE_ROWS]
    make_table.main(['--chart-from', str(markdown), '--png', str(tmp_path / 'chart.png')])
    _check_png(tmp_path / 'chart.png')
    with pytest.raises(ValueError, match='--chart-from needs --png'):
        make_table.main(['--chart-from', str(markdown)])


def test_test_tool_out_file_carries_the_zero_shot_subset_and_plots_its_zsl_map(tmp_path):
    """End to end: tools/test.py --out on the demo zero-shot config, then plot_ap: the
    unseen panel's mAP is the zsl/mAP the test printed."""
    from mlr_plugin.datasets.demo_world import DEMO_UNSEEN, generate_demo_world
    world = generate_demo_world(tmp_path / 'world', seed=4, num_train=1, num_val=1,
                                num_test=16)
    test = _load('tools/test.py', 'tool_test_for_plots')
    out = tmp_path / 'scores.json'
    loader_options = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader_options += [f'{loader}.dataset.data_root={world}', f'{loader}.num_workers=0',
                           f'{loader}.persistent_workers=False']
    metrics = test.main([str(REPO / 'configs/demo/zeroshot_handcrafted.py'), '--work-dir',
                         str(tmp_path / 'test'), '--out', str(out), '--cfg-options',
                         *loader_options])
    dumped = json.loads(out.read_text())
    assert dumped['class_subsets'] == dict(zsl=list(DEMO_UNSEEN))
    assert dumped['drop_empty_rows'] is False
    results = plot_ap.load_results(str(out))
    _, plotted = plot_ap.ap_bar_figure(results, plot_ap.class_sets(results))
    assert set(plotted) == {'seen', 'unseen'}
    assert np.nanmean(list(plotted['unseen'].values())) == pytest.approx(metrics['zsl/mAP'],
                                                                         abs=1e-3)
    assert plot_ap.main([str(out)])['ap'] == str(tmp_path / 'scores_plots' /
                                                  'ap_per_class.png')


def test_unseen_panel_re_fuses_mkt_streams_as_the_metric_does(tmp_path):
    """MKT's scores depend on the classes scored together: the dump keeps the raw
    streams and the unseen panel re-fuses them over the unseen classes, like zsl/mAP."""
    rng = np.random.RandomState(3)
    _, target = _fake_predictions(seed=3)
    target[target == -1] = 0
    streams = rng.rand(len(target), 2, len(CLASSES)).astype(np.float32) + 0.05
    streams += target[:, None, :] * 0.3
    scores = (streams / np.linalg.norm(streams, axis=-1, keepdims=True)).mean(1)
    samples = [dict(img_path=f'{i}.jpg', pred_score=torch.from_numpy(s),
                    gt_score=torch.from_numpy(t), pred_streams=torch.from_numpy(st))
               for i, (s, t, st) in enumerate(zip(scores, target, streams))]
    dump = DumpMultiLabelPredictions(str(tmp_path / 'mkt.json'), class_subsets=dict(zsl=UNSEEN))
    dump.dataset_meta = dict(classes=CLASSES)
    dump.process(None, samples)
    dump.compute_metrics(dump.results)
    results = plot_ap.load_results(str(tmp_path / 'mkt.json'))
    _, plotted = plot_ap.ap_bar_figure(results, plot_ap.class_sets(results))
    metric = MultiLabelMAP(class_subsets=dict(zsl=UNSEEN))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process(None, samples)
    metrics = metric.compute_metrics(metric.results)
    columns = [CLASSES.index(n) for n in UNSEEN]
    sub = streams[:, :, columns]
    alone = (sub / np.linalg.norm(sub, axis=-1, keepdims=True)).mean(1)
    for j, name in enumerate(UNSEEN):  # independent: sklearn on the re-fused columns
        expect = 100 * average_precision_score(target[:, columns[j]] == 1, alone[:, j])
        assert plotted['unseen'][name] == pytest.approx(expect, abs=1e-3)
    assert np.mean(list(plotted['unseen'].values())) == pytest.approx(metrics['zsl/mAP'],
                                                                      abs=1e-3)
