"""Open Images (real CSV layout, seen/unseen split, CSR labels) and the MKT protocol base
config (configs/_base_/datasets/openimages_mkt.py) with P/R/F1@10,20."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS, METRICS

from mlr_plugin.datasets import OpenImagesMultiLabel, SparseLabels
from mlr_plugin.datasets.open_images import read_class_descriptions

REPO = Path(__file__).parent.parent
HEADER = 'ImageID,Source,LabelName,Confidence\n'


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _dataset(tmp_path, rows, header=True, desc_header=False, split=True, **kwargs):
    """Tiny files: classes /m/a (Apple), /m/b (Bat), /m/c ("Cat, house"), /m/d (Bat),
    /m/x (described but in no list). Seen: a, b; unseen: c, d."""
    desc = ('LabelName,DisplayName\n' if desc_header else '') + \
        '/m/a,Apple\n/m/b,Bat\n/m/c,"Cat, house"\n/m/d,Bat\n/m/x,Other\n'
    files = dict(class_desc_file=_write(tmp_path / 'desc.csv', desc))
    if split:
        files.update(seen_classes_file=_write(tmp_path / 'seen.txt', '/m/a\n/m/b\n'),
                     unseen_classes_file=_write(tmp_path / 'unseen.txt', '/m/c\n/m/d\n'))
    ann = _write(tmp_path / 'labels.csv', (HEADER if header else '') + rows)
    kwargs.setdefault('check_images', False)
    return OpenImagesMultiLabel(data_root=str(tmp_path), ann_file=ann,
                                data_prefix=dict(img_path='imgs'),
                                **files, **kwargs)


ROWS = ('img2,verification,/m/a,1\n'
        'img2,verification,/m/c,0\n'
        'img1,verification,/m/b,0\n'
        'img1,crowdsource-verification,/m/d,1\n'
        'img3,verification,/m/x,1\n')


def _labels(ds):
    return {ds.get_data_info(i)['img_id']: ds.get_data_info(i)['gt_score'].tolist()
            for i in range(len(ds))}


@pytest.mark.parametrize('header', [True, False])
def test_confidence_one_zero_and_missing_unknown(tmp_path, header):
    ds = _dataset(tmp_path, ROWS, header=header)
    # images sorted by ImageID; columns seen (a, b) then unseen (c, d); duplicate
    # display names get their MID
    assert ds.metainfo['classes'] == ('Apple', 'Bat (/m/b)', 'Cat, house', 'Bat (/m/d)')
    assert ds.metainfo['label_names'] == ('/m/a', '/m/b', '/m/c', '/m/d')
    assert ds.metainfo['class_subsets'] == dict(seen=('Apple', 'Bat (/m/b)'),
                                                unseen=('Cat, house', 'Bat (/m/d)'))
    assert _labels(ds) == {'img1': [-1, 0, -1, 1], 'img2': [1, -1, 0, -1],
                           'img3': [-1, -1, -1, -1]}  # /m/x is outside the class set
    info = ds.get_data_info(-1)
    assert info['img_path'] == str(tmp_path / 'imgs' / 'img3.jpg')
    assert info['sample_idx'] == 2
    assert ds.get_cat_ids(0) == [3]
    np.testing.assert_array_equal(ds.get_label_matrix(), np.array(list(_labels(ds).values())))


def test_class_descriptions_header_optional(tmp_path):
    plain = read_class_descriptions(_write(tmp_path / 'a.csv', '/m/a,Apple\n/m/c,"C, d"\n'))
    headed = read_class_descriptions(
        _write(tmp_path / 'b.csv', 'LabelName,DisplayName\n/m/a,Apple\n/m/c,"C, d"\n'))
    bom = read_class_descriptions(
        _write(tmp_path / 'c.csv', '\ufeffLabelName,DisplayName\r\n/m/a,Apple\r\n/m/c,"C, d"\r\n'))
    assert plain == headed == bom == {'/m/a': 'Apple', '/m/c': 'C, d'}
    assert _labels(_dataset(tmp_path, ROWS, desc_header=True)) == _labels(_dataset(tmp_path, ROWS))


def test_without_split_files_all_described_classes(tmp_path):
    ds = _dataset(tmp_path, ROWS, split=False)
    assert ds.metainfo['label_names'] == ('/m/a', '/m/b', '/m/c', '/m/d', '/m/x')
    assert 'class_subsets' not in ds.metainfo
    assert _labels(ds)['img3'] == [-1, -1, -1, -1, 1]


def test_duplicates_collapse_and_conflicts_keep_the_positive(tmp_path):
    rows = ROWS + ('img1,verification,/m/b,0\n'     # exact duplicate
                   'img2,verification,/m/c,1\n'     # conflicts with the 0 above
                   'img1,verification,/m/a,0\n')    # ImageID again after other images
    ds = _dataset(tmp_path, rows)
    assert _labels(ds) == {'img1': [0, 0, -1, 1], 'img2': [1, -1, 1, -1],
                           'img3': [-1, -1, -1, -1]}
    assert ds.get_sparse_labels().nnz == 5


@pytest.mark.parametrize('bad_row, message', [
    ('img4,verification,/m/zzz,1', r"labels\.csv: line 7: LabelName '/m/zzz' is not in"),
    ('img4,verification,/m/a,0.7', r"labels\.csv: line 7: Confidence '0\.7' is not 0 or 1"),
    ('img4,verification', r'labels\.csv: line 7: expected ImageID'),
])
def test_bad_rows_one_line_error_with_file_and_line(tmp_path, bad_row, message):
    with pytest.raises(ValueError, match=message) as err:
        _dataset(tmp_path, ROWS + bad_row + '\n')
    assert '\n' not in str(err.value)


def test_label_cache_is_reused_and_rebuilt_when_stale(tmp_path):
    first = _dataset(tmp_path, ROWS, label_cache='cache/labels.npz')
    cache = tmp_path / 'cache' / 'labels.npz'
    assert cache.is_file()
    # a reused cache: the CSV is not read again (a broken CSV with the old size and
    # mtime still loads from the cache)
    stat = (tmp_path / 'labels.csv').stat()
    text = (tmp_path / 'labels.csv').read_text()
    (tmp_path / 'labels.csv').write_text(text.replace('/m/a,1', '/m/?,1'))
    os.utime(tmp_path / 'labels.csv', ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = OpenImagesMultiLabel(data_root=str(tmp_path), ann_file='labels.csv',
                                 class_desc_file='desc.csv', seen_classes_file='seen.txt',
                                 unseen_classes_file='unseen.txt', check_images=False,
                                 label_cache='cache/labels.npz')
    assert _labels(again) == _labels(first)
    # another class list or a changed CSV: parsed again, cache rewritten
    seen = _dataset(tmp_path, ROWS, class_subset='seen', label_cache='cache/labels.npz')
    assert _labels(seen)['img2'] == [1, -1]
    changed = _dataset(tmp_path, ROWS + 'img4,verification,/m/a,1\n',
                       label_cache='cache/labels.npz')
    assert _labels(changed)['img4'] == [1, -1, -1, -1]
    cache.write_bytes(b'not a zip')
    assert _labels(_dataset(tmp_path, ROWS, label_cache='cache/labels.npz')) == _labels(first)


def test_seen_unseen_subsets_and_filters(tmp_path):
    seen = _dataset(tmp_path, ROWS, class_subset='seen')
    assert seen.metainfo['label_names'] == ('/m/a', '/m/b')
    assert _labels(seen) == {'img1': [-1, 0], 'img2': [1, -1], 'img3': [-1, -1]}
    unseen = _dataset(tmp_path, ROWS, class_subset='unseen', drop_no_positive=True)
    assert _labels(unseen) == {'img1': [-1, 1]}
    known = _dataset(tmp_path, ROWS, class_subset='seen', drop_empty=True)
    assert list(_labels(known)) == ['img1', 'img2']
    parts = [_dataset(tmp_path, ROWS, holdout=dict(part=part, fraction=0.34, seed=3))
             for part in ('train', 'val')]
    assert sorted([*_labels(parts[0]), *_labels(parts[1])]) == ['img1', 'img2', 'img3']
    assert len(parts[1]) == 1
    picked = _dataset(tmp_path, ROWS, indices=[2, 0])
    assert list(_labels(picked)) == ['img3', 'img1']
    assert list(_labels(_dataset(tmp_path, ROWS, indices=2))) == ['img1', 'img2']
    full = _dataset(tmp_path, ROWS)
    assert list(_labels(full.get_subset(-1))) == ['img3'] and len(full) == 3
    full.get_subset_([1])
    assert _labels(full) == {'img2': [1, -1, 0, -1]}
    (tmp_path / 'imgs').mkdir()
    cv2.imwrite(str(tmp_path / 'imgs' / 'img2.jpg'), np.zeros((8, 8, 3), np.uint8))
    present = _dataset(tmp_path, ROWS, skip_missing_images=True, check_images='header')
    assert list(_labels(present)) == ['img2']
    with pytest.raises(FileNotFoundError, match='img1.jpg'):
        _dataset(tmp_path, ROWS, check_images='exists')
    with pytest.raises(ValueError, match='needs seen_classes_file'):
        _dataset(tmp_path, ROWS, split=False, class_subset='seen')
    with pytest.raises(ValueError, match='does not support label_simulation'):
        _dataset(tmp_path, ROWS, label_simulation=dict(type='PartialLabels', known_ratio=.5))
    with pytest.raises(ValueError, match="unseen.txt: line 1: LabelName '/m/q' is not in"):
        _write(tmp_path / 'unseen.txt', '/m/q\n')
        OpenImagesMultiLabel(ann_file=str(tmp_path / 'labels.csv'),
                             class_desc_file=str(tmp_path / 'desc.csv'),
                             seen_classes_file=str(tmp_path / 'seen.txt'),
                             unseen_classes_file=str(tmp_path / 'unseen.txt'),
                             check_images=False)


def test_sparse_labels_against_a_plain_dict():
    rng = np.random.RandomState(0)
    rows, cols, vals = rng.randint(0, 50, 400), rng.randint(0, 30, 400), rng.randint(0, 2, 400)
    plain = {}
    for r, c, v in zip(rows, cols, vals):
        plain[r, c] = max(plain.get((r, c), 0), v)
    labels, conflicts = SparseLabels.from_entries(rows, cols, vals.astype(np.int8), 50, 30)
    dense = np.full((50, 30), -1.0, dtype=np.float32)
    for (r, c), v in plain.items():
        dense[r, c] = v
    np.testing.assert_array_equal(labels.to_dense(), dense)
    assert conflicts == sum(len({v for r2, c2, v in zip(rows, cols, vals) if (r2, c2) == key}) > 1
                            for key in plain)
    keep = rng.permutation(50)[:20]
    np.testing.assert_array_equal(labels.select_rows(keep).to_dense(), dense[keep])
    np.testing.assert_array_equal(labels.has_positive(), (dense == 1).any(axis=1))
    np.testing.assert_array_equal(labels.has_known(), (dense != -1).any(axis=1))
    for i in range(50):
        np.testing.assert_array_equal(labels.row(i), dense[i])
        assert labels.positives(i).tolist() == np.flatnonzero(dense[i] == 1).tolist()


def _plain_prf_at_k(scores, target, k):
    """P/R/F1@K (%) with a loop over images."""
    tp = positives = 0
    for s, t in zip(scores, target):
        top = sorted(range(len(s)), key=lambda c: (-s[c], c))[:k]
        tp += sum(t[c] == 1 for c in top)
        positives += sum(t == 1)
    p, r = tp / (len(scores) * k), tp / positives
    return 100 * p, 100 * r, 100 * (2 * p * r / (p + r) if p + r else 0.0)


def test_base_config_builds_yields_images_and_scores_k10_k20(tmp_path):
    """openimages_mkt.py with data overrides on tiny files: the pipeline yields 224 px
    images + labels, and its evaluator gives GZSL / ZSL P/R/F1@10,20 equal to a loop."""
    rng = np.random.RandomState(1)
    mids = [f'/m/{i:03d}' for i in range(55)]  # 30 seen, 25 unseen
    root = tmp_path / 'oi'
    _write(root / 'desc.csv', ''.join(f'{m},name {i}\n' for i, m in enumerate(mids)))
    _write(root / 'seen.txt', '\n'.join(mids[:30]))
    _write(root / 'unseen.txt', '\n'.join(mids[30:]))
    for split, n in (('train', 6), ('test', 40)):
        lines = [HEADER]
        for i in range(n):
            for c in rng.choice(55, 8, replace=False):
                lines.append(f'{split}{i:02d},verification,{mids[c]},{int(rng.rand() < .5)}\n')
            if split == 'train':
                (root / split).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / split / f'{split}{i:02d}.jpg'),
                            rng.randint(0, 255, (40, 30, 3)).astype(np.uint8))
        _write(root / f'{split}.csv', ''.join(lines))

    cfg = Config.fromfile(str(REPO / 'configs/_base_/datasets/openimages_mkt.py'))
    # a text unseen list replaces the config's pickle + index pair
    files = dict(data_root=str(root), class_desc_file='desc.csv',
                 seen_classes_file='seen.txt', unseen_classes_file='unseen.txt',
                 unseen_index_file=None)
    init_default_scope('mmpretrain')
    train = DATASETS.build(dict(cfg.train_dataloader.dataset, ann_file='train.csv', **files))
    assert len(train.metainfo['classes']) == 30
    packed = train[0]
    assert tuple(packed['inputs'].shape) == (3, 224, 224)
    assert packed['data_samples'].gt_score.shape == (30, )
    assert (packed['data_samples'].gt_score == 1).any()  # drop_no_positive=True

    test = DATASETS.build(dict(cfg.test_dataloader.dataset, ann_file='test.csv',
                               check_images=False, **files))
    assert len(test.metainfo['classes']) == 55 and len(test) == 40
    metric = METRICS.build(cfg.test_evaluator)
    metric.dataset_meta = test.metainfo
    target = test.get_label_matrix()
    scores = rng.rand(*target.shape).astype(np.float32)
    metric.process({}, [dict(pred_score=torch.from_numpy(s), gt_score=torch.from_numpy(t))
                        for s, t in zip(scores, target)])
    result = metric.compute_metrics(metric.results)
    for prefix, columns in (('', slice(None)), ('zsl/', slice(30, None))):
        sub_scores, sub_target = scores[:, columns], target[:, columns]
        keep = (sub_target == 1).any(axis=1)  # drop_empty_rows
        for k in (10, 20):
            p, r, f1 = _plain_prf_at_k(sub_scores[keep], sub_target[keep], k)
            assert result[f'{prefix}P@{k}'] == pytest.approx(p)
            assert result[f'{prefix}R@{k}'] == pytest.approx(r)
            assert result[f'{prefix}F1@{k}'] == pytest.approx(f1)


def test_metric_dataset_subset_errors():
    init_default_scope('mmpretrain')
    metric = METRICS.build(dict(type='TopKPRF', ks=(1, ), class_subsets=dict(zsl='dataset:x')))
    with pytest.raises(ValueError, match="defines no class subset 'x'"):
        metric.dataset_meta = dict(classes=('a', 'b'), class_subsets=dict(unseen=('b', )))
    with pytest.raises(ValueError, match='names no subset'):
        METRICS.build(dict(type='TopKPRF', class_subsets=dict(zsl='dataset:')))
