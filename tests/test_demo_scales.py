"""The demo heads' scales follow the demo CLIP's logit scale (tools/demo/demo_scales.py)."""
import math
import os.path as osp
import sys

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))

from demo_scales import (dualcoop_pp_scales, dualcoop_scales,  # noqa: E402
                         logit_scale_of)


def test_scales_against_a_hand_computation():
    # OpenAI CLIP (logit scale 100) gets the papers' constants back
    assert dualcoop_scales(100.0) == pytest.approx(dict(spatial_scale=20.0, logit_scale=5.0))
    assert dualcoop_pp_scales(100.0) == pytest.approx(
        dict(map_scale=math.exp(3), init_log_temperature=3.0, gamma=200.0))
    # logit scale 25 -> r = 1/4: 20 x 5 -> 10 x 2.5; e^3 / 4 = 5.0214; 3 + ln(1/4) = 1.6137;
    # 200 / 4 = 50
    assert dualcoop_scales(25.0) == pytest.approx(dict(spatial_scale=10.0, logit_scale=2.5))
    assert dualcoop_pp_scales(25.0) == pytest.approx(
        dict(map_scale=5.0214, init_log_temperature=1.6137, gamma=50.0), abs=1e-4)


def test_demo_weights_logit_scale():
    # the shipped CLIP stores log(scale) = 2.5801 (fp16): exp -> 13.198
    assert logit_scale_of() == pytest.approx(13.198, abs=1e-3)


def test_demo_configs_use_the_derived_scales():
    s = logit_scale_of()
    pp = Config.fromfile(osp.join(REPO, 'configs/demo/dualcoop_pp_p10.py')).model.head
    for key, value in dualcoop_pp_scales(s).items():
        assert pp[key] == pytest.approx(value, rel=2e-3), key
    dc = Config.fromfile(osp.join(REPO, 'configs/demo/dualcoop_p10.py')).model.head
    # DualCoOp keeps its rounded 7 x 2 (7.27 x 1.82 derived): the product, the scale of its
    # logit, is within 7% of the CLIP's logit scale
    assert dc.spatial_scale * dc.logit_scale == pytest.approx(s, rel=0.07)
