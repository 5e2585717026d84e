"""Registered defaults are the papers' recipes: a small config that names only the type
of a head or prompt learner trains as the model base config does (issue 16, item 3)."""
import math
from pathlib import Path

import pytest
from mmengine.config import Config
from mmpretrain.registry import MODELS

REPO = Path(__file__).parent.parent
BASES = ('dualcoop_rn101.py', 'dualcoop_pp_rn101.py')


def _model(base):
    return Config.fromfile(str(REPO / 'configs' / '_base_' / 'models' / base)).model


def _head_value(head, key):
    if key == 'init_log_temperature':
        return head.log_temperature.item()
    return getattr(head, key)


@pytest.mark.parametrize('base', BASES)
def test_head_built_without_arguments_is_the_recipe(base):
    recipe = _model(base).head
    head = MODELS.build(dict(type=recipe.type))
    for key, value in recipe.items():
        if key in ('type', 'loss'):
            continue
        assert _head_value(head, key) == pytest.approx(value), f'{recipe.type}.{key}'
    loss = head.loss_module
    assert type(loss).__name__ == recipe.loss.type
    for key, value in recipe.loss.items():
        if key == 'type':
            continue
        got = getattr(loss, key)
        assert got == (value if isinstance(value, str) else pytest.approx(value)), \
            f'{recipe.type}.loss.{key}: default {got}, recipe {value}'


def test_dualcoop_head_default_loss_is_the_coco_recipe():
    """The case the issue reported: sum x 1.0 instead of 0.03 made small configs diverge."""
    loss = MODELS.build(dict(type='DualCoOpHead')).loss_module
    assert (loss.eps, loss.reduction, loss.loss_weight) == (1e-6, 'sum', 0.03)
    loss = MODELS.build(dict(type='DualCoOpPlusPlusHead')).loss_module
    assert (loss.eps, loss.reduction, loss.loss_weight) == (1e-8, 'sum', 0.02)
    assert math.isclose(MODELS.build(dict(type='DualCoOpPlusPlusHead')).map_scale,
                        math.exp(3))


def test_learnable_prompts_default_to_dualcoop_contexts():
    """n_ctx 16 and (pos, neg) contexts: DualCoOp's recipe (DualCoOp++ configs set 21 and
    add the evidence context; class_specific needs the dataset's class count)."""
    recipe = _model('dualcoop_rn101.py').prompt_learner
    prompts = MODELS.build(dict(type='LearnablePrompts'))
    assert prompts.n_ctx == recipe.n_ctx == 16
    assert tuple(prompts.prompt_names) == tuple(recipe.prompt_names)
