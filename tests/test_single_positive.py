"""Single-positive protocol: SinglePositiveLabel setups against plain loops of their rules,
AssumeNegative, the seeded held-out split, and the single-positive configs building
their datasets on tiny generated files."""
import json
import os
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS
from torch.utils.data import DataLoader, get_worker_info

from mlr_plugin.datasets import VOC_CLASSES
from mlr_plugin.datasets.holdout import HoldOut
from mlr_plugin.datasets.label_simulation import (AssumeNegative, SinglePositiveLabel,
                                                  build_label_simulations)

REPO = Path(__file__).parent.parent
SETUPS = ('uniform', 'largeloss', 'splc')


def random_labels(num_images=300, num_classes=9, seed=1, positive_rate=0.3):
    rng = np.random.RandomState(seed)
    labels = (rng.random_sample((num_images, num_classes)) < positive_rate)
    labels = labels.astype(np.float32)
    labels[[0, 7, 8]] = 0                 # images without a positive
    labels[3, 2] = labels[9, 3] = -1      # unknown entries from the source (VOC difficult)
    return labels


def reference_single_positive(labels, seed, setup):
    """The rules written out per image with plain Python lists."""
    rng = np.random.RandomState(seed)
    out = np.full(labels.shape, -1.0, dtype=np.float32)
    for i, row in enumerate(labels.tolist()):
        positives = [j for j, v in enumerate(row) if v == 1]
        if setup == 'largeloss':
            # shuffle the positives, then the others; observe the first positive
            order = rng.permutation(positives)
            rng.permutation([j for j, v in enumerate(row) if v != 1])
            chosen = int(order[0]) if positives else None
        else:
            u = rng.random_sample()
            chosen = positives[int(u * len(positives))] if positives else None
        if chosen is not None:
            out[i, chosen] = 1
    return out


@pytest.mark.parametrize('setup', SETUPS)
def test_single_positive_setups_match_their_plain_rules(setup):
    labels = random_labels()
    out = SinglePositiveLabel(seed=5, setup=setup)(labels, ())
    np.testing.assert_array_equal(out, reference_single_positive(labels, 5, setup))
    has_pos = (labels == 1).any(axis=1)
    assert ((out == 1).sum(axis=1) == has_pos).all()   # exactly one where there is one
    assert (out[~has_pos] == -1).all()                 # images without: all unknown
    assert (labels[out == 1] == 1).all()               # the kept one is a true positive
    assert ((out == 1) | (out == -1)).all()            # everything else unknown
    # deterministic by seed; another seed picks differently
    np.testing.assert_array_equal(out, SinglePositiveLabel(5, setup)(labels.copy(), ()))
    assert not np.array_equal(out, SinglePositiveLabel(6, setup)(labels, ()))
    # the input is not modified
    np.testing.assert_array_equal(labels, random_labels())


def test_single_positive_hand_worked_and_uniform():
    # seed 0: RandomState(0).random_sample(2) = 0.5488..., 0.7151...
    labels = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], dtype=np.float32)
    out = SinglePositiveLabel(seed=0)(labels, ())
    # row 0: positives [0, 2, 3], floor(0.5488 * 3) = 1 -> column 2;
    # row 1: positives [1, 2], floor(0.7152 * 2) = 1 -> column 2
    np.testing.assert_array_equal(out, [[-1, -1, 1, -1], [-1, -1, 1, -1]])
    # Each positive of a row is kept equally often (3000 rows with positives {1, 4, 6}).
    rows = np.zeros((3000, 8), dtype=np.float32)
    rows[:, [1, 4, 6]] = 1
    for setup in ('uniform', 'largeloss'):
        share = (SinglePositiveLabel(3, setup)(rows, ()) == 1).mean(axis=0)[[1, 4, 6]]
        sigma = np.sqrt(1 / 3 * 2 / 3 / 3000)
        assert np.abs(share - 1 / 3).max() < 4 * sigma, (setup, share)


def test_single_positive_options():
    assert repr(SinglePositiveLabel()) == "SinglePositiveLabel(seed=0, setup='uniform')"
    with pytest.raises(ValueError, match="setup must be one of .* got 'kim'"):
        SinglePositiveLabel(setup='kim')
    sims = build_label_simulations([dict(type='SinglePositiveLabel', setup='largeloss'),
                                    dict(type='AssumeNegative')])
    assert [type(s) for s in sims] == [SinglePositiveLabel, AssumeNegative]


def test_assume_negative_turns_exactly_the_unknowns_into_negatives():
    labels = np.array([[1, -1, 0, -1], [-1, -1, -1, -1], [0, 1, 1, 0]], dtype=np.float32)
    out = AssumeNegative()(labels, ())
    for i in range(labels.shape[0]):
        for j in range(labels.shape[1]):
            assert out[i, j] == (0 if labels[i, j] == -1 else labels[i, j])
    assert out.dtype == labels.dtype and labels[0, 1] == -1  # input untouched
    # after a single-positive simulation: one positive, every other entry negative
    single = SinglePositiveLabel(1)(random_labels(), ())
    both = AssumeNegative()(single, ())
    np.testing.assert_array_equal(both == 1, single == 1)
    assert ((both == 0) == (single == -1)).all()


# ------------------------------------------------------------------- held-out part
def test_holdout_parts_against_a_plain_permutation():
    n = 103
    order = np.random.RandomState(1200).permutation(n)
    num_val = int(round(0.2 * n))  # 21
    expected_val = sorted(order[n - num_val:].tolist())
    val = HoldOut('val', 0.2, 1200).keep_mask(n)
    train = HoldOut('train', 0.2, 1200).keep_mask(n)
    assert np.flatnonzero(val).tolist() == expected_val
    assert not (val & train).any() and (val | train).all()
    assert np.flatnonzero(HoldOut('val', 0.2, 7).keep_mask(n)).tolist() != expected_val
    for bad, message in [(dict(part='test'), "part must be 'train' or 'val'"),
                         (dict(part='val', fraction=1.0), r'fraction must be .* got 1\.0'),
                         (dict(part='val', seed=-1), 'seed must be a non-negative int')]:
        with pytest.raises(ValueError, match=message):
            HoldOut(**bad)


def write_generic(tmp_path, labels):
    classes = [f'class{j}' for j in range(labels.shape[1])]
    (tmp_path / 'classes.txt').write_text('\n'.join(classes) + '\n')
    records = [{'img_path': f'img{i}.jpg',
                'labels': [classes[j] for j in np.flatnonzero(row == 1)]}
               for i, row in enumerate(labels)]
    (tmp_path / 'ann.json').write_text(json.dumps(records))
    return dict(type='GenericMultiLabel', ann_file=str(tmp_path / 'ann.json'),
                classes_file=str(tmp_path / 'classes.txt'), check_images=False)


def img_paths(dataset):
    return [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]


def _collate_with_worker(batch):
    return [(item['img_path'], item['gt_score'], get_worker_info().id) for item in batch]


def test_dataset_simulates_the_whole_split_then_holds_out(tmp_path):
    labels = random_labels(num_images=60, num_classes=5)
    labels[labels == -1] = 0
    cfg = write_generic(tmp_path, labels)
    sim = dict(type='SinglePositiveLabel', setup='largeloss', seed=1200)
    train = DATASETS.build(dict(cfg, label_simulation=sim,
                                holdout=dict(part='train', fraction=0.2, seed=1200)))
    val = DATASETS.build(dict(cfg, holdout=dict(part='val', fraction=0.2, seed=1200)))
    keep = HoldOut('train', 0.2, 1200).keep_mask(60)
    whole = SinglePositiveLabel(1200, 'largeloss')(labels, ())
    np.testing.assert_array_equal(train.get_label_matrix(), whole[keep])
    np.testing.assert_array_equal(val.get_label_matrix(), labels[~keep])  # full labels
    paths = set(img_paths(train)) | set(img_paths(val))
    assert len(train) + len(val) == 60 and len(paths) == 60 and len(val) == 12
    assert "HoldOut(part='val', fraction=0.2, seed=1200)" in repr(val)
    # dataloader workers (lazy: each loads and draws by itself) see the same labels
    lazy = DATASETS.build(dict(cfg, label_simulation=sim, lazy_init=True,
                               holdout=dict(part='train', fraction=0.2, seed=1200)))
    loader = DataLoader(lazy, sampler=list(range(48)), batch_size=6, num_workers=2,
                        collate_fn=_collate_with_worker, multiprocessing_context='fork')
    got, workers = {}, set()
    for batch in loader:
        for path, gt, worker in batch:
            got[path] = gt
            workers.add(worker)
    assert workers == {0, 1}
    expected = dict(zip(img_paths(train), train.get_label_matrix()))
    assert got.keys() == expected.keys()
    for path in got:
        np.testing.assert_array_equal(got[path], expected[path])


# ------------------------------------------------------------- configs on tiny data
def _write_lines(path, lines):
    os.makedirs(osp.dirname(str(path)), exist_ok=True)
    Path(path).write_text(''.join(f'{line}\n' for line in lines))


def _positives(num_images, num_classes, seed):
    """Each image gets 1-3 distinct positive classes."""
    rng = np.random.RandomState(seed)
    return [sorted(rng.choice(num_classes, rng.randint(1, 4), replace=False).tolist())
            for _ in range(num_images)]


def write_coco(root):
    for split, n, seed in (('train2014', 15, 0), ('val2014', 6, 1)):
        pos = _positives(n, 3, seed)
        images = [{'id': i + 1, 'file_name': f'COCO_{split}_{i + 1:012d}.jpg'}
                  for i in range(n)]
        anns = [{'id': 100 * (i + 1) + c, 'image_id': i + 1, 'category_id': c + 1,
                 'iscrowd': 0, 'area': 4.0, 'bbox': [0, 0, 2, 2]}
                for i, cs in enumerate(pos) for c in cs]
        cats = [{'id': c + 1, 'name': name} for c, name in enumerate(('cat', 'dog', 'car'))]
        os.makedirs(root / 'annotations', exist_ok=True)
        (root / 'annotations' / f'instances_{split}.json').write_text(
            json.dumps({'images': images, 'annotations': anns, 'categories': cats}))
    return 15, 6


def write_voc12(root):
    counts = []
    for split, n, seed in (('train', 15, 2), ('val', 6, 3)):
        pos = _positives(n, 20, seed)
        ids = [f'2012_{split}_{i:04d}' for i in range(n + 1)]
        _write_lines(root / 'ImageSets' / 'Main' / f'{split}.txt', ids)
        os.makedirs(root / 'Annotations', exist_ok=True)
        for img_id, cs in zip(ids, pos + [[]]):
            objects = ''.join(f'<object><name>{VOC_CLASSES[c]}</name>'
                              f'<difficult>0</difficult></object>' for c in cs)
            if img_id == ids[-1]:  # only a difficult object: no positive, dropped
                objects = '<object><name>dog</name><difficult>1</difficult></object>'
            (root / 'Annotations' / f'{img_id}.xml').write_text(
                f'<annotation>{objects}</annotation>')
        counts.append(n)
    return tuple(counts)


def write_nuswide(root):
    concepts = ['sky', 'water', 'lake']
    _write_lines(root / 'Concepts81.txt', concepts)
    for split, n, seed in (('Train', 15, 4), ('Test', 6, 5)):
        pos = _positives(n, 3, seed)
        _write_lines(root / 'ImageList' / f'{split}Imagelist.txt',
                     [f'actor\\{i:04d}_{split}.jpg' for i in range(n + 1)])
        for c, name in enumerate(concepts):  # the last image has no concept: dropped
            _write_lines(root / 'Groundtruth' / 'TrainTestLabels' /
                         f'Labels_{name}_{split}.txt',
                         [int(c in cs) for cs in pos] + [0])
    return 15, 6


def write_cub(root):
    split = [1] * 15 + [0] * 6
    pos = _positives(21, 4, 6)
    _write_lines(root / 'images.txt', [f'{i + 1} 001.Bird/Bird_{i + 1}.jpg'
                                       for i in range(21)])
    _write_lines(root / 'train_test_split.txt', [f'{i + 1} {t}' for i, t in enumerate(split)])
    _write_lines(root / 'attributes' / 'attributes.txt',
                 [f'{j + 1} has_part_{j}::value_{j}' for j in range(4)])
    _write_lines(root / 'attributes' / 'image_attribute_labels.txt',
                 [f'{i + 1} {j + 1} {int(j in cs)} 3 1.5'
                  for i, cs in enumerate(pos) for j in range(4)])
    return 15, 6


DATASET_FILES = {'coco': write_coco, 'voc12': write_voc12, 'nuswide': write_nuswide,
                 'cub': write_cub}
SP_CONFIGS = sorted(p for p in (REPO / 'configs' / 'trm_ml').glob('*_single_positive_*.py'))


def build_loader_datasets(cfg, root):
    out = {}
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds_cfg = cfg[key].dataset.to_dict()
        ds_cfg.update(data_root=str(root), check_images=False, serialize_data=False)
        out[key.split('_')[0]] = DATASETS.build(ds_cfg)
    return out


def test_every_dataset_and_setup_has_a_config():
    names = {p.stem for p in SP_CONFIGS}
    assert names == {f'{ds}_single_positive_{setup}' for ds in DATASET_FILES
                     for setup in ('largeloss', 'splc')}


@pytest.mark.parametrize('path', SP_CONFIGS, ids=lambda p: p.stem)
def test_single_positive_configs_build_their_datasets(tmp_path, path):
    dataset, _, _, setup = path.stem.split('_')
    num_train, num_test = DATASET_FILES[dataset](tmp_path)
    cfg = Config.fromfile(str(path))
    ds = build_loader_datasets(cfg, tmp_path)
    assert cfg.model.backbone.model_name == 'RN50'
    assert cfg.model.backbone.image_size == 448
    assert cfg.train_dataloader.batch_size == 128 and cfg.train_cfg.max_epochs == 40
    assert cfg.model.unknown_as_negative is True  # only positives are known
    assert cfg.model.prompt_learner.num_classes == {'coco': 80, 'voc12': 20,
                                                    'nuswide': 81, 'cub': 312}[dataset]

    train = ds['train'].get_label_matrix()
    assert ((train == 1).sum(axis=1) == 1).all()          # one known positive per image
    assert ((train == 1) | (train == -1)).all()           # all else unknown
    for key in ('val', 'test'):
        assert (ds[key].get_label_matrix() != -1).all()   # evaluation: full labels
        assert ((ds[key].get_label_matrix() == 1).sum(axis=1) >= 1).all()
    assert len(ds['test']) == num_test
    train_paths, val_paths = set(img_paths(ds['train'])), set(img_paths(ds['val']))
    if setup == 'largeloss':
        assert cfg.train_dataloader.dataset.label_simulation.setup == 'largeloss'
        assert len(ds['val']) == round(0.2 * num_train)
        assert len(ds['train']) + len(ds['val']) == num_train
        assert not train_paths & val_paths                 # val carved out of train
        assert cfg.default_hooks.checkpoint.save_best == 'mAP'  # on held-out val
    else:
        assert cfg.train_dataloader.dataset.label_simulation.setup == 'splc'
        assert len(ds['train']) == num_train               # the whole training split
        assert val_paths == set(img_paths(ds['test']))
        assert cfg.default_hooks.checkpoint.save_best is None  # no pick on test


@pytest.mark.parametrize('base, writer, split_root', [
    ('voc07.py', write_voc12, 'VOC2007'), ('voc12.py', write_voc12, 'VOC2012'),
    ('cub200.py', write_cub, 'CUB_200_2011')])
def test_plain_dataset_bases_build(tmp_path, base, writer, split_root):
    """The VOC bases name their split (`split='trainval'` / `'train'`), which
    VOCMultiLabel did not accept before (TypeError on every VOC config)."""
    root = tmp_path / split_root
    if base == 'voc07.py':  # VOC 2007 split names over the same tiny files
        writer(root)
        for old, new in (('train', 'trainval'), ('val', 'test')):
            os.replace(root / 'ImageSets' / 'Main' / f'{old}.txt',
                       root / 'ImageSets' / 'Main' / f'{new}.txt')
    else:
        writer(root)
    cfg = Config.fromfile(str(REPO / 'configs' / '_base_' / 'datasets' / base))
    ds = build_loader_datasets(cfg, root)
    assert len(ds['train']) == 15 + (base != 'cub200.py')  # VOC: + the difficult-only
    assert len(ds['test']) == 6 + (base != 'cub200.py')
    assert (ds['train'].get_label_matrix() == 1).any()
    with pytest.raises(ValueError, match='give ann_file or split, not both'):
        DATASETS.build(dict(type='VOCMultiLabel', ann_file='a.txt', split='train'))
