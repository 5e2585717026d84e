# CUB-200-2011 with its 312 binary attributes as classes (train 5,994 -> test 5,794).
# An attribute is positive when the annotator marked it present (is_present = 1),
# whatever the certainty (docs/protocols.md); data_root is the CUB_200_2011 folder.
from mmengine.config import read_base

with read_base():
    from .common import *  # noqa: F401,F403

dataset_type = 'CUB200Attributes'
data_root = 'data/CUB_200_2011'

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
        split='test',
        test_mode=True,
        pipeline=test_pipeline),
)
val_evaluator = dict(type='MultiLabelRecognitionMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
