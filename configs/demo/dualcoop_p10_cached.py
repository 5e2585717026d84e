# configs/demo/dualcoop_p10.py trained from cached image-tower features: the frozen tiny
# CLIP runs once per image and view (8 views of the demo's random flip), training and
# testing then read fp16 features instead of decoding images (docs/feature_cache.md).
#   python -m mlr_plugin.datasets.demo_world --out data/demo_world
#   python tools/cache_features.py configs/demo/dualcoop_p10_cached.py
#   python tools/train.py configs/demo/dualcoop_p10_cached.py
from mmengine.config import read_base

with read_base():
    from .dualcoop_p10 import *  # noqa: F401,F403

# Labels are not cached (only images): every known_ratio of the demo shares this cache.
feature_cache_root = 'data/feature_cache/demo_world_mlr-demo-rn_128'

train_dataloader.dataset = dict(
    type='CachedFeatureDataset', root=feature_cache_root, split='train', num_views=8,
    dataset=train_dataloader.dataset)
val_dataloader.dataset = dict(
    type='CachedFeatureDataset', root=feature_cache_root, split='val',
    dataset=val_dataloader.dataset)
test_dataloader.dataset = dict(
    type='CachedFeatureDataset', root=feature_cache_root, split='test',
    dataset=test_dataloader.dataset)
