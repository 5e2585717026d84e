"""Head scales of the demo configs, derived from the demo CLIP's own logit scale.

    python tools/demo/demo_scales.py      # prints the logit scale and the derived scales

The papers' fixed constants were set for OpenAI CLIP, whose learned logit scale is 100
(cosine similarities times 100 are its logits). A CLIP with logit scale ``s`` spreads its
cosines ``100 / s`` times wider for the same confidence, so every constant that multiplies
a cosine is rescaled by ``r = s / 100``:

- DualCoOp: the logit multiplies the cosine by ``spatial_scale x logit_scale`` (20 x 5 =
  100), so the product becomes ``100 r = s``, split evenly (each factor x ``sqrt(r)``).
- DualCoOp++: the map scale ``k`` (e^3), the evidence temperature ``T`` (e^3, stored as its
  log ``s_T = 3``) and the Winner-Take-All sharpness ``gamma`` (200) each multiply a
  cosine on their own, so each is multiplied by ``r`` (``s_T`` becomes ``3 + ln r``).
"""
import math
import os.path as osp

OPENAI_LOGIT_SCALE = 100.0
DEMO_WEIGHTS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                        'mlr_plugin', 'demo', 'mlr-demo-rn.safetensors')


def logit_scale_of(weights: str = DEMO_WEIGHTS) -> float:
    """``exp(logit_scale)`` stored in a CLIP state dict (safetensors)."""
    from safetensors import safe_open
    with safe_open(weights, framework='pt') as f:
        return math.exp(float(f.get_tensor('logit_scale').float()))


def dualcoop_scales(logit_scale: float) -> dict:
    """DualCoOp's ``spatial_scale`` (20) and ``logit_scale`` (5), product ``logit_scale``."""
    root = math.sqrt(logit_scale / OPENAI_LOGIT_SCALE)
    return dict(spatial_scale=20.0 * root, logit_scale=5.0 * root)


def dualcoop_pp_scales(logit_scale: float) -> dict:
    """DualCoOp++'s ``map_scale`` (e^3), ``init_log_temperature`` (3) and ``gamma`` (200)."""
    r = logit_scale / OPENAI_LOGIT_SCALE
    return dict(map_scale=math.exp(3.0) * r, init_log_temperature=3.0 + math.log(r),
                gamma=200.0 * r)


if __name__ == '__main__':
    s = logit_scale_of()
    print(f'demo CLIP logit scale {s:.4f} (r = {s / OPENAI_LOGIT_SCALE:.4f})')
    print('DualCoOp  ', {k: round(v, 3) for k, v in dualcoop_scales(s).items()})
    print('DualCoOp++', {k: round(v, 3) for k, v in dualcoop_pp_scales(s).items()})
