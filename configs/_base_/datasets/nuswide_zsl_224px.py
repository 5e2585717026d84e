# Zero-shot NUS-WIDE 925/81 (docs/protocols.md) at 224 px: train on the 925 Flickr tags
# (with the 81 concepts removed), test on all 1006 labels (GZSL) and on the 81 concepts
# from the same run (ZSL: keys 'zsl/...').
from mmengine.config import read_base

with read_base():
    from .nuswide_224px import *  # noqa: F401,F403

train_dataloader.dataset.update(
    tag_file='NUS_WID_Tags/Train_Tags1k.dat',
    tag_list_file='NUS_WID_Tags/TagList1k.txt',
    label_set='tags',
    label_simulation=None)
val_dataloader.dataset.update(
    tag_file='NUS_WID_Tags/Test_Tags1k.dat',
    tag_list_file='NUS_WID_Tags/TagList1k.txt',
    label_set='all')
val_evaluator.update(ks=(3, 5), class_subsets=dict(zsl='nuswide_concepts81'))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
