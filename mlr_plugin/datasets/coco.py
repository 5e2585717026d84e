"""COCO-2014 (instances JSON) as a multi-label dataset."""
import contextlib
import io
from typing import Optional

import numpy as np
from mmpretrain.registry import DATASETS

from .base import MultiLabelCLIPDataset, ParsedAnnotations
from .list_format import read_json

_REQUIRED_FIELDS = {
    'images': ('id', 'file_name'),
    'annotations': ('id', 'image_id', 'category_id'),
    'categories': ('id', 'name'),
}


def load_coco_json(ann_file: str) -> dict:
    """Read a COCO instances JSON and check the fields we use (one-line errors)."""
    data = read_json(ann_file, dict, 'COCO annotation file (images/annotations/categories)')
    for field, keys in _REQUIRED_FIELDS.items():
        if field not in data:
            raise ValueError(f'{ann_file}: missing field {field!r}')
        for i, record in enumerate(data[field]):
            for key in keys:
                if key not in record:
                    raise ValueError(f'{ann_file}: {field}[{i}] has no field {key!r}')
    return data


@DATASETS.register_module()
class CocoMultiLabel(MultiLabelCLIPDataset):
    """COCO instances JSON (e.g. COCO-2014) -> image-level multi-labels.

    A class is positive if the image has any instance of it (crowd ones included, as in
    ML-GCN / DualCoOp), negative otherwise. Class order = categories sorted by id, names
    from the JSON (COCO-2014: ``person`` ... ``toothbrush``, see ``splits.COCO_CLASSES``).

    Image order: with ``only_with_objects=True`` the images that have annotations, in
    order of their first annotation (pycocotools ``imgToAnns`` order, which is also the
    row order of DualCoOp's released ``partial_label_*.pt`` masks); otherwise every image
    in the JSON's ``images`` order (unannotated ones are all-negative).

    Args:
        data_root (str): dataset root, e.g. ``data/coco``.
        ann_file (str): e.g. ``annotations/instances_train2014.json``.
        data_prefix (str | dict): image folder, default ``dict(img_path='train2014')``.
        only_with_objects (bool): keep only images with at least one annotation
            (COCO-2014 train: 82,081 of 82,783). Default True.
        **kwargs: options of :class:`MultiLabelCLIPDataset` (``classes``,
            ``label_simulation``, ``drop_empty``, ``check_images``, ``pipeline``...).

    Each data info has ``img_path``, ``img_id`` (COCO image id) and ``gt_score``.
    """

    def __init__(self, data_root: str = '', ann_file: str = '',
                 data_prefix: Optional[dict] = None, only_with_objects: bool = True,
                 **kwargs):
        self.only_with_objects = only_with_objects
        if data_prefix is None:
            data_prefix = dict(img_path='train2014')
        super().__init__(data_root=data_root, ann_file=ann_file,
                         data_prefix=data_prefix, **kwargs)

    def load_annotations(self) -> ParsedAnnotations:
        from pycocotools.coco import COCO

        data = load_coco_json(self.ann_file)
        coco = COCO()  # build the index from the checked dict (no second file read)
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()

        cat_ids = sorted(coco.cats)
        classes = [coco.cats[c]['name'] for c in cat_ids]
        column = {cat_id: j for j, cat_id in enumerate(cat_ids)}

        if self.only_with_objects:
            img_ids = list(coco.imgToAnns)
        else:
            img_ids = [img['id'] for img in data['images']]
        labels = np.zeros((len(img_ids), len(classes)), dtype=np.float32)
        samples = []
        for row, img_id in enumerate(img_ids):
            if img_id not in coco.imgs:
                raise ValueError(f'{self.ann_file}: an annotation refers to image_id '
                                 f'{img_id}, which is not in "images"')
            for ann in coco.imgToAnns.get(img_id, ()):
                if ann['category_id'] not in column:
                    raise ValueError(f'{self.ann_file}: annotation {ann.get("id")} has '
                                     f'category_id {ann["category_id"]}, not in "categories"')
                labels[row, column[ann['category_id']]] = 1
            samples.append(dict(img_path=self.image_path(coco.imgs[img_id]['file_name']),
                                img_id=img_id))
        return ParsedAnnotations(classes, samples, labels)
