"""Convert COCO / VOC / NUS-WIDE / VG-200 annotations to the generic multi-label format.

Reads with the plugin's dataset classes and writes (atomically)::

    --out-json     [{"img_path": ..., "labels": [names], "unknown": [names], "img_id": ...}]
    --out-classes  one class name per line

``img_path`` is written relative to ``--data-root`` (when the image lies under it), so
the result loads with::

    dict(type='GenericMultiLabel', data_root=<data-root>, ann_file=<out-json>,
         classes_file=<out-classes>)

Examples::

    python tools/dataset_converters/to_generic.py coco --data-root data/coco \\
        --ann-file annotations/instances_train2014.json --img-prefix train2014 \\
        --out-json data/coco/generic_train.json --out-classes data/coco/classes.txt
    python tools/dataset_converters/to_generic.py voc --data-root data/VOC2007 \\
        --ann-file ImageSets/Main/trainval.txt --out-json voc.json --out-classes voc.txt
    python tools/dataset_converters/to_generic.py nuswide --data-root data/nus \\
        --ann-file ImageList/TrainImagelist.txt --classes-file Concepts81.txt \\
        --label-dir Groundtruth/TrainTestLabels --split Train --img-prefix Flickr \\
        --out-json nus_train.json --out-classes nus_classes.txt
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='format', required=True)

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument('--data-root', default='', help='dataset root')
        p.add_argument('--ann-file', required=True, help='annotation / image list file')
        p.add_argument('--img-prefix', default=None,
                       help='image folder relative to --data-root')
        p.add_argument('--out-json', required=True)
        p.add_argument('--out-classes', required=True)
        return p

    coco = add('coco', 'COCO instances JSON')
    coco.add_argument('--all-images', action='store_true',
                      help='also images without annotations (all negative)')
    voc = add('voc', 'VOC ImageSets/Main split + Annotations/*.xml')
    voc.add_argument('--difficult-as', default='ignore', choices=['ignore', 'negative'])
    for name in ('nuswide', 'vg200'):
        p = add(name, f'{name} list files (see the dataset class docstring)')
        p.add_argument('--classes-file', required=True)
        p.add_argument('--label-file', default=None)
        if name == 'nuswide':
            p.add_argument('--label-dir', default=None)
            p.add_argument('--split', default='Train',
                           help="label file suffix; '' for Groundtruth/AllLabels")
            p.add_argument('--tag-file', default=None)
            p.add_argument('--tag-list-file', default=None)
    return parser.parse_args(argv)


def dataset_config(args) -> dict:
    cfg = dict(data_root=args.data_root, ann_file=args.ann_file, serialize_data=False)
    if args.img_prefix is not None:
        cfg['data_prefix'] = dict(img_path=args.img_prefix)
    if args.format == 'coco':
        cfg.update(type='CocoMultiLabel', only_with_objects=not args.all_images)
    elif args.format == 'voc':
        cfg.update(type='VOCMultiLabel', difficult_as=args.difficult_as)
        if args.img_prefix is not None:
            cfg['data_prefix'] = dict(img_path=args.img_prefix, ann_path='Annotations')
    elif args.format == 'nuswide':
        cfg.update(type='NUSWIDE', classes_file=args.classes_file,
                   label_file=args.label_file, label_dir=args.label_dir,
                   split=args.split or None,
                   tag_file=args.tag_file, tag_list_file=args.tag_list_file)
    else:
        cfg.update(type='VisualGenome200', classes_file=args.classes_file,
                   label_file=args.label_file)
    return cfg


def to_records(dataset, data_root: str) -> list:
    """Data infos -> generic JSON records (names of positives and unknowns)."""
    classes = dataset.metainfo['classes']
    root = osp.abspath(data_root) if data_root else None
    records = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        path = info['img_path']
        if root and osp.abspath(path).startswith(root + os.sep):
            path = osp.relpath(osp.abspath(path), root).replace(os.sep, '/')
        record = dict(img_path=path,
                      labels=[classes[j] for j in np.flatnonzero(info['gt_score'] == 1)])
        unknown = [classes[j] for j in np.flatnonzero(info['gt_score'] == -1)]
        if unknown:
            record['unknown'] = unknown
        if 'img_id' in info:
            img_id = info['img_id']
            record['img_id'] = img_id.item() if hasattr(img_id, 'item') else img_id
        records.append(record)
    return records


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` so that a failed run leaves no partial file."""
    from mlr_plugin.fileio import atomic_open
    with atomic_open(path, 'w') as f:
        f.write(text)


def main(argv=None):
    args = parse_args(argv)
    import mlr_plugin  # noqa: F401  (registers the datasets)
    from mmpretrain.registry import DATASETS

    dataset = DATASETS.build(dataset_config(args))
    records = to_records(dataset, args.data_root)
    write_atomic(args.out_classes, ''.join(f'{c}\n' for c in dataset.metainfo['classes']))
    write_atomic(args.out_json, json.dumps(records, indent=1))
    print(f'wrote {len(records)} images, {len(dataset.metainfo["classes"])} classes '
          f'-> {args.out_json}, {args.out_classes}')


if __name__ == '__main__':
    sys.exit(main())
