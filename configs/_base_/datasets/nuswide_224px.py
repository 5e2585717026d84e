# NUS-WIDE (nuswide.py) at 224 px: the same loaders with common_224px.py's pipelines.
from mmengine.config import read_base

with read_base():
    from .nuswide import *  # noqa: F401,F403
    from .common_224px import *  # noqa: F401,F403  (224 px pipelines replace 448 px)

train_dataloader.dataset.pipeline = train_pipeline
val_dataloader.dataset.pipeline = test_pipeline
test_dataloader.dataset.pipeline = test_pipeline
