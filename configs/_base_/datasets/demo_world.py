# The embedded demo world: 20 classes of coloured shapes, COCO format, 128 px images,
# train 8000 / val 300 / test 500. Generate it first (deterministic, ~40 s):
#   python -m mlr_plugin.datasets.demo_world --out data/demo_world
dataset_type = 'CocoMultiLabel'
data_root = 'data/demo_world'

# Images are already 128 px (the demo CLIP's size): decode, flip, done.
demo_train_pipeline = [
    dict(type='LoadImageCV2', to_rgb=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
demo_test_pipeline = [
    dict(type='LoadImageCV2', to_rgb=True),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='EpochSeededSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img_path='train'),
        label_simulation=dict(type='PartialLabels', known_ratio=1.0, seed=0),
        pipeline=demo_train_pipeline),
)
eval_loader = dict(
    batch_size=100,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='EpochSeededSampler', shuffle=False),
)
val_dataloader = dict(
    **eval_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img_path='val'),
        test_mode=True,
        pipeline=demo_test_pipeline),
)
val_evaluator = dict(type='MultiLabelRecognitionMetric')

# The demo keeps validation (model selection) and test apart.
test_dataloader = dict(
    **eval_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_test.json',
        data_prefix=dict(img_path='test'),
        test_mode=True,
        pipeline=demo_test_pipeline),
)
test_evaluator = val_evaluator
