"""Each batched op of the GPU data path (mlr_plugin/datasets/transforms/gpu_ops.py), run on
CPU tensors, against the CPU pipeline's op (mmcv / mmpretrain) on the same image.

Tolerances: integer ops (flip, invert, solarize, posterize, equalize, cutout, crop
boxes) are exact; blends (brightness, contrast, color, sharpness, solarize-add,
auto-contrast) and resizes are within 1 gray level (float32 vs cv2's fixed point or
float64 rounding); warps (rotate, translate: nearest; shear: bicubic) leave at most 1% of
pixels more than 1 level apart (cv2 quantises sample positions to 1/32 pixel) with a mean
difference under 0.5 level.
"""
import mmcv
import numpy as np
import pytest
import torch

from mlr_plugin.datasets.transforms import gpu_ops

FILL = (124, 116, 104)


def _image(h=48, w=40, seed=0):
    """A structured uint8 RGB image (gradients, a disc, noise): interpolation sees edges."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.stack([xs * 255 / w, ys * 255 / h, (xs + ys) * 127 / (h + w)], -1)
    img[(ys - h / 2) ** 2 + (xs - w / 3) ** 2 < (h / 4) ** 2] = (250, 30, 90)
    img = img + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _t(img):
    """HWC uint8 -> (1, 3, H, W) float, the GPU path's layout."""
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


def _np(t):
    return t[0].permute(1, 2, 0).numpy()


def _exact(ours, ref):
    np.testing.assert_array_equal(_np(ours), ref.astype(np.float32))


def _within_one(ours, ref):
    diff = np.abs(_np(ours) - ref.astype(np.float32))
    assert diff.max() <= 1, diff.max()


def _warp_close(ours, ref):
    diff = np.abs(_np(ours) - ref.astype(np.float32))
    assert (diff > 1).mean() <= 0.01, (diff > 1).mean()
    assert diff.mean() < 0.5, diff.mean()


IMG = _image()


@pytest.mark.parametrize('size', [(24, 20), (64, 72), (48, 40)])
def test_resize_matches_cv2_bilinear(size):
    ref = mmcv.imresize(IMG, (size[1], size[0]), interpolation='bilinear')
    _within_one(gpu_ops.resize(_t(IMG), size), ref)


def test_resized_crop_matches_mmpretrain_crop_then_resize():
    top, left, h, w = 5, 7, 30, 21
    ref = mmcv.imresize(mmcv.imcrop(IMG, np.array([left, top, left + w - 1, top + h - 1])),
                        (32, 32), interpolation='bilinear')
    _within_one(gpu_ops.resized_crop(_t(IMG)[0], (top, left, h, w), (32, 32))[None], ref)


def test_random_resized_crop_params_are_inside_and_cover_the_scale_range():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, left, h, w = gpu_ops.random_resized_crop_params(
            60, 80, scale=(0.5, 1.0), generator=gen)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.45 <= h * w / (60 * 80) <= 1.0


def test_hflip_only_where_asked():
    batch = torch.cat([_t(IMG), _t(IMG)])
    out = gpu_ops.hflip(batch, torch.tensor([True, False]))
    _exact(out[:1], mmcv.imflip(IMG, 'horizontal'))
    _exact(out[1:], IMG)


@pytest.mark.parametrize('name,ref,magnitudes', [
    ('invert', lambda img, m: mmcv.iminvert(img), [0]),
    ('solarize', lambda img, m: mmcv.solarize(img, thr=m), [100.4, 230.0, 12.5]),
    ('posterize', lambda img, m: mmcv.posterize(img, bits=int(np.ceil(m))), [3.2, 0.6, 4]),
    ('equalize', lambda img, m: mmcv.imequalize(img), [0]),
])
def test_integer_ops_are_exact(name, ref, magnitudes):
    for magnitude in magnitudes:
        ours = getattr(gpu_ops, name)(_t(IMG), torch.tensor([magnitude]))
        _exact(ours, ref(IMG, magnitude))


def test_equalize_leaves_a_flat_channel_alone():
    img = IMG.copy()
    img[..., 1] = 77
    _exact(gpu_ops.equalize(_t(img)), mmcv.imequalize(img))


def _solarize_add(img, m):  # mmpretrain SolarizeAdd.transform's formula
    return np.where(img < 128, np.minimum(img + m, 255), img).astype(img.dtype)


@pytest.mark.parametrize('name,ref', [
    ('brightness', lambda img, m: mmcv.adjust_brightness(img, 1 + m)),
    ('contrast', lambda img, m: mmcv.adjust_contrast(img, 1 + m)),
    ('color', lambda img, m: mmcv.adjust_color(img, alpha=1 + m)),
    ('sharpness', lambda img, m: mmcv.adjust_sharpness(img, 1 + m)),
    ('solarize_add', _solarize_add),
    ('auto_contrast', lambda img, m: mmcv.auto_contrast(img)),
])
def test_blends_within_one_level(name, ref):
    for magnitude in (0.81, -0.77, 0.3):
        arg = magnitude if name != 'solarize_add' else abs(magnitude) * 110
        factor = torch.tensor([arg if name == 'solarize_add' else 1 + arg])
        if name == 'solarize_add':
            ours = gpu_ops.solarize_add(_t(IMG), factor)
        else:
            ours = getattr(gpu_ops, name)(_t(IMG), factor)
        _within_one(ours, ref(IMG, arg))


@pytest.mark.parametrize('angle', [27.3, -14.0, 3.5])
def test_rotate_matches_mmcv_nearest(angle):
    ref = mmcv.imrotate(IMG, angle, border_value=FILL, interpolation='nearest')
    _warp_close(gpu_ops.rotate(_t(IMG), torch.tensor([angle]), FILL), ref)


@pytest.mark.parametrize('direction', ['horizontal', 'vertical'])
@pytest.mark.parametrize('magnitude', [0.27, -0.13])
def test_shear_matches_mmcv_bicubic(direction, magnitude):
    ref = mmcv.imshear(IMG, magnitude, direction=direction, border_value=FILL,
                       interpolation='bicubic')
    _warp_close(gpu_ops.shear(_t(IMG), torch.tensor([magnitude]), direction, FILL), ref)


@pytest.mark.parametrize('direction', ['horizontal', 'vertical'])
@pytest.mark.parametrize('magnitude', [0.4, -0.21])
def test_translate_matches_mmcv_nearest(direction, magnitude):
    h, w = IMG.shape[:2]
    offset = magnitude * (w if direction == 'horizontal' else h)
    ref = mmcv.imtranslate(IMG, offset, direction=direction, border_value=FILL,
                           interpolation='nearest')
    _warp_close(gpu_ops.translate(_t(IMG), torch.tensor([magnitude]), direction, FILL), ref)


def test_cutout_matches_mmcv_with_the_same_draw():
    h, w = IMG.shape[:2]
    np.random.seed(3)
    ref = mmcv.cutout(IMG, (20, 20), pad_val=FILL)
    np.random.seed(3)  # mmcv draws y0 then x0 uniformly: the same numbers give the box
    y0, x0 = np.random.uniform(h), np.random.uniform(w)
    y1, x1 = int(max(0, y0 - 10)), int(max(0, x0 - 10))
    boxes = torch.tensor([[y1, x1, min(h, y1 + 20), min(w, x1 + 20)]])
    _exact(gpu_ops.cutout(_t(IMG), boxes, torch.tensor([True]), FILL), ref)
    _exact(gpu_ops.cutout(_t(IMG), boxes, torch.tensor([False]), FILL), IMG)


def test_cutout_boxes_are_clipped_and_full_size_inside():
    boxes = gpu_ops.cutout_boxes(200, 48, 40, (24, 24), torch.Generator().manual_seed(0))
    y1, x1, y2, x2 = boxes.unbind(1)
    assert (y1 >= 0).all() and (x1 >= 0).all() and (y2 <= 48).all() and (x2 <= 40).all()
    assert ((y2 - y1) <= 24).all() and ((y2 - y1) == 24).any()


def test_batched_ops_apply_each_samples_own_magnitude():
    imgs = [_image(seed=s) for s in range(3)]
    batch = torch.cat([_t(i) for i in imgs])
    angles = torch.tensor([10.0, -20.0, 0.0])
    out = gpu_ops.rotate(batch, angles, FILL)
    for i, img in enumerate(imgs):
        ref = mmcv.imrotate(img, float(angles[i]), border_value=FILL, interpolation='nearest')
        _warp_close(out[i:i + 1], ref)
    factors = torch.tensor([0.2, 1.0, 1.8])
    out = gpu_ops.brightness(batch, factors)
    for i, img in enumerate(imgs):
        _within_one(out[i:i + 1], mmcv.adjust_brightness(img, float(factors[i])))
