"""Misspelt top-level config keys fail with a one-line error naming the likely key."""
from pathlib import Path

import pytest
from mmengine.config import Config

from mlr_plugin.engine.config_checks import check_top_level_keys, likely_typo_of
from mlr_plugin.engine.launch import load_config

CONFIG_DIR = Path(__file__).parent.parent / 'configs'
CONFIGS = sorted(CONFIG_DIR.rglob('*.py'))
BASE = CONFIG_DIR / 'dualcoop_pp' / 'coco_p30.py'


@pytest.fixture(scope='module')
def base_text(tmp_path_factory):
    # a flat copy of a real config, to append lines to
    path = tmp_path_factory.mktemp('cfg') / 'base.py'
    Config.fromfile(str(BASE)).dump(str(path))
    return path.read_text()


def _child(tmp_path, base_text, body):
    path = tmp_path / 'child.py'
    path.write_text(f'{base_text}\n{body}\n')
    return str(path)


@pytest.mark.parametrize('line, typo, known', [
    ("modle = dict(type='DualCoOp')", 'modle', 'model'),
    ('trian_cfg = dict(max_epochs=1)', 'trian_cfg', 'train_cfg'),
    ('val_evalutor = None', 'val_evalutor', 'val_evaluator'),
])
def test_typo_in_config_file_names_the_likely_key(tmp_path, base_text, line, typo, known):
    config = _child(tmp_path, base_text, line)
    with pytest.raises(ValueError) as info:
        load_config(config)
    message = str(info.value)
    assert '\n' not in message and config in message
    assert f"'{typo}'" in message and f"did you mean '{known}'" in message


def test_typo_in_cfg_options_names_the_likely_key():
    with pytest.raises(ValueError, match=r"--cfg-options: unknown top-level key "
                                         r"'trian_cfg', did you mean 'train_cfg'"):
        load_config(str(BASE), ['trian_cfg.max_epochs=1'])
    with pytest.raises(ValueError, match="did you mean 'model'"):
        load_config(str(BASE), ['modle.backbone.pretrained=None'])
    cfg = load_config(str(BASE), ['train_cfg.max_epochs=1', 'my_note=1'])
    assert cfg.train_cfg.max_epochs == 1 and cfg.my_note == 1


def test_users_own_variables_stay_allowed(tmp_path, base_text):
    cfg = load_config(_child(tmp_path, base_text, 'image_size = 64\ndata_root = "x"\n'
                                       'train_loader = dict()\n_modle = 1'))
    assert cfg.image_size == 64
    for key in ('image_size', 'data_root', 'train_pipeline', 'test_pipeline',
                'train_loader', 'test_loader', 'eval_loader', 'dataset_type', '_modle',
                'model', 'train_cfg', 'work_dir'):
        assert likely_typo_of(key) is None, key
    check_top_level_keys(dict(image_size=1, model=None))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_config_passes_the_check(path):
    load_config(str(path))
