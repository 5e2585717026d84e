"""PASCAL VOC 2007/2012 (split list + XML annotations) as a multi-label dataset."""
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Optional

import numpy as np
from mmengine.fileio import join_path
from mmpretrain.registry import DATASETS

from .base import MultiLabelCLIPDataset, ParsedAnnotations
from .list_format import read_lines
from .splits import VOC_CLASSES


def read_voc_objects(xml_path: str):
    """``[(class_name, difficult)]`` of the objects of one VOC XML annotation."""
    if not osp.isfile(xml_path):
        raise FileNotFoundError(f'VOC annotation not found: {xml_path}')
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise ValueError(f'{xml_path}: invalid XML ({e})') from None
    objects = []
    for obj in root.iter('object'):
        name = obj.findtext('name')
        if name is None:
            raise ValueError(f'{xml_path}: an <object> has no <name>')
        difficult = (obj.findtext('difficult') or '0').strip()  # absent means 0
        objects.append((name.strip().lower(), difficult == '1'))
    return objects


@DATASETS.register_module()
class VOCMultiLabel(MultiLabelCLIPDataset):
    """PASCAL VOC 2007 / 2012 image-level labels.

    Layout (``data_root`` = ``VOCdevkit/VOC2007``)::

        ImageSets/Main/{split}.txt   one image id per line (``ann_file``)
        Annotations/{id}.xml         objects with <name> and <difficult>
        JPEGImages/{id}.jpg

    The 20 classes in the devkit order (``splits.VOC_CLASSES``).

    Args:
        ann_file (str): the split list, e.g. ``ImageSets/Main/trainval.txt``.
        split (str | None): instead of ``ann_file``, the split name: ``'trainval'``,
            ``'test'`` (VOC 2007), ``'train'``, ``'val'`` (VOC 2012) ... reads
            ``ImageSets/Main/{split}.txt``.
        data_prefix (dict): ``img_path`` (default ``JPEGImages``) and ``ann_path``
            (default ``Annotations``), relative to ``data_root``.
        difficult_as (str): a class whose only instances are ``difficult``:
            ``'ignore'`` -> -1 (unknown; mmpretrain's evaluation convention) or
            ``'negative'`` -> 0 (DualCoOp). A class with any non-difficult instance is 1.
        **kwargs: options of :class:`MultiLabelCLIPDataset`.

    Each data info has ``img_path``, ``img_id`` (the VOC id string) and ``gt_score``.
    """

    def __init__(self, data_root: str = '', ann_file: str = '',
                 data_prefix: Optional[dict] = None, difficult_as: str = 'ignore',
                 split: Optional[str] = None, **kwargs):
        if split is not None:
            if ann_file:
                raise ValueError(f'VOCMultiLabel: give ann_file or split, not both '
                                 f'(ann_file={ann_file!r}, split={split!r})')
            if not isinstance(split, str) or not split or '/' in split:
                raise ValueError(f"VOCMultiLabel: split must be a split name such as "
                                 f"'trainval', 'train' or 'val', got {split!r}")
            ann_file = f'ImageSets/Main/{split}.txt'
        self.split = split
        if difficult_as not in ('ignore', 'negative'):
            raise ValueError(f"difficult_as must be 'ignore' or 'negative', "
                             f'got {difficult_as!r}')
        self.difficult_as = difficult_as
        prefix = dict(img_path='JPEGImages', ann_path='Annotations')
        prefix.update(data_prefix or {})
        super().__init__(data_root=data_root, ann_file=ann_file, data_prefix=prefix,
                         **kwargs)

    def load_annotations(self) -> ParsedAnnotations:
        # First token per line: also accepts the per-class lists ("000005 -1").
        img_ids = [line.split()[0] for line in read_lines(self.ann_file, 'VOC split')]
        column = {name: j for j, name in enumerate(VOC_CLASSES)}
        labels = np.zeros((len(img_ids), len(VOC_CLASSES)), dtype=np.float32)
        samples = []
        for row, img_id in enumerate(img_ids):
            xml_path = join_path(self.data_prefix['ann_path'], f'{img_id}.xml')
            difficult_only = set()
            for name, difficult in read_voc_objects(xml_path):
                if name not in column:
                    raise ValueError(f'{xml_path}: unknown VOC class {name!r}')
                if difficult:
                    difficult_only.add(name)
                else:
                    labels[row, column[name]] = 1
            if self.difficult_as == 'ignore':
                for name in difficult_only:
                    if labels[row, column[name]] != 1:
                        labels[row, column[name]] = -1
            samples.append(dict(img_path=self.image_path(f'{img_id}.jpg'), img_id=img_id))
        return ParsedAnnotations(VOC_CLASSES, samples, labels)
