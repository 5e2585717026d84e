"""Built-in class lists: the datasets' standard class orders and zero-shot splits.

A split name can be given as a dataset's ``classes`` option (``classes='coco_seen48'``);
the dataset then keeps exactly those columns, in the order listed here.
"""

# COCO-2014 instance categories, official names, in category-id order (1..90 with gaps).
COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck',
    'boat', 'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench',
    'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra',
    'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
    'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove',
    'skateboard', 'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup', 'fork',
    'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli',
    'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard',
    'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book',
    'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')

# COCO 48/17 zero-shot split (Bansal et al., ECCV 2018), in COCO category order.
COCO_SEEN_48 = (
    'person', 'bicycle', 'car', 'motorcycle', 'train', 'truck', 'boat', 'bench',
    'bird', 'horse', 'sheep', 'bear', 'zebra', 'giraffe', 'backpack', 'handbag',
    'suitcase', 'frisbee', 'skis', 'kite', 'surfboard', 'bottle', 'fork', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'pizza',
    'donut', 'chair', 'bed', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'microwave',
    'oven', 'toaster', 'refrigerator', 'book', 'clock', 'vase', 'toothbrush')
COCO_UNSEEN_17 = (
    'airplane', 'bus', 'cat', 'dog', 'cow', 'elephant', 'umbrella', 'tie', 'snowboard',
    'skateboard', 'cup', 'knife', 'cake', 'couch', 'keyboard', 'sink', 'scissors')
# GZSL evaluation: seen classes first, then unseen (so columns [48:] are the unseen ones).
COCO_ZSL_65 = COCO_SEEN_48 + COCO_UNSEEN_17

# PASCAL VOC 2007/2012, the standard order of the devkit.
VOC_CLASSES = (
    'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
    'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
    'sheep', 'sofa', 'train', 'tvmonitor')

# The 81 NUS-WIDE concepts (Concepts81.txt order): the unseen labels of the 925/81
# zero-shot protocol.
NUSWIDE_CONCEPTS_81 = (
    'airport', 'animal', 'beach', 'bear', 'birds', 'boats', 'book', 'bridge',
    'buildings', 'cars', 'castle', 'cat', 'cityscape', 'clouds', 'computer', 'coral',
    'cow', 'dancing', 'dog', 'earthquake', 'elk', 'fire', 'fish', 'flags', 'flowers',
    'food', 'fox', 'frost', 'garden', 'glacier', 'grass', 'harbor', 'horses', 'house',
    'lake', 'leaf', 'map', 'military', 'moon', 'mountain', 'nighttime', 'ocean',
    'person', 'plane', 'plants', 'police', 'protest', 'railroad', 'rainbow',
    'reflection', 'road', 'rocks', 'running', 'sand', 'sign', 'sky', 'snow', 'soccer',
    'sports', 'statue', 'street', 'sun', 'sunset', 'surf', 'swimmers', 'tattoo',
    'temple', 'tiger', 'tower', 'town', 'toy', 'train', 'tree', 'valley', 'vehicle',
    'water', 'waterfall', 'wedding', 'whales', 'window', 'zebra')

CLASS_SPLITS = {
    'coco_seen48': COCO_SEEN_48,
    'coco_unseen17': COCO_UNSEEN_17,
    'coco_zsl65': COCO_ZSL_65,
    'nuswide_concepts81': NUSWIDE_CONCEPTS_81,
}
# Splits defined beside their generator, imported on first use (importing the generator
# with the package would upset `python -m mlr_plugin.datasets.demo_world`).
_LAZY_SPLITS = {
    'demo_seen15': ('mlr_plugin.datasets.demo_world', 'DEMO_SEEN'),
    'demo_unseen5': ('mlr_plugin.datasets.demo_world', 'DEMO_UNSEEN'),
}


def get_class_split(name: str) -> tuple:
    """Return the class names of a built-in split, e.g. ``'coco_seen48'``."""
    if name in _LAZY_SPLITS:
        import importlib
        module, attr = _LAZY_SPLITS[name]
        return tuple(getattr(importlib.import_module(module), attr))
    if name not in CLASS_SPLITS:
        raise ValueError(f'unknown class split {name!r}; built-in splits: '
                         f'{sorted([*CLASS_SPLITS, *_LAZY_SPLITS])} (or pass a list of '
                         'class names)')
    return CLASS_SPLITS[name]
