# configs/demo/dualcoop_p10.py trained from cached image-tower features: the frozen tiny
# CLIP runs once per image and view (8 views of the demo's random flip), training and
# testing then read fp16 features instead of decoding images (docs/feature_cache.md).
#   python -m mlr_plugin.datasets.demo_world --out data/demo_world
#   python tools/cache_features.py configs/demo/dualcoop_p10_cached.py
#   python tools/train.py configs/demo/dualcoop_p10_cached.py
from mmengine.config import read_base

with read_base():
    from .dualcoop_p10 import *  # noqa: F401,F403

# Only images are cached, not labels: every known_ratio of the demo can share this cache.
feature_cache_root = 'data/feature_cache/demo_world_mlr-demo-rn_128'

# The image datasets keep their settings (data_root, pipeline, labels): the cache is
# checked against them, and is stale when the pipeline or the image list changed.
train_dataloader.dataset.update(
    type='CachedFeatureDataset', image_dataset=dataset_type,
    feature_cache=dict(root=feature_cache_root, split='train', num_views=8))
val_dataloader.dataset.update(
    type='CachedFeatureDataset', image_dataset=dataset_type,
    feature_cache=dict(root=feature_cache_root, split='val'))
test_dataloader.dataset.update(
    type='CachedFeatureDataset', image_dataset=dataset_type,
    feature_cache=dict(root=feature_cache_root, split='test'))
