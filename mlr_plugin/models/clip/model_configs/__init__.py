"""open_clip architecture configs shipped with mlr_plugin (tiny test models, demo CLIP).

Every ``*.json`` in this folder is registered with open_clip under its file stem, so
``open_clip.create_model('mlr-tiny-rn')`` and ``OpenCLIPBackbone(model_name=...)`` work.
"""
from pathlib import Path

CONFIG_DIR = Path(__file__).parent


def register_model_configs():
    import open_clip
    for path in sorted(CONFIG_DIR.glob('*.json')):
        if path.stem not in open_clip.list_models():
            open_clip.add_model_config(path)
