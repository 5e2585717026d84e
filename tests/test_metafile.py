"""configs/<method>/metafile.yml: every config listed once under a unique name, every
listed config exists, and the default work dir follows the metafile name."""
import os.path as osp
import shutil
from pathlib import Path

import pytest

from mlr_plugin.engine.launch import build_runner_config, default_work_dir
from mlr_plugin.engine.metafile import (load_metafile, metafile_models,
                                        model_name_for_config, resolve_config_path)

REPO = Path(__file__).parent.parent
CONFIG_DIR = REPO / 'configs'
CONFIGS = sorted(p for p in CONFIG_DIR.rglob('*.py') if '_base_' not in p.parts)
METAFILES = sorted(CONFIG_DIR.glob('*/metafile.yml'))


def _all_models():
    return [(mf, m) for mf in METAFILES for m in metafile_models(str(mf))]


def test_every_config_folder_has_a_metafile():
    folders = {p.parent for p in CONFIGS}
    assert folders == {mf.parent for mf in METAFILES}
    assert {f.name for f in folders} >= {'dualcoop', 'dualcoop_pp', 'demo'}


def test_names_unique_and_every_config_listed_exactly_once():
    models = _all_models()
    names = [m['Name'] for _, m in models]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    listed = [m['Config'] for _, m in models]
    assert all(c is not None for c in listed)
    for config in listed:
        assert osp.isfile(config), f'{config} is listed but does not exist'
    expected = sorted(osp.realpath(p) for p in CONFIGS)
    assert sorted(osp.realpath(c) for c in listed) == expected
    for metafile, model in models:
        # a metafile lists only the configs of its own folder
        assert osp.dirname(model['Config']) == str(metafile.parent)


def test_entries_are_openmmlab_style():
    collections = {}
    for mf in METAFILES:
        data = load_metafile(str(mf))
        for coll in data['Collections']:
            assert coll['Paper']['URL'].startswith('https://arxiv.org/abs/')
            assert (REPO / coll['README']).is_file()
            collections[coll['Name']] = coll
    assert set(collections) == {'DualCoOp', 'DualCoOp++', 'TRM-ML', 'SD-CSP', 'MKT'}
    for mf in METAFILES:
        for model in load_metafile(str(mf))['Models']:
            assert model['In Collection'] in collections, model['Name']
            assert model['Config'].startswith('configs/')
            assert 'Weights' in model and model['Weights'] is None
            meta = model['Metadata']
            for key in ('Training Data', 'Backbone', 'Input Size', 'Label Setting'):
                assert meta.get(key), f'{model["Name"]} has no Metadata.{key}'


@pytest.mark.parametrize('config, name', [
    ('dualcoop_pp/coco_p30.py', 'dualcoop-pp_rn101_coco-p30'),
    ('dualcoop/coco_p30.py', 'dualcoop_rn101_coco-p30'),
    ('dualcoop/coco_zsl_handcrafted.py', 'dualcoop-handcrafted_rn50_coco-zsl'),
    ('demo/dualcoop_p10.py', 'dualcoop_demo-rn_demo-world-p10'),
])
def test_model_name_and_default_work_dir(config, name):
    path = CONFIG_DIR / config
    assert model_name_for_config(str(path)) == name
    # relative paths (as typed on the command line) resolve the same way
    rel = osp.relpath(path)
    assert model_name_for_config(rel) == name
    assert default_work_dir(rel) == osp.join('work_dirs', name)


def test_work_dir_falls_back_to_the_config_stem(tmp_path):
    # no metafile next to the config
    lone = tmp_path / 'my_run.py'
    shutil.copy(CONFIG_DIR / 'demo' / 'dualcoop_p10.py', lone)
    assert model_name_for_config(str(lone)) is None
    assert default_work_dir(str(lone)) == osp.join('work_dirs', 'my_run')
    # a metafile that does not list the config
    folder = tmp_path / 'configs' / 'mine'
    folder.mkdir(parents=True)
    (folder / 'metafile.yml').write_text(
        'Models:\n  - Name: other\n    In Collection: X\n'
        '    Config: configs/mine/other.py\n')
    (folder / 'unlisted.py').write_text('x = 1\n')
    (folder / 'other.py').write_text('x = 1\n')
    assert model_name_for_config(str(folder / 'unlisted.py')) is None
    unlisted = str(folder / 'unlisted.py')
    assert default_work_dir(unlisted) == osp.join('work_dirs', 'unlisted')
    assert model_name_for_config(str(folder / 'other.py')) == 'other'


def test_resolve_config_path_needs_the_entry_folder_to_match(tmp_path):
    metafile = str(tmp_path / 'configs' / 'dualcoop' / 'metafile.yml')
    assert resolve_config_path(metafile, 'configs/dualcoop/a.py') == \
        str(tmp_path / 'configs' / 'dualcoop' / 'a.py')
    assert resolve_config_path(metafile, 'configs/other/a.py') is None


def test_build_runner_config_uses_the_metafile_name(tmp_path):
    cfg = build_runner_config(str(CONFIG_DIR / 'dualcoop_pp' / 'coco_p30.py'))
    assert cfg.work_dir == osp.join('work_dirs', 'dualcoop-pp_rn101_coco-p30')
    cfg = build_runner_config(str(CONFIG_DIR / 'dualcoop_pp' / 'coco_p30.py'),
                              work_dir=str(tmp_path))
    assert cfg.work_dir == str(tmp_path)


def test_load_metafile_rejects_entries_without_config(tmp_path):
    bad = tmp_path / 'metafile.yml'
    bad.write_text('Models:\n  - Name: x\n')
    with pytest.raises(ValueError, match='Config'):
        load_metafile(str(bad))
