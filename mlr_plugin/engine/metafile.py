"""OpenMMLab-style ``metafile.yml`` files next to the configs: read them and name a config.

Each method folder (``configs/<method>/``) holds a ``metafile.yml`` with ``Collections``
(the paper) and ``Models``; every model entry has a unique ``Name`` and the ``Config`` it
is trained with, as a path from the repository root (``configs/dualcoop/coco_p30.py``).
"""
import os.path as osp
from typing import List, Optional

METAFILE_NAME = 'metafile.yml'


def load_metafile(path: str) -> dict:
    """Parse one metafile; ``Collections`` and ``Models`` are always lists."""
    import yaml
    with open(path, encoding='utf-8') as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: a metafile is a mapping with Collections / Models, '
                         f'got {type(data).__name__}')
    for key in ('Collections', 'Models'):
        value = data.get(key) or []
        if not isinstance(value, list):
            raise ValueError(f'{path}: {key} must be a list')
        data[key] = value
    for model in data['Models']:
        if not isinstance(model, dict) or not model.get('Name') or not model.get('Config'):
            raise ValueError(f'{path}: every entry of Models needs a Name and a Config, '
                             f'got {model!r}')
    return data


def resolve_config_path(metafile: str, config: str) -> Optional[str]:
    """Absolute path of a metafile's ``Config`` entry, or None when it cannot point below
    the metafile's folder.

    ``Config`` is relative to the repository root, which is found by removing the entry's
    folder (``configs/dualcoop``) from the end of the metafile's folder, so the lookup
    works wherever the repository (or a copy of its configs/) lives.
    """
    if osp.isabs(config):
        return osp.normpath(config)
    folder = osp.dirname(osp.abspath(metafile))
    entry_dir = osp.normpath(osp.dirname(config))
    parts = [] if entry_dir in ('', '.') else entry_dir.split(osp.sep)
    root = folder
    for part in reversed(parts):
        if osp.basename(root) != part:
            return None
        root = osp.dirname(root)
    return osp.normpath(osp.join(root, config))


def metafile_models(metafile: str) -> List[dict]:
    """The ``Models`` entries of a metafile, each with ``Config`` made absolute (entries
    whose path does not fit the metafile's location keep ``None``)."""
    models = []
    for model in load_metafile(metafile)['Models']:
        model = dict(model)
        model['Config'] = resolve_config_path(metafile, model['Config'])
        models.append(model)
    return models


def model_name_for_config(path: str) -> Optional[str]:
    """The ``Name`` under which the ``metafile.yml`` next to ``path`` lists that config,
    or None (no metafile there, or the config is not listed)."""
    path = osp.realpath(path)
    metafile = osp.join(osp.dirname(path), METAFILE_NAME)
    if not osp.isfile(metafile):
        return None
    for model in metafile_models(metafile):
        if model['Config'] is not None and osp.realpath(model['Config']) == path:
            return model['Name']
    return None
