# Open Images, open-vocabulary protocol of MKT (after LESA / BiAM), 224 px; files and
# formats in docs/protocols.md ("Open Images"):
# - train: train images with at least one positive among the 7,186 seen (trainable)
#   classes, labelled with the seen classes only (unseen rows are skipped at parse time);
# - test: the test images scored on all 7,586 classes; GZSL over the images with a
#   positive among the 7,586, ZSL (keys 'zsl/...') over those with a positive among the
#   400 unseen, from the same run; mAP and P/R/F1 at K = 10 and 20.
# The split is read from the files the protocol's data preparation (MKT / BiAM / LESA)
# leaves in 2018_04/, used as they are: seen = Google's classes-trainable.txt (7,186
# MIDs, file order); unseen = unseen_labels.pkl (a pickled sequence of 2,594 MIDs, read
# by a restricted unpickler) at the 400 rows listed in top_400_unseen.csv, in its order.
from mmengine.config import read_base

with read_base():
    from .common_224px import *  # noqa: F401,F403

dataset_type = 'OpenImagesMultiLabel'
data_root = 'data/openimages'
class_files = dict(
    class_desc_file='2018_04/class-descriptions.csv',
    seen_classes_file='2018_04/classes-trainable.txt',
    unseen_classes_file='2018_04/unseen_labels.pkl',
    unseen_index_file='2018_04/top_400_unseen.csv')

train_dataloader = dict(
    **train_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='2018_04/train/train-annotations-human-imagelabels.csv',
        **class_files,
        class_subset='seen',
        data_prefix=dict(img_path='train'),
        drop_no_positive=True,
        # ~9M images: an existence check (~45 s) instead of reading every header
        check_images='exists',
        pipeline=train_pipeline),
)

val_dataloader = dict(
    **test_loader,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='2018_04/test/test-annotations-human-imagelabels.csv',
        **class_files,
        class_subset='all',
        data_prefix=dict(img_path='test'),
        # the GZSL rule up front (the ZSL images are a subset): saves metric memory
        drop_no_positive=True,
        check_images='exists',
        test_mode=True,
        pipeline=test_pipeline),
)
# 'dataset:unseen' = the dataset's metainfo['class_subsets']['unseen'] (the 400 names);
# drop_empty_rows: each class set is scored on the images with a positive among it.
val_evaluator = dict(type='MultiLabelRecognitionMetric', topk=None, ks=(10, 20),
                     class_subsets=dict(zsl='dataset:unseen'), drop_empty_rows=True)

test_dataloader = val_dataloader
test_evaluator = val_evaluator
