# Zero-shot COCO 48/17 (Bansal et al. split; docs/protocols.md) at 224 px, as in the
# DualCoOp reference code:
# - train: train2014 images with at least one of the 48 seen classes, labelled with the
#   seen classes only (the 17 unseen names and labels are never used);
# - test (val2014, scored on all 65 classes): GZSL over the images with at least one of
#   the 65 classes, ZSL (keys 'zsl/...') over the images with at least one of the 17
#   unseen classes.
from mmengine.config import read_base

with read_base():
    from .coco_224px import *  # noqa: F401,F403

train_dataloader.dataset.update(
    classes='coco_seen48', drop_no_positive=True, label_simulation=None)
# drop_no_positive here only saves the metric work: drop_empty_rows below applies the
# same rule per class set.
val_dataloader.dataset.update(classes='coco_zsl65', drop_no_positive=True)
# drop_empty_rows: for the 65 classes and for each class_subsets entry, images without a
# positive among that set's classes are left out of that set's metrics (so ZSL is scored
# on the images that contain an unseen class, not on all val images).
val_evaluator.update(ks=(3, 5), class_subsets=dict(zsl='coco_unseen17'),
                     drop_empty_rows=True)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
