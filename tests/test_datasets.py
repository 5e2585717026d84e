"""Dataset formats on tiny real-format fixtures written to tmp_path (hand-checked labels)."""
import importlib.util
import json
import os
import os.path as osp
import re
from unittest.mock import patch

import cv2
import numpy as np
import pytest
from mmpretrain.registry import DATASETS, TRANSFORMS

from mlr_plugin.datasets import (COCO_CLASSES, COCO_SEEN_48, COCO_UNSEEN_17,
                                 COCO_ZSL_65, VOC_CLASSES)
from mlr_plugin.datasets.transforms import jpeg_size

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def write_jpeg(path, height=12, width=16, seed=0):
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.random.RandomState(seed).randint(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


def write_text(path, lines):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(f'{line}\n' for line in lines))


def build(**cfg):
    # most tests here parse annotations without images; image checks are tested apart
    cfg.setdefault('check_images', False)
    return DATASETS.build(dict(serialize_data=False, **cfg))


# ------------------------------------------------------------------------- COCO
def coco_json(categories=None):
    # Categories deliberately out of id order; image 13 has no annotation.
    return {
        'images': [{'id': i, 'file_name': f'COCO_{i}.jpg', 'height': 12, 'width': 16}
                   for i in (10, 11, 12, 13)],
        'annotations': [
            {'id': 1, 'image_id': 11, 'category_id': 3, 'bbox': [0, 0, 2, 2], 'area': 4,
             'iscrowd': 0},
            {'id': 2, 'image_id': 10, 'category_id': 18, 'bbox': [0, 0, 2, 2], 'area': 4,
             'iscrowd': 0},
            {'id': 3, 'image_id': 10, 'category_id': 1, 'bbox': [0, 0, 2, 2], 'area': 4,
             'iscrowd': 1},
            {'id': 4, 'image_id': 12, 'category_id': 18, 'bbox': [0, 0, 2, 2], 'area': 4,
             'iscrowd': 0},
            {'id': 5, 'image_id': 10, 'category_id': 1, 'bbox': [1, 1, 2, 2], 'area': 4,
             'iscrowd': 0},
        ],
        'categories': categories or [{'id': 18, 'name': 'dog'}, {'id': 1, 'name': 'person'},
                                     {'id': 3, 'name': 'car'}],
    }


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / 'coco'
    for i in (10, 11, 12, 13):
        write_jpeg(root / 'train2014' / f'COCO_{i}.jpg', seed=i)
    os.makedirs(root / 'annotations')
    with open(root / 'annotations' / 'instances_train2014.json', 'w') as f:
        json.dump(coco_json(), f)
    return root


def test_coco_labels_and_order(coco_root):
    ds = build(type='CocoMultiLabel', data_root=str(coco_root),
               ann_file='annotations/instances_train2014.json')
    assert ds.metainfo['classes'] == ('person', 'car', 'dog')  # sorted by category id
    # Images with objects, in order of first annotation: 11, 10, 12.
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == [11, 10, 12]
    np.testing.assert_array_equal(ds.get_label_matrix(),
                                  [[0, 1, 0], [1, 0, 1], [0, 0, 1]])
    info = ds.get_data_info(1)
    assert info['img_path'] == osp.join(str(coco_root), 'train2014', 'COCO_10.jpg')
    assert info['gt_score'].dtype == np.float32
    assert ds.get_cat_ids(1) == [0, 2]


def test_coco_all_images_and_subset(coco_root):
    ds = build(type='CocoMultiLabel', data_root=str(coco_root),
               ann_file='annotations/instances_train2014.json', only_with_objects=False,
               classes=['dog', 'person'])
    assert ds.metainfo['classes'] == ('dog', 'person')
    np.testing.assert_array_equal(ds.get_gt_labels(),
                                  [[1, 1], [0, 0], [1, 0], [0, 0]])  # images 10..13


def test_coco_pipeline_loads_and_resizes(coco_root):
    ds = DATASETS.build(dict(
        type='CocoMultiLabel', data_root=str(coco_root),
        ann_file='annotations/instances_train2014.json',
        pipeline=[dict(type='LoadImageCV2'), dict(type='Resize', scale=(8, 8)),
                  dict(type='PackInputs')]))
    out = ds[0]
    assert tuple(out['inputs'].shape) == (3, 8, 8)  # mmpretrain Resize: exact S x S
    assert out['data_samples'].gt_score.tolist() == [0, 1, 0]


def test_coco_missing_field_and_record_key(tmp_path):
    data = coco_json()
    del data['categories']
    ann = tmp_path / 'bad.json'
    ann.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"bad\.json.*missing field 'categories'"):
        build(type='CocoMultiLabel', ann_file=str(ann))
    data = coco_json()
    del data['images'][2]['file_name']
    ann.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"bad\.json.*images\[2\].*'file_name'"):
        build(type='CocoMultiLabel', ann_file=str(ann))


def test_coco_unknown_class_error(coco_root):
    with pytest.raises(ValueError, match=r"'zebra'.*instances_train2014\.json"):
        build(type='CocoMultiLabel', data_root=str(coco_root),
              ann_file='annotations/instances_train2014.json', classes=['dog', 'zebra'])


def test_coco_builtin_split(tmp_path):
    data = coco_json([{'id': i + 1, 'name': n} for i, n in enumerate(COCO_CLASSES)])
    # Consecutive ids here: 1, 3, 18 are person, car, horse (horse is seen, 10th).
    ann = tmp_path / 'instances.json'
    ann.write_text(json.dumps(data))
    ds = build(type='CocoMultiLabel', ann_file=str(ann), classes='coco_zsl65',
               lazy_init=True)
    assert ds.metainfo['classes'] == COCO_ZSL_65  # known before loading
    ds.full_init()
    labels = ds.get_label_matrix()
    assert labels.shape == (3, 65)
    car, horse = COCO_ZSL_65.index('car'), COCO_ZSL_65.index('horse')
    assert (car, horse) == (2, 9)
    assert labels[0].nonzero()[0].tolist() == [car]           # image 11
    assert labels[1].nonzero()[0].tolist() == [0, horse]      # image 10: person, horse
    seen = build(type='CocoMultiLabel', ann_file=str(ann), classes='coco_seen48')
    assert seen.get_label_matrix()[:, COCO_SEEN_48.index('horse')].tolist() == [0, 1, 1]
    unseen = build(type='CocoMultiLabel', ann_file=str(ann), classes='coco_unseen17')
    assert unseen.get_label_matrix().shape == (3, 17)
    assert not unseen.get_label_matrix().any()  # no unseen object in these images


def test_coco_split_lists():
    assert len(COCO_CLASSES) == 80 and len(set(COCO_CLASSES)) == 80
    assert len(COCO_SEEN_48) == 48 and len(COCO_UNSEEN_17) == 17
    assert not set(COCO_SEEN_48) & set(COCO_UNSEEN_17)
    assert set(COCO_ZSL_65) <= set(COCO_CLASSES) and len(set(COCO_ZSL_65)) == 65
    assert COCO_ZSL_65 == COCO_SEEN_48 + COCO_UNSEEN_17
    for name in ('tv', 'couch', 'motorcycle', 'airplane'):  # official 2014 names
        assert name in COCO_CLASSES
    with pytest.raises(ValueError, match='coco_seen50'):
        build(type='CocoMultiLabel', ann_file='x.json', classes='coco_seen50')


def _coco_cfg(coco_root):
    return dict(type='CocoMultiLabel', data_root=str(coco_root),
                ann_file='annotations/instances_train2014.json')


def test_check_images_missing_file_is_found_by_default(coco_root):
    os.remove(coco_root / 'train2014' / 'COCO_12.jpg')
    cfg = _coco_cfg(coco_root)
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.build(cfg)  # checked by default
    assert re.fullmatch(r'image not found: \S*train2014/COCO_12\.jpg '
                        r'\(listed in \S*instances_train2014\.json\)', str(info.value))
    assert len(build(check_images=False, **cfg)) == 3
    with pytest.raises(FileNotFoundError, match=r'COCO_12\.jpg'):
        build(check_images='exists', **cfg)


def test_check_images_corrupt_header_and_truncated_decode(coco_root, capsys):
    path = coco_root / 'train2014' / 'COCO_10.jpg'
    cfg = _coco_cfg(coco_root)
    data = path.read_bytes()
    path.write_bytes(b'not an image at all')
    with pytest.raises(OSError, match=r'corrupt image: \S*COCO_10\.jpg \(listed in '
                                      r'\S*instances_train2014\.json\)'):
        build(check_images=True, **cfg)
    # a truncated JPEG has a valid header: only the full decode finds it
    write_jpeg(path, height=64, width=64)  # header small next to the scan data
    path.write_bytes(path.read_bytes()[:-100])
    assert len(build(check_images='header', **cfg)) == 3
    with pytest.raises(OSError, match=r'corrupt image: \S*COCO_10\.jpg'):
        build(check_images='decode', **cfg)
    path.write_bytes(data)
    with pytest.raises(ValueError, match="check_images must be .* got 'full'"):
        build(check_images='full', **cfg)
    with pytest.raises(ValueError, match="drop_empty must be True or False, got 'no'"):
        build(drop_empty='no', **cfg)


def test_check_images_logs_its_cost(coco_root):
    messages = []
    with patch('mlr_plugin.datasets.base.print_log',
               lambda msg, **kwargs: messages.append(msg)):
        build(check_images='decode', **_coco_cfg(coco_root))
    assert any(re.search(r'3 images, .*images checked \(decode\) in \d+\.\d\d s', m)
               for m in messages), messages


# -------------------------------------------------------------------------- VOC
VOC_XML = """<annotation><filename>{id}.jpg</filename>{objects}</annotation>"""
VOC_OBJ = """<object><name>{name}</name>{difficult}<bndbox><xmin>1</xmin><ymin>1</ymin>
<xmax>5</xmax><ymax>5</ymax></bndbox></object>"""


def write_voc(root, objects_per_image):
    ids = sorted(objects_per_image)
    write_text(root / 'ImageSets' / 'Main' / 'trainval.txt', ids)
    os.makedirs(root / 'Annotations', exist_ok=True)
    for img_id, objects in objects_per_image.items():
        objs = ''.join(VOC_OBJ.format(
            name=name, difficult='' if diff is None else f'<difficult>{diff}</difficult>')
            for name, diff in objects)
        (root / 'Annotations' / f'{img_id}.xml').write_text(
            VOC_XML.format(id=img_id, objects=objs))
        write_jpeg(root / 'JPEGImages' / f'{img_id}.jpg')


VOC_OBJECTS = {
    '000001': [('dog', 0), ('person', 1)],                 # person difficult only
    '000002': [('cat', 1), ('Cat', 0), ('car', None)],     # cat also non-difficult
    '000003': [('bottle', 1)],
}


@pytest.mark.parametrize('difficult_as,unknown', [('ignore', -1), ('negative', 0)])
def test_voc_labels(tmp_path, difficult_as, unknown):
    write_voc(tmp_path / 'VOC2007', VOC_OBJECTS)
    ds = build(type='VOCMultiLabel', data_root=str(tmp_path / 'VOC2007'),
               ann_file='ImageSets/Main/trainval.txt', difficult_as=difficult_as,
               check_images=True)
    assert ds.metainfo['classes'] == VOC_CLASSES
    expected = np.zeros((3, 20), dtype=np.float32)
    c = VOC_CLASSES.index
    expected[0, c('dog')] = 1
    expected[0, c('person')] = unknown
    expected[1, c('cat')] = expected[1, c('car')] = 1
    expected[2, c('bottle')] = unknown
    np.testing.assert_array_equal(ds.get_label_matrix(), expected)
    assert ds.get_data_info(2)['img_id'] == '000003'
    assert ds.get_data_info(2)['img_path'].endswith(osp.join('JPEGImages', '000003.jpg'))


def test_voc_unknown_class_names_xml(tmp_path):
    write_voc(tmp_path, {'000001': [('dragon', 0)]})
    with pytest.raises(ValueError, match=r"000001\.xml.*'dragon'"):
        build(type='VOCMultiLabel', data_root=str(tmp_path),
              ann_file='ImageSets/Main/trainval.txt')
    with pytest.raises(ValueError, match='difficult_as'):
        build(type='VOCMultiLabel', ann_file='x.txt', difficult_as='maybe')


# --------------------------------------------------------------------- NUS-WIDE
def test_nuswide_list_format(tmp_path):
    write_text(tmp_path / 'train_images.txt', ['actor\\0001_11.jpg', 'sky/0002_12.jpg'])
    write_text(tmp_path / 'train_labels.txt', ['1 0 0 1', '0 0 -1 1'])
    write_text(tmp_path / 'classes.txt', ['sky', 'water', 'lake', 'person'])
    ds = build(type='NUSWIDE', data_root=str(tmp_path), ann_file='train_images.txt',
               label_file='train_labels.txt', classes_file='classes.txt',
               data_prefix=dict(img_path='Flickr'))
    assert ds.metainfo['classes'] == ('sky', 'water', 'lake', 'person')
    np.testing.assert_array_equal(ds.get_label_matrix(), [[1, 0, 0, 1], [0, 0, -1, 1]])
    assert ds.get_data_info(0)['img_path'] == osp.join(str(tmp_path), 'Flickr',
                                                       'actor', '0001_11.jpg')
    write_text(tmp_path / 'bad_labels.txt', ['1 0 0 1', '0 0 1'])
    with pytest.raises(ValueError, match=r'bad_labels\.txt'):
        build(type='NUSWIDE', data_root=str(tmp_path), ann_file='train_images.txt',
              label_file='bad_labels.txt', classes_file='classes.txt')


def test_nuswide_official_layout(tmp_path):
    root = tmp_path / 'NUS-WIDE'
    write_text(root / 'ImageList' / 'TrainImagelist.txt',
               ['actor\\0001_11.jpg', 'beach\\0002_12.jpg', 'lake\\0003_13.jpg'])
    write_text(root / 'Concepts81.txt', ['sky', 'water', 'lake'])
    gt = root / 'Groundtruth' / 'TrainTestLabels'
    write_text(gt / 'Labels_sky_Train.txt', ['1', '0', '1'])
    write_text(gt / 'Labels_water_Train.txt', ['0', '1', '1'])
    write_text(gt / 'Labels_lake_Train.txt', ['0', '0', '-1130179'])  # stray value
    ds = build(type='NUSWIDE', data_root=str(root),
               ann_file='ImageList/TrainImagelist.txt', classes_file='Concepts81.txt',
               label_dir='Groundtruth/TrainTestLabels', split='Train')
    assert ds.metainfo['classes'] == ('sky', 'water', 'lake')
    np.testing.assert_array_equal(ds.get_label_matrix(),
                                  [[1, 0, 0], [0, 1, 0], [1, 1, -1]])
    # 1006-style: tags that are not concepts, then the concepts.
    write_text(root / 'NUS_WID_Tags' / 'TagList1k.txt', ['sunset', 'sky', 'beach', 'lake'])
    write_text(root / 'NUS_WID_Tags' / 'Train_Tags1k.dat',
               ['1\t1\t0\t0\t', '0\t0\t1\t0\t', '1\t0\t0\t1\t'])
    ds = build(type='NUSWIDE', data_root=str(root),
               ann_file='ImageList/TrainImagelist.txt', classes_file='Concepts81.txt',
               label_dir='Groundtruth/TrainTestLabels', split='Train',
               tag_file='NUS_WID_Tags/Train_Tags1k.dat',
               tag_list_file='NUS_WID_Tags/TagList1k.txt', drop_no_positive=True)
    assert ds.metainfo['classes'] == ('sunset', 'beach', 'sky', 'water', 'lake')
    np.testing.assert_array_equal(ds.get_label_matrix(), [[1, 0, 1, 0, 0],
                                                          [0, 1, 0, 1, 0],
                                                          [1, 0, 1, 1, -1]])
    # label_set: the 925-tag side (zero-shot training) or the 81-concept side (ZSL).
    common = dict(type='NUSWIDE', data_root=str(root),
                  ann_file='ImageList/TrainImagelist.txt', classes_file='Concepts81.txt',
                  label_dir='Groundtruth/TrainTestLabels', split='Train',
                  tag_file='NUS_WID_Tags/Train_Tags1k.dat',
                  tag_list_file='NUS_WID_Tags/TagList1k.txt')
    tags = build(**common, label_set='tags')
    assert tags.metainfo['classes'] == ('sunset', 'beach')
    np.testing.assert_array_equal(tags.get_label_matrix(), [[1, 0], [0, 1], [1, 0]])
    concepts = build(**common, label_set='concepts')
    assert concepts.metainfo['classes'] == ('sky', 'water', 'lake')
    with pytest.raises(ValueError, match='label_set'):
        build(**common, label_set='seen')
    with pytest.raises(ValueError, match='needs tag_file'):
        build(type='NUSWIDE', data_root=str(root), ann_file='ImageList/TrainImagelist.txt',
              classes_file='Concepts81.txt', label_dir='Groundtruth/TrainTestLabels',
              label_set='tags')
    with pytest.raises(FileNotFoundError, match=r'Labels_sky_Test\.txt'):
        build(type='NUSWIDE', data_root=str(root),
              ann_file='ImageList/TrainImagelist.txt', classes_file='Concepts81.txt',
              label_dir='Groundtruth/TrainTestLabels', split='Test')


@pytest.mark.parametrize('type_', ['NUSWIDE', 'VisualGenome200'])
def test_label_convention_mkt(tmp_path, type_):
    """MKT / BiAM / LESA matrices write 1 / -1 / 0 for positive / negative / unknown."""
    write_text(tmp_path / 'images.txt', ['a.jpg', 'b.jpg'])
    write_text(tmp_path / 'mkt_labels.txt', ['1 -1 0', '-1 1 -1'])
    write_text(tmp_path / 'classes.txt', ['sky', 'water', 'lake'])
    cfg = dict(type=type_, data_root=str(tmp_path), ann_file='images.txt',
               label_file='mkt_labels.txt', classes_file='classes.txt')
    ds = build(label_convention='mkt', **cfg)
    np.testing.assert_array_equal(ds.get_label_matrix(), [[1, 0, -1], [0, 1, 0]])
    # ours (the default) reads the same file as 1/0/-1: the unknowns and negatives swap
    np.testing.assert_array_equal(build(**cfg).get_label_matrix(),
                                  [[1, -1, 0], [-1, 1, -1]])
    with pytest.raises(ValueError, match=r"label_convention must be one of \('ours', "
                                         r"'mkt'\).* got 'MKT'"):
        build(label_convention='MKT', **cfg)
    write_text(tmp_path / 'bad.txt', ['1 -1 0', '-1 2 -1'])
    with pytest.raises(ValueError, match=r'bad\.txt: label value 2 at row 2, column 2'):
        build(label_convention='mkt', **dict(cfg, label_file='bad.txt'))
    cfg.pop('label_file')
    if type_ == 'NUSWIDE':
        cfg['label_dir'] = 'Groundtruth'
    with pytest.raises(ValueError, match="label_convention='mkt' applies to label_file"):
        build(label_convention='mkt', **cfg)


# ------------------------------------------------------------------------ VG-200
def test_visual_genome_200_both_list_styles(tmp_path):
    names = [f'object{i}' for i in range(200)]
    write_text(tmp_path / 'vg_classes.txt', names)
    write_text(tmp_path / 'train_list.txt', ['1.jpg 0 5 199', '', '2.jpg', '3.jpg 5'])
    ds = build(type='VisualGenome200', data_root=str(tmp_path), ann_file='train_list.txt',
               classes_file='vg_classes.txt', data_prefix=dict(img_path='VG_100K'))
    labels = ds.get_label_matrix()
    assert labels.shape == (3, 200) and len(ds.metainfo['classes']) == 200
    assert [np.flatnonzero(r).tolist() for r in labels] == [[0, 5, 199], [], [5]]
    assert ds.get_data_info(2)['img_path'] == osp.join(str(tmp_path), 'VG_100K', '3.jpg')
    # Matrix style gives the same labels.
    write_text(tmp_path / 'images.txt', ['1.jpg', '2.jpg', '3.jpg'])
    np.savetxt(tmp_path / 'labels.txt', labels, fmt='%d')
    ds2 = build(type='VisualGenome200', data_root=str(tmp_path), ann_file='images.txt',
                label_file='labels.txt', classes_file='vg_classes.txt')
    np.testing.assert_array_equal(ds2.get_label_matrix(), labels)
    write_text(tmp_path / 'bad_list.txt', ['1.jpg 0', '2.jpg 200'])
    with pytest.raises(ValueError, match=r'bad_list\.txt line 2.*200'):
        build(type='VisualGenome200', data_root=str(tmp_path), ann_file='bad_list.txt',
              classes_file='vg_classes.txt')


# ----------------------------------------------------------------------- generic
CLASSES = ['cat', 'dog', 'car', 'tree']


def test_generic_json(tmp_path):
    write_text(tmp_path / 'classes.txt', CLASSES)
    records = [{'img_path': 'a.jpg', 'labels': ['cat', 2], 'unknown': ['tree']},
               {'img_path': 'b.jpg', 'labels': [], 'img_id': 7},
               {'img_path': 'c.jpg', 'labels': ['dog']}]
    (tmp_path / 'ann.json').write_text(json.dumps(records))
    ds = build(type='GenericMultiLabel', data_root=str(tmp_path), ann_file='ann.json',
               classes_file='classes.txt')
    assert ds.metainfo['classes'] == tuple(CLASSES)
    np.testing.assert_array_equal(ds.get_label_matrix(),
                                  [[1, 0, 1, -1], [0, 0, 0, 0], [0, 1, 0, 0]])
    assert ds.get_data_info(1)['img_id'] == 7 and 'img_id' not in ds.get_data_info(0)
    # Unknown name: error names the file, the record and the name.
    records[2]['labels'] = ['zebra']
    (tmp_path / 'ann.json').write_text(json.dumps(records))
    with pytest.raises(ValueError, match=r"ann\.json: record 2 \(c\.jpg\).*'zebra'"):
        build(type='GenericMultiLabel', data_root=str(tmp_path), ann_file='ann.json',
              classes_file='classes.txt')


@pytest.mark.parametrize('ext,lines', [
    ('txt', ['img_path\tlabels\tunknown', 'a.jpg\tcat,2\ttree', 'b.jpg', '# comment',
             'c.jpg\tdog']),
    ('csv', ['path,labels,unknown', 'a.jpg,"cat,2",tree', 'b.jpg', 'c.jpg,dog']),
])
def test_generic_table(tmp_path, ext, lines):
    write_text(tmp_path / 'classes.txt', CLASSES)
    write_text(tmp_path / f'ann.{ext}', lines)
    ds = build(type='GenericMultiLabel', ann_file=str(tmp_path / f'ann.{ext}'),
               classes_file=str(tmp_path / 'classes.txt'))
    np.testing.assert_array_equal(ds.get_label_matrix(),
                                  [[1, 0, 1, -1], [0, 0, 0, 0], [0, 1, 0, 0]])
    assert ds.get_data_info(0)['img_path'] == 'a.jpg'


def test_generic_errors(tmp_path):
    write_text(tmp_path / 'classes.txt', CLASSES)
    write_text(tmp_path / 'ann.txt', ['a.jpg\tcat', 'b.jpg\tdog,plane'])
    with pytest.raises(ValueError, match=r"ann\.txt: line 2 \(b\.jpg\).*'plane'"):
        build(type='GenericMultiLabel', ann_file=str(tmp_path / 'ann.txt'),
              classes_file=str(tmp_path / 'classes.txt'))
    (tmp_path / 'empty.json').write_text('[]')
    with pytest.raises(ValueError, match=r'empty\.json.*empty'):
        build(type='GenericMultiLabel', ann_file=str(tmp_path / 'empty.json'),
              classes_file=str(tmp_path / 'classes.txt'))
    write_text(tmp_path / 'dup_classes.txt', ['cat', 'dog', 'cat'])
    with pytest.raises(ValueError, match=r"dup_classes\.txt.*'cat'"):
        build(type='GenericMultiLabel', ann_file=str(tmp_path / 'ann.txt'),
              classes_file=str(tmp_path / 'dup_classes.txt'))


def test_drop_empty_and_drop_no_positive(tmp_path):
    write_text(tmp_path / 'classes.txt', CLASSES)
    records = [{'img_path': 'a.jpg', 'labels': ['cat']},
               {'img_path': 'b.jpg', 'labels': [], 'unknown': ['dog']},
               {'img_path': 'c.jpg', 'labels': ['dog'], 'unknown': ['cat', 'car', 'tree']}]
    (tmp_path / 'ann.json').write_text(json.dumps(records))
    cfg = dict(type='GenericMultiLabel', ann_file=str(tmp_path / 'ann.json'),
               classes_file=str(tmp_path / 'classes.txt'),
               label_simulation=dict(type='HideClasses', classes=['dog']))
    assert len(build(**cfg)) == 3  # kept by default
    ds = build(drop_empty=True, **cfg)  # c.jpg has no known label once dog is hidden
    assert [ds.get_data_info(i)['img_path'] for i in range(len(ds))] == ['a.jpg', 'b.jpg']
    ds = build(drop_no_positive=True, **cfg)  # b.jpg has no positive
    assert [ds.get_data_info(i)['img_path'] for i in range(len(ds))] == ['a.jpg', 'c.jpg']
    with pytest.raises(ValueError, match=r'ann\.json.*empty'):
        build(drop_empty=True, classes=['dog'], **cfg)


# -------------------------------------------------------------------- LoadImageCV2
def test_load_image_cv2(tmp_path):
    img = write_jpeg(tmp_path / 'big.jpg', height=256, width=320)
    data = (tmp_path / 'big.jpg').read_bytes()
    assert jpeg_size(data) == (256, 320)
    full = TRANSFORMS.build(dict(type='LoadImageCV2'))(dict(img_path=str(tmp_path / 'big.jpg')))
    assert full['img'].shape == (256, 320, 3) and full['decode_scale'] == 1
    assert np.abs(full['img'].astype(int) - img).mean() < 60  # JPEG of noise: lossy
    rgb = TRANSFORMS.build(dict(type='LoadImageCV2', to_rgb=True))(
        dict(img_path=str(tmp_path / 'big.jpg')))
    np.testing.assert_array_equal(rgb['img'], full['img'][..., ::-1])
    # 256 / 4 = 64 >= 64 but 256 / 8 = 32 < 64: decoded at 1/4 scale.
    small = TRANSFORMS.build(dict(type='LoadImageCV2', target_size=64))(
        dict(img_path=str(tmp_path / 'big.jpg')))
    assert small['img'].shape == (64, 80, 3) and small['decode_scale'] == 4
    assert small['ori_shape'] == (256, 320) and small['img_shape'] == (64, 80)
    same = TRANSFORMS.build(dict(type='LoadImageCV2', target_size=(300, 200)))(
        dict(img_path=str(tmp_path / 'big.jpg')))
    assert same['decode_scale'] == 1


def test_load_image_cv2_errors(tmp_path):
    load = TRANSFORMS.build(dict(type='LoadImageCV2', target_size=32))
    (tmp_path / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0 this is not a jpeg')
    with pytest.raises(OSError, match=r'corrupt\.jpg'):
        load(dict(img_path=str(tmp_path / 'corrupt.jpg')))
    (tmp_path / 'empty.jpg').write_bytes(b'')
    with pytest.raises(OSError, match=r'empty\.jpg'):
        load(dict(img_path=str(tmp_path / 'empty.jpg')))
    with pytest.raises(FileNotFoundError, match=r'missing\.jpg'):
        load(dict(img_path=str(tmp_path / 'missing.jpg')))


# --------------------------------------------------------------------- converter
def load_converter():
    path = osp.join(REPO, 'tools', 'dataset_converters', 'to_generic.py')
    spec = importlib.util.spec_from_file_location('to_generic', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_coco_and_voc_round_trip(coco_root, tmp_path):
    convert = load_converter()
    out_json, out_cls = tmp_path / 'out' / 'coco.json', tmp_path / 'out' / 'coco.txt'
    convert.main(['coco', '--data-root', str(coco_root),
                  '--ann-file', 'annotations/instances_train2014.json',
                  '--img-prefix', 'train2014', '--out-json', str(out_json),
                  '--out-classes', str(out_cls)])
    src = build(type='CocoMultiLabel', data_root=str(coco_root),
                ann_file='annotations/instances_train2014.json')
    dst = build(type='GenericMultiLabel', data_root=str(coco_root), ann_file=str(out_json),
                classes_file=str(out_cls), check_images=True)
    assert dst.metainfo['classes'] == src.metainfo['classes']
    np.testing.assert_array_equal(dst.get_label_matrix(), src.get_label_matrix())
    assert [dst.get_data_info(i)['img_id'] for i in range(3)] == [11, 10, 12]
    assert json.loads(out_json.read_text())[0]['img_path'] == 'train2014/COCO_11.jpg'
    assert not [f for f in os.listdir(tmp_path / 'out') if f.endswith('.tmp')]

    write_voc(tmp_path / 'VOC2007', VOC_OBJECTS)
    convert.main(['voc', '--data-root', str(tmp_path / 'VOC2007'),
                  '--ann-file', 'ImageSets/Main/trainval.txt',
                  '--out-json', str(tmp_path / 'voc.json'),
                  '--out-classes', str(tmp_path / 'voc.txt')])
    src = build(type='VOCMultiLabel', data_root=str(tmp_path / 'VOC2007'),
                ann_file='ImageSets/Main/trainval.txt')
    dst = build(type='GenericMultiLabel', data_root=str(tmp_path / 'VOC2007'),
                ann_file=str(tmp_path / 'voc.json'), classes_file=str(tmp_path / 'voc.txt'),
                check_images=True)
    np.testing.assert_array_equal(dst.get_label_matrix(), src.get_label_matrix())
    assert (dst.get_label_matrix() == -1).sum() == 2  # difficult-only entries kept unknown


def test_jpeg_size_honours_exif_orientation(tmp_path):
    """A phone photo stored 48 wide x 32 high with EXIF orientation 6 (rotate 90) displays
    (and decodes with OpenCV) 32 wide x 48 high: ori_shape must say so too."""
    from PIL import Image
    img = Image.new('RGB', (48, 32), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / 'rotated.jpg'
    img.save(path, 'JPEG', exif=exif.tobytes())
    assert jpeg_size(path.read_bytes()) == (48, 32)
    out = TRANSFORMS.build(dict(type='LoadImageCV2'))(dict(img_path=str(path)))
    assert out['img'].shape[:2] == (48, 32)
    assert tuple(out['ori_shape']) == tuple(out['img_shape']) == (48, 32)
    # Reduced decoding picks its factor on the displayed sides as well.
    big = tmp_path / 'rotated_big.jpg'
    Image.new('RGB', (400, 100), (0, 90, 0)).save(big, 'JPEG', exif=exif.tobytes())
    out = TRANSFORMS.build(dict(type='LoadImageCV2', target_size=(50, 200)))(
        dict(img_path=str(big)))
    assert tuple(out['ori_shape']) == (400, 100)
    assert out['img'].shape[0] >= 200 and out['img'].shape[1] >= 50
    # No EXIF, then a hand-written big-endian EXIF with orientation 8 (rotate 270).
    plain = tmp_path / 'plain.jpg'
    img.save(plain, 'JPEG')
    data = plain.read_bytes()
    assert jpeg_size(data) == (32, 48)
    tiff = (b'MM\x00\x2a\x00\x00\x00\x08' + b'\x00\x01'
            + b'\x01\x12\x00\x03\x00\x00\x00\x01\x00\x08\x00\x00' + b'\x00\x00\x00\x00')
    payload = b'Exif\x00\x00' + tiff
    app1 = b'\xff\xe1' + (len(payload) + 2).to_bytes(2, 'big') + payload
    assert jpeg_size(data[:2] + app1 + data[2:]) == (48, 32)
