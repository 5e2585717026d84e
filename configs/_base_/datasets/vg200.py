# VG-200 (Visual Genome, 200 most frequent object classes; SARB-style list files).
from mmengine.config import read_base

with read_base():
    from .common import *  # noqa: F401,F403

dataset_type = 'VisualGenome200'
data_root = 'data/vg200'

train_dataloader = dict(
    **train_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train_list.txt',
        classes_file='vg200_classes.txt',
        data_prefix=dict(img_path='VG_100K'),
        label_simulation=dict(type='PartialLabels', known_ratio=1.0, seed=0),
        pipeline=train_pipeline),
)

val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='test_list.txt',
        classes_file='vg200_classes.txt',
        data_prefix=dict(img_path='VG_100K'),
        test_mode=True,
        pipeline=test_pipeline),
)
val_evaluator = dict(type='MultiLabelRecognitionMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
