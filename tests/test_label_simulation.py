"""Label simulations: statistics, determinism (instances, workers), mask files."""
import json
import os

import numpy as np
import pytest
import torch
from mmpretrain.registry import DATASETS
from torch.utils.data import DataLoader, get_worker_info

from mlr_plugin.datasets.label_simulation import (LABEL_SIMULATIONS, HideClasses,
                                                  PartialLabels, SinglePositiveLabel,
                                                  build_label_simulations)


def random_labels(num_images=200, num_classes=50, seed=1, positive_rate=0.2):
    rng = np.random.RandomState(seed)
    return (rng.random_sample((num_images, num_classes)) < positive_rate).astype(np.float32)


# ------------------------------------------------------------------ PartialLabels
@pytest.mark.parametrize('p', [0.1, 0.5, 0.9])
def test_partial_kept_fraction_within_sampling_error(p):
    labels = random_labels()
    out = PartialLabels(p, seed=3)(labels, ())
    kept = out != -1
    n = labels.size
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - p) < 4 * sigma
    # Positives and negatives alike: each group is kept at rate p too.
    for group in (labels == 1, labels == 0):
        sigma_g = np.sqrt(p * (1 - p) / group.sum())
        assert abs(kept[group].mean() - p) < 4 * sigma_g
    # Kept entries are untouched, dropped ones are -1.
    np.testing.assert_array_equal(out[kept], labels[kept])
    assert set(np.unique(out[~kept])) == {-1.0}


def test_partial_mask_matches_plain_randomstate_and_chunking():
    labels = random_labels(num_images=50, num_classes=7)
    sim = PartialLabels(0.3, seed=11)
    sim.chunk_rows = 8  # several chunks: the stream must equal one full draw
    expected = np.random.RandomState(11).random_sample((50, 7)) < 0.3
    np.testing.assert_array_equal(sim(labels, ()) != -1, expected)
    assert (PartialLabels(0.3, seed=12)(labels, ()) != -1).tolist() != expected.tolist()
    assert (PartialLabels(1.0)(labels, ()) == labels).all()


@pytest.mark.parametrize('p', [0, 0.0, -0.1, 1.5])
def test_partial_ratio_out_of_range(p):
    with pytest.raises(ValueError, match=str(p)):
        PartialLabels(p)
    with pytest.raises(ValueError, match='known_ratio'):
        PartialLabels()


@pytest.mark.parametrize('ext', ['.npy', '.pt'])
def test_mask_save_load_round_trip(tmp_path, ext):
    labels = random_labels(num_images=30, num_classes=5)
    path = str(tmp_path / 'masks' / f'mask{ext}')
    saved = PartialLabels(0.4, seed=5, save_mask=path)(labels, ())
    assert os.listdir(tmp_path / 'masks') == [f'mask{ext}']  # no tmp file left behind
    loaded = PartialLabels(mask_file=path)(labels, ())
    np.testing.assert_array_equal(loaded, saved)


def test_dualcoop_mask_formats(tmp_path):
    labels = random_labels(num_images=20, num_classes=6)
    keep = np.random.RandomState(0).random_sample((20, 6)) < 0.5
    expected = np.where(keep, labels, -1)
    # DualCoOp: int64 0/1 keep-mask with identical copies stacked on dim 1 (COCO: 3).
    mask = torch.from_numpy(keep.astype(np.int64))
    torch.save(torch.stack([mask, mask, mask], dim=1), tmp_path / 'partial_label_0.50.pt')
    out = PartialLabels(mask_file=str(tmp_path / 'partial_label_0.50.pt'))(labels, ())
    np.testing.assert_array_equal(out, expected)
    # A {1, 0, -1} partial label tensor: keep = value != -1.
    torch.save(torch.from_numpy(expected), tmp_path / 'partial.pt')
    out = PartialLabels(mask_file=str(tmp_path / 'partial.pt'))(labels, ())
    np.testing.assert_array_equal(out, expected)
    # Copies that differ are not a DualCoOp mask.
    torch.save(torch.stack([mask, 1 - mask], dim=1), tmp_path / 'odd.pt')
    with pytest.raises(ValueError, match=r'odd\.pt'):
        PartialLabels(mask_file=str(tmp_path / 'odd.pt'))(labels, ())


def test_mask_wrong_shape(tmp_path):
    np.save(tmp_path / 'mask.npy', np.ones((10, 6), dtype=bool))
    with pytest.raises(ValueError, match=r'mask\.npy.*\(10, 6\).*\(20, 6\)'):
        PartialLabels(mask_file=str(tmp_path / 'mask.npy'))(random_labels(20, 6), ())
    with pytest.raises(FileNotFoundError, match=r'nope\.npy'):
        PartialLabels(mask_file=str(tmp_path / 'nope.npy'))(random_labels(20, 6), ())


# ------------------------------------------------------------ SinglePositiveLabel
def test_single_positive_against_plain_loop():
    labels = random_labels(num_images=300, num_classes=8, positive_rate=0.3)
    labels[:5] = 0  # images without positives
    out = SinglePositiveLabel(seed=4)(labels, ())
    # Plain reimplementation: the same per-image uniform draws, loop over images.
    draws = np.random.RandomState(4).random_sample(len(labels))
    for i, row in enumerate(labels):
        positives = [j for j in range(8) if row[j] == 1]
        expected = [-1.0] * 8
        if positives:
            expected[positives[int(draws[i] * len(positives))]] = 1.0
        assert out[i].tolist() == expected
    has_pos = (labels == 1).any(axis=1)
    assert ((out == 1).sum(axis=1) == has_pos).all()       # exactly one where possible
    assert (labels[out == 1] == 1).all()                   # and it is a true positive
    assert ((out == 1) | (out == -1)).all()                # everything else unknown
    # Every class that is ever positive gets picked sometimes (not always the first).
    assert set(np.flatnonzero((out == 1).any(axis=0))) == set(range(8))


# ---------------------------------------------------------------------- HideClasses
def test_hide_classes():
    labels = random_labels(num_images=10, num_classes=4)
    out = HideClasses(classes=['b', 'd'])(labels, ('a', 'b', 'c', 'd'))
    assert (out[:, [1, 3]] == -1).all()
    np.testing.assert_array_equal(out[:, [0, 2]], labels[:, [0, 2]])
    with pytest.raises(ValueError, match="'zebra'"):
        HideClasses(classes=['zebra'])(labels, ('a', 'b', 'c', 'd'))


def test_registry_build():
    sims = build_label_simulations([dict(type='HideClasses', classes=['a']),
                                    dict(type='PartialLabels', known_ratio=0.5)])
    assert [type(s) for s in sims] == [HideClasses, PartialLabels]
    assert build_label_simulations(None) == []
    assert isinstance(build_label_simulations(dict(type='SinglePositiveLabel')
                                              )[0], SinglePositiveLabel)
    assert LABEL_SIMULATIONS.get('PartialLabels') is PartialLabels
    with pytest.raises(ValueError, match='NoSuchSim'):
        build_label_simulations(dict(type='NoSuchSim'))


# --------------------------------------------------------- through a real dataset
def write_generic(tmp_path, num_images=40, num_classes=6):
    labels = random_labels(num_images, num_classes, positive_rate=0.4)
    classes = [f'class{j}' for j in range(num_classes)]
    (tmp_path / 'classes.txt').write_text('\n'.join(classes) + '\n')
    records = [{'img_path': f'img{i}.jpg',
                'labels': [classes[j] for j in np.flatnonzero(row)]}
               for i, row in enumerate(labels)]
    (tmp_path / 'ann.json').write_text(json.dumps(records))
    return labels, dict(type='GenericMultiLabel', ann_file=str(tmp_path / 'ann.json'),
                        classes_file=str(tmp_path / 'classes.txt'),
                        check_images=False)  # labels only: no image files


def test_dataset_partial_labels_deterministic(tmp_path):
    labels, cfg = write_generic(tmp_path)
    sim = [dict(type='HideClasses', classes=['class0']),
           dict(type='PartialLabels', known_ratio=0.5, seed=0)]
    first = DATASETS.build(dict(label_simulation=sim, **cfg)).get_label_matrix()
    second = DATASETS.build(dict(label_simulation=sim, **cfg)).get_label_matrix()
    np.testing.assert_array_equal(first, second)
    # Same as applying the simulations to the plain matrix, in order.
    expected = PartialLabels(0.5, seed=0)(HideClasses(['class0'])(
        labels, tuple(f'class{j}' for j in range(6))), ())
    np.testing.assert_array_equal(first, expected)


def _collate_with_worker(batch):
    worker = get_worker_info().id
    return [(item['sample_idx'], item['gt_score'], worker) for item in batch]


def test_partial_mask_identical_across_workers(tmp_path):
    labels, cfg = write_generic(tmp_path)
    sim = dict(type='PartialLabels', known_ratio=0.3, seed=7)
    expected = DATASETS.build(dict(label_simulation=sim, **cfg)).get_label_matrix()
    # lazy_init: each worker loads the annotations and draws the mask by itself.
    lazy = DATASETS.build(dict(label_simulation=sim, lazy_init=True, **cfg))
    loader = DataLoader(lazy, sampler=list(range(len(labels))), batch_size=5,
                        num_workers=2, collate_fn=_collate_with_worker,
                        multiprocessing_context='fork')
    seen, workers = {}, set()
    for batch in loader:
        for idx, gt_score, worker in batch:
            seen[idx] = gt_score
            workers.add(worker)
    assert workers == {0, 1}
    assert not lazy._fully_initialized  # the parent never loaded: workers did
    got = np.stack([seen[i] for i in range(len(labels))])
    np.testing.assert_array_equal(got, expected)
    assert (got == -1).any() and (got != -1).any()


@pytest.mark.parametrize('cfg, message', [
    (dict(type='PartialLabels', known_ratio='abc'),
     "PartialLabels: known_ratio must be a number in (0, 1], got 'abc'"),
    (dict(type='PartialLabels', known_ratio='0.3'),
     "PartialLabels: known_ratio must be a number in (0, 1], got '0.3'"),
    (dict(type='PartialLabels', known_ratio=True),
     'PartialLabels: known_ratio must be a number in (0, 1], got True'),
    (dict(type='PartialLabels', known_ratio=0.3, seed='x'),
     "PartialLabels: seed must be a non-negative int, got 'x'"),
    (dict(type='PartialLabels', known_ratio=0.3, seed=1.5),
     'PartialLabels: seed must be a non-negative int, got 1.5'),
    (dict(type='PartialLabels', mask_file=3),
     'PartialLabels: mask_file must be a file path or None, got 3'),
    (dict(type='SinglePositiveLabel', seed=None),
     'SinglePositiveLabel: seed must be a non-negative int, got None'),
    (dict(type='HideClasses', classes=[]),
     'HideClasses: classes must be a split name or a non-empty list of class names, got []'),
    (dict(type='HideClasses', classes=[1, 2]),
     'HideClasses: classes must be a split name or a non-empty list'),
])
def test_bad_option_values_name_option_and_value(cfg, message):
    with pytest.raises(ValueError) as info:
        build_label_simulations(cfg)
    assert str(info.value).startswith(message) and '\n' not in str(info.value)


def test_misspelt_option_names_the_simulation():
    with pytest.raises(TypeError, match="PartialLabels: .*'known_ratoi'"):
        build_label_simulations(dict(type='PartialLabels', known_ratoi=0.3))
