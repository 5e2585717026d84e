# NUS-WIDE, 81 concepts, official release layout (Train -> Test image lists, per-concept
# ground truth). Images without any positive concept are dropped (~150k / ~100k).
# Partial labels: a child sets train_dataloader.dataset.label_simulation.known_ratio.
from mmengine.config import read_base

with read_base():
    from .common import *  # noqa: F401,F403

dataset_type = 'NUSWIDE'
data_root = 'data/nus_wide'

train_dataloader = dict(
    **train_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageList/TrainImagelist.txt',
        classes_file='Concepts81.txt',
        label_dir='Groundtruth/TrainTestLabels',
        split='Train',
        data_prefix=dict(img_path='Flickr'),
        drop_no_positive=True,
        label_simulation=dict(type='PartialLabels', known_ratio=1.0, seed=0),
        pipeline=train_pipeline),
)

val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageList/TestImagelist.txt',
        classes_file='Concepts81.txt',
        label_dir='Groundtruth/TrainTestLabels',
        split='Test',
        data_prefix=dict(img_path='Flickr'),
        drop_no_positive=True,
        test_mode=True,
        pipeline=test_pipeline),
)
val_evaluator = dict(type='MultiLabelRecognitionMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
