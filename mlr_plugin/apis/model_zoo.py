"""Models by name, the mmpretrain way: every ``Models`` entry of ``configs/*/metafile.yml``.

    >>> from mlr_plugin.apis import list_models, get_model
    >>> list_models('demo')
    ['dualcoop-handcrafted_demo-rn_demo-world-zsl', 'dualcoop-pp_demo-rn_demo-world-p10', ...]
    >>> model = get_model('dualcoop_demo-rn_demo-world-p10', pretrained='epoch_5.pth')

The configs are found in the package (``mlr_plugin/configs`` in an installed wheel) or,
in a source checkout, in the repository's ``configs/``.
"""
import copy
import difflib
import fnmatch
import functools
import glob
import os
import os.path as osp
from typing import Dict, List, Optional, Union

from mlr_plugin.engine.metafile import METAFILE_NAME, load_metafile, resolve_config_path


def config_root() -> str:
    """The folder holding ``<method>/metafile.yml``: the installed ``mlr_plugin/configs``
    or the source checkout's ``configs/``."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for root in (osp.join(package, 'configs'), osp.join(osp.dirname(package), 'configs')):
        if glob.glob(osp.join(root, '*', METAFILE_NAME)):
            return root
    raise FileNotFoundError(f'no configs/*/{METAFILE_NAME} found in {package} or beside it: '
                            'is mlr_plugin installed with its configs?')


def model_index(root: Optional[str] = None) -> Dict[str, dict]:
    """``{Name: entry}`` over every metafile under ``root`` (default :func:`config_root`),
    sorted by name. Each entry is the metafile's model entry with ``Config`` made an
    absolute path, plus ``Metafile`` (its file) and ``Collection`` (the collection entry
    it belongs to, or ``{}``). A name listed twice is an error. Parsed once per set of
    metafile modification times."""
    root = root or config_root()
    metafiles = sorted(glob.glob(osp.join(root, '*', METAFILE_NAME)))
    stamp = tuple((path, os.stat(path).st_mtime_ns) for path in metafiles)
    return copy.deepcopy(_parse_index(stamp))


@functools.lru_cache(maxsize=8)
def _parse_index(stamp: tuple) -> Dict[str, dict]:
    index = {}
    for metafile, _ in stamp:
        data = load_metafile(metafile)
        collections = {c.get('Name'): c for c in data['Collections'] if isinstance(c, dict)}
        for model in data['Models']:
            name = model['Name']
            if name in index:
                raise ValueError(f'{metafile}: model name {name!r} is already listed in '
                                 f'{index[name]["Metafile"]}; names must be unique')
            entry = dict(model)
            entry['Config'] = resolve_config_path(metafile, model['Config'])
            entry['Metafile'] = metafile
            entry['Collection'] = collections.get(model.get('In Collection'), {})
            index[name] = entry
    for entry in index.values():  # collections may live in another metafile
        if not entry['Collection']:
            for other in index.values():
                wanted = entry.get('In Collection')
                if other['Collection'].get('Name') == wanted and wanted is not None:
                    entry['Collection'] = other['Collection']
                    break
    return dict(sorted(index.items()))


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Names of the models in the metafiles, sorted. ``pattern``: a shell wildcard
    (``'dualcoop_*coco*'``); without wildcard characters it matches any name containing
    it (``'demo'``)."""
    names = list(model_index())
    if pattern is None:
        return names
    if not any(ch in pattern for ch in '*?['):
        pattern = f'*{pattern}*'
    return fnmatch.filter(names, pattern)


def model_info(name: str) -> dict:
    """The metafile entry of ``name`` (see :func:`model_index`); an unknown name is a
    one-line error listing close matches."""
    index = model_index()
    if name not in index:
        close = difflib.get_close_matches(name, list(index), n=3, cutoff=0.4)
        hint = ('did you mean ' + ', '.join(repr(c) for c in close) + '?' if close
                else 'no close match')
        raise ValueError(f'unknown model name {name!r} ({hint}); list_models() gives all '
                         f'{len(index)} names')
    entry = index[name]
    if entry['Config'] is None or not osp.isfile(entry['Config']):
        raise FileNotFoundError(f'{entry["Metafile"]}: the config of {name!r} is missing '
                                f'({entry["Config"]})')
    return entry


def get_model(name: str, pretrained: Union[str, bool, None] = None,
              device: Optional[str] = None, **cfg_options):
    """Build the model ``name`` (a metafile name, or a config ``.py`` file).

    Args:
        name: a name from :func:`list_models`, or a config file.
        pretrained: a checkpoint to load (strictly, checked complete: the frozen CLIP
            comes from the config's own weights); ``True`` loads the metafile's
            ``Weights``; None / False loads nothing. A checkpoint written by
            ``tools/train.py`` also sets the model's class names.
        device: where to put the model (default: where it was built, the CPU).
        **cfg_options: overrides of the model config, keys may be dotted:
            ``get_model(name, head=dict(topk=3))``, ``**{'backbone.image_size': 224}``.

    Returns:
        the model in eval mode; ``model._config`` is its full config (the test pipeline
        :class:`~mlr_plugin.apis.MultiLabelInferencer` uses), ``model.dataset_meta`` holds
        the checkpoint's ``classes`` when it has them.
    """
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS

    from mlr_plugin.engine.launch import load_config
    from mlr_plugin.models.checkpoint import require_complete

    config = name if name.endswith('.py') else model_info(name)['Config']
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict({f'model.{key}': value for key, value in cfg_options.items()})
    if pretrained is True:
        pretrained = model_info(name).get('Weights') if not name.endswith('.py') else None
        if not pretrained:
            raise ValueError(f'{name}: the metafile lists no Weights; pass a checkpoint '
                             'path as pretrained=')
    model = MODELS.build(cfg.model)
    model._config = cfg
    model.dataset_meta = {}
    if pretrained:
        from mlr_plugin.apis.inference import read_checkpoint_meta
        load_checkpoint(model, pretrained, map_location='cpu', strict=True)
        require_complete(model, pretrained)
        classes = (read_checkpoint_meta(pretrained).get('dataset_meta') or {}).get('classes')
        if classes:
            model.set_class_names(classes)
            model.dataset_meta = dict(classes=list(classes))
    if device is not None:
        model.to(device)
    return model.eval()


TABLE_COLUMNS = ('Name', 'Method', 'Dataset', 'Setting', 'Config', 'Paper mAP')


def paper_map(entry: dict) -> str:
    """The ``mAP`` metrics of an entry's ``Results`` (OpenMMLab format: a list of
    ``{Task, Dataset, Metrics: {mAP: ...}}``), ``'-'`` when there are none; several
    results are named by their dataset."""
    found = []
    for result in entry.get('Results') or []:
        metrics = result.get('Metrics') or {} if isinstance(result, dict) else {}
        for key, value in metrics.items():
            if 'map' in str(key).lower():
                found.append((result.get('Dataset'), key, value))
    if not found:
        return '-'
    if len(found) == 1:
        return str(found[0][2])
    return ', '.join(f'{value} ({dataset or key})' for dataset, key, value in found)


def model_table(root: Optional[str] = None, names: Optional[List[str]] = None) -> str:
    """A Markdown table of every metafile model (:data:`TABLE_COLUMNS`), by name;
    ``names``: only these."""
    root = root or config_root()
    base = osp.dirname(root)  # the folder configs/ paths are given from

    def cell(value) -> str:
        if isinstance(value, (list, tuple)):
            value = ', '.join(map(str, value))
        return str(value if value not in (None, '') else '-').replace('|', '\\|')

    lines = ['| ' + ' | '.join(TABLE_COLUMNS) + ' |',
             '|' + '|'.join('---' for _ in TABLE_COLUMNS) + '|']
    for name, entry in model_index(root).items():
        if names is not None and name not in names:
            continue
        meta = entry.get('Metadata') or {}
        config = entry['Config']
        config = osp.relpath(config, base) if config else None
        row = [name, entry.get('In Collection'), meta.get('Training Data'),
               meta.get('Label Setting'), f'`{config}`' if config else None,
               paper_map(entry)]
        lines.append('| ' + ' | '.join(cell(v) for v in row) + ' |')
    return '\n'.join(lines) + '\n'
