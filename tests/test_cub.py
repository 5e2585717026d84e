"""CUB-200-2011 attributes on tiny files written in the real release format (hand-checked
labels, splits, names; one-line errors naming the file and line)."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmpretrain.registry import DATASETS

from mlr_plugin.datasets.cub import readable_attribute_name

ATTRIBUTES = ['has_bill_shape::curved_(up_or_down)', 'has_wing_color::blue',
              'has_size::large_(16_-_32_in)', 'has_shape::duck-like']
# images.txt: id, path; train_test_split.txt: id, is_train. Ids deliberately not 1..N
# in file order for the split (3 is a test image between train images).
IMAGES = [(1, '001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg', 1),
          (2, '001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg', 1),
          (3, '002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg', 0),
          (4, '002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg', 1),
          (5, '003.Sooty_Albatross/Sooty_Albatross_0001_1071.jpg', 0)]
# (image_id, attribute_id) -> (is_present, certainty_id)
LABELS = {
    (1, 1): (1, 4), (1, 2): (0, 3), (1, 3): (1, 2), (1, 4): (0, 1),
    (2, 1): (0, 4), (2, 2): (1, 4), (2, 3): (0, 2), (2, 4): (1, 3),
    (3, 1): (1, 1), (3, 2): (1, 4), (3, 3): (0, 4), (3, 4): (0, 3),
    (4, 1): (0, 2), (4, 2): (0, 4), (4, 3): (0, 4), (4, 4): (1, 4),
    (5, 1): (0, 3), (5, 2): (0, 1), (5, 3): (1, 3), (5, 4): (1, 2),
}


def write_lines(path, lines):
    os.makedirs(osp.dirname(str(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(f'{line}\n' for line in lines))


def label_lines(labels=LABELS):
    lines = []
    for (img, att), (present, certainty) in labels.items():
        line = f'{img} {att} {present} {certainty} {img * 1.5 + att:.3f}'
        if (img, att) == (2, 3):
            line += ' 0'  # a few real lines carry an extra field
        lines.append(line)
    return lines


def write_cub(tmp_path, labels_lines=None, names_at='outside', images=True):
    """The release layout: tmp/attributes.txt beside tmp/CUB_200_2011/."""
    root = tmp_path / 'CUB_200_2011'
    write_lines(root / 'images.txt', [f'{i} {p}' for i, p, _ in IMAGES])
    write_lines(root / 'train_test_split.txt', [f'{i} {t}' for i, _, t in IMAGES])
    names = [f'{j} {name}' for j, name in enumerate(ATTRIBUTES, 1)]
    if names_at == 'outside':
        write_lines(tmp_path / 'attributes.txt', names)
    else:
        write_lines(root / 'attributes' / 'attributes.txt', names)
    write_lines(root / 'attributes' / 'image_attribute_labels.txt',
                label_lines() if labels_lines is None else labels_lines)
    if images:
        for i, path, _ in IMAGES:
            full = root / 'images' / path
            os.makedirs(full.parent, exist_ok=True)
            img = np.random.RandomState(i).randint(0, 255, (10, 14, 3), dtype=np.uint8)
            assert cv2.imwrite(str(full), img)
    return root


def build(root, **kwargs):
    kwargs.setdefault('check_images', False)
    return DATASETS.build(dict(type='CUB200Attributes', data_root=str(root),
                               serialize_data=False, **kwargs))


def expected_matrix(ids, min_certainty=1):
    out = np.zeros((len(ids), len(ATTRIBUTES)), dtype=np.float32)
    for r, img in enumerate(ids):
        for a in range(1, len(ATTRIBUTES) + 1):
            present, certainty = LABELS[(img, a)]
            out[r, a - 1] = -1 if certainty < min_certainty else present
    return out


@pytest.mark.parametrize('names_at', ['outside', 'inside'])
def test_cub_labels_splits_names_and_images(tmp_path, names_at):
    root = write_cub(tmp_path, names_at=names_at)
    train = build(root, split='train', check_images='decode')
    test = build(root, split='test', class_names='raw')
    assert [train.get_data_info(i)['img_id'] for i in range(len(train))] == [1, 2, 4]
    assert [test.get_data_info(i)['img_id'] for i in range(len(test))] == [3, 5]
    np.testing.assert_array_equal(train.get_label_matrix(), expected_matrix([1, 2, 4]))
    np.testing.assert_array_equal(test.get_label_matrix(), expected_matrix([3, 5]))
    assert test.metainfo['classes'] == tuple(ATTRIBUTES)
    assert train.metainfo['classes'] == (
        'curved (up or down) bill shape', 'blue wing color', 'large (16 - 32 in) size',
        'duck-like shape')
    info = train.get_data_info(2)
    assert info['img_path'] == osp.join(str(root), 'images', IMAGES[3][1])
    # the pipeline reads the cv2-written image
    sample = DATASETS.build(dict(
        type='CUB200Attributes', data_root=str(root), split='test',
        pipeline=[dict(type='LoadImageCV2', to_rgb=True), dict(type='PackInputs')]))[1]
    assert tuple(sample['inputs'].shape) == (3, 10, 14)


def test_cub_min_certainty_makes_low_certainty_entries_unknown(tmp_path):
    root = write_cub(tmp_path, images=False)
    for level in (2, 3, 4):
        got = build(root, split='train', min_certainty=level).get_label_matrix()
        np.testing.assert_array_equal(got, expected_matrix([1, 2, 4], level))
    with pytest.raises(ValueError, match='min_certainty must be 1, 2, 3 or 4, got 5'):
        build(root, min_certainty=5)


def test_readable_names():
    assert readable_attribute_name('has_bill_length::about_the_same_as_head') == \
        'about the same as head bill length'
    assert readable_attribute_name('plain_name') == 'plain name'


@pytest.mark.parametrize('edit, message', [
    (lambda lines: lines[:3] + ['1 4 x 1 2.0'] + lines[4:],
     r"image_attribute_labels\.txt: line 4: is_present 'x' is not an integer"),
    (lambda lines: lines[:2] + ['1 3 1 99999999999 2.0'] + lines[3:],
     r"image_attribute_labels\.txt: line 3: certainty_id '99999999999' is not an integer"),
    (lambda lines: lines[:5] + ['2 2'] + lines[6:],
     r'image_attribute_labels\.txt: line 6: 2 fields, expected at least 4'),
    (lambda lines: lines[:6] + ['2 3 2 2 1.0'] + lines[7:],
     r'image_attribute_labels\.txt: line 7: is_present must be 0 or 1 \(2 3 2 2\)'),
    (lambda lines: lines[:7] + ['2 9 1 3 1.0'] + lines[8:],
     r'image_attribute_labels\.txt: line 8: attribute_id out of range 1\.\.4'),
    (lambda lines: lines[:1] + ['1 2 0 7 1.0'] + lines[2:],
     r'image_attribute_labels\.txt: line 2: certainty_id must be 1\.\.4'),
    (lambda lines: lines + ['9 1 0 3 1.0'],
     r'image_attribute_labels\.txt: line 21: image_id not in the image list'),
    (lambda lines: lines + ['5 2 1 3 1.0'],
     r'image_attribute_labels\.txt: line 21: repeats an \(image_id, attribute_id\) pair'),
    (lambda lines: lines[:-1],
     r'image_attribute_labels\.txt: no label for image_id 5, attribute_id 4'),
])
def test_cub_malformed_label_file(tmp_path, edit, message):
    root = write_cub(tmp_path, labels_lines=edit(label_lines()), images=False)
    with pytest.raises(ValueError, match=message) as info:
        build(root, split='test')  # image 5 is a test image
    assert '\n' not in str(info.value)


def test_cub_malformed_side_files(tmp_path):
    root = write_cub(tmp_path, images=False)
    write_lines(root / 'train_test_split.txt', ['1 1', '2 yes'])
    with pytest.raises(ValueError, match=r"train_test_split\.txt: line 2: "
                                         r"is_training_image must be 0 or 1, got 'yes'"):
        build(root)
    write_lines(root / 'train_test_split.txt', ['1 1', '2 1', '3 0', '4 1'])
    with pytest.raises(ValueError, match=r'train_test_split\.txt: image id 5 .*images\.txt '
                                         r'line 5\) has no train/test entry'):
        build(root)
    os.remove(tmp_path / 'attributes.txt')
    with pytest.raises(FileNotFoundError, match='CUB attribute names not found'):
        build(root)
    write_lines(tmp_path / 'attributes.txt', ['1 has_a::x', '3 has_b::y'])
    with pytest.raises(ValueError, match=r'attributes\.txt: line 2: attribute id 3, '
                                         r'expected 2'):
        build(root)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        build(root, split='val')
