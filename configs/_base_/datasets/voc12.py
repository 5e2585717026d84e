# PASCAL VOC 2012 multi-label, 20 classes (train -> val: the test set of the
# single-positive benchmarks, which have no public VOC 2012 test labels).
from mmengine.config import read_base

with read_base():
    from .common import *  # noqa: F401,F403

dataset_type = 'VOCMultiLabel'
data_root = 'data/VOCdevkit/VOC2012'

train_dataloader = dict(
    **train_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        label_simulation=dict(type='PartialLabels', known_ratio=1.0, seed=0),
        pipeline=train_pipeline),
)

val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        test_mode=True,
        pipeline=test_pipeline),
)
val_evaluator = dict(type='MultiLabelRecognitionMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
