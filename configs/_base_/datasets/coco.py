# COCO-2014 multi-label, 80 classes (train2014 -> val2014). Partial labels: a child sets
#   train_dataloader.dataset.label_simulation.known_ratio = 0.3
from mmengine.config import read_base

with read_base():
    from .common import *  # noqa: F401,F403

dataset_type = 'CocoMultiLabel'
data_root = 'data/coco'

train_dataloader = dict(
    **train_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2014.json',
        data_prefix=dict(img_path='train2014'),
        label_simulation=dict(type='PartialLabels', known_ratio=1.0, seed=0),
        pipeline=train_pipeline),
)

# COCO has no official validation split besides val2014, which is also the test set:
# numbers are reported from the final checkpoint (see README), not the "best" one.
val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2014.json',
        data_prefix=dict(img_path='val2014'),
        test_mode=True,
        pipeline=test_pipeline),
)
val_evaluator = dict(type='MultiLabelRecognitionMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
