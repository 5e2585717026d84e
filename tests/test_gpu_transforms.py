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


# ------------------------------------------------------------------ the batch pipeline
REPO = __import__('pathlib').Path(__file__).resolve().parents[1]


def _common_pipelines():
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO / 'configs/_base_/datasets/common_224px.py'))
    return cfg.train_pipeline, cfg.train_pipeline_rrc, cfg.test_pipeline


def test_pipeline_reads_the_cpu_pipeline_configs():
    from mlr_plugin.datasets.transforms import GPUBatchPipeline
    train, rrc, test = _common_pipelines()
    p = GPUBatchPipeline(train)
    assert p.size == (224, 224) and p.crop_scale is None and p.flip_prob == 0.5
    assert p.rand_augment == dict(num_policies=2, level=9.0, std=0.5, total=10.0,
                                  pad_val=FILL)
    assert p.cutout == dict(shape=(112, 112), prob=0.5, pad_val=FILL)
    assert GPUBatchPipeline(rrc).crop_scale == (0.5, 1.0)
    assert GPUBatchPipeline(test).rand_augment is None
    with pytest.raises(ValueError, match="'ColorJitter' has no GPU version"):
        GPUBatchPipeline(list(train) + [dict(type='ColorJitter')])


def test_rand_augment_draws_follow_mmpretrain(monkeypatch):
    """Per slot an op is applied with probability 0.5; magnitudes ~ N(9, 0.5)/10 of the
    op's range; signed ops get both signs."""
    from mlr_plugin.datasets.transforms import GPUBatchPipeline
    from mlr_plugin.datasets.transforms.gpu_pipeline import TIMM_INCREASING
    calls = []

    def record(name, img, magnitude, pad_val):
        calls.append((name, img.shape[0], None if magnitude is None else magnitude.clone()))
        return img
    p = GPUBatchPipeline(_common_pipelines()[0], seed=0)
    monkeypatch.setattr(p, '_apply', record)
    n = 3000
    p._rand_augment(torch.zeros(n, 3, 2, 2))
    applied = sum(count for _, count, _ in calls)
    assert abs(applied / (2 * n) - 0.5) < 0.03
    spans = {name: (span, signed) for name, span, signed in TIMM_INCREASING}
    for name, _, mags in calls:
        span, signed = spans[name]
        if span is None:
            continue
        level = (mags.abs() - span[0]) / (span[1] - span[0]) * 10
        assert ((level >= 0) & (level <= 10)).all()
        assert abs(level.mean() - 9) < 0.15, (name, level.mean())
        assert (mags < 0).any() == signed and (mags > 0).any()
    assert {name for name, _, _ in calls} == set(spans)


def _jpegs(tmp_path, n=3):
    import cv2
    paths = []
    for i in range(n):
        path = tmp_path / f'{i}.jpg'
        img = _image(60 + 8 * i, 50 + 4 * i, seed=i)
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(str(path))
    return paths


def test_decode_matches_opencv(tmp_path):
    """torchvision's batched decode (here on CPU) against LoadImageCV2: within 2 levels
    (both libjpeg-turbo; the IDCT / upsampling variants may differ by a level or two)."""
    from mlr_plugin.datasets.transforms import GPUBatchPipeline, LoadImageCV2, LoadJPEGBytes
    paths = _jpegs(tmp_path)
    data = [LoadJPEGBytes()(dict(img_path=p)) for p in paths]
    decoded = GPUBatchPipeline.decode([d['img'] for d in data], 'cpu')
    for path, d, ours in zip(paths, data, decoded):
        ref = LoadImageCV2(to_rgb=True)(dict(img_path=path))
        assert d['ori_shape'] == ref['ori_shape']
        diff = np.abs(ours.permute(1, 2, 0).numpy().astype(int) - ref['img'].astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.1, (diff.max(), diff.mean())


def test_not_a_jpeg_is_a_one_line_error(tmp_path):
    from mlr_plugin.datasets.transforms import LoadJPEGBytes
    path = tmp_path / 'x.png'
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(20))
    with pytest.raises(OSError, match=r'not a JPEG file: .*x\.png'):
        LoadJPEGBytes()(dict(img_path=str(path)))


def test_preprocessor_matches_the_cpu_test_path_and_augments_in_training(tmp_path):
    """Eval: bytes -> decode -> resize -> normalise equals LoadImageCV2 + Resize +
    ClsDataPreprocessor within 2 levels / std. Training: the augmented batch differs,
    has the right shape, and the same seed gives the same batch."""
    from mmpretrain.registry import MODELS, TRANSFORMS
    paths = _jpegs(tmp_path)
    train, _, test = _common_pipelines()
    train = [dict(s, shape=16) if s['type'] == 'Cutout' else s for s in train]
    train = [dict(s, scale=(32, 32)) if s['type'] == 'Resize' else s for s in train]
    pack = TRANSFORMS.build(dict(type='PackInputs'))
    load = TRANSFORMS.build(dict(type='LoadJPEGBytes'))
    batch = [pack(load(dict(img_path=p))) for p in paths]
    data = dict(inputs=[b['inputs'] for b in batch],
                data_samples=[b['data_samples'] for b in batch])
    gpu = MODELS.build(dict(type='GPUAugmentDataPreprocessor', train_pipeline=train,
                            seed=0))
    cpu_pipe = [TRANSFORMS.build(dict(type='LoadImageCV2', to_rgb=True)),
                TRANSFORMS.build(dict(type='Resize', scale=(32, 32))), pack]
    cpu_pre = MODELS.build(dict(type='ClsDataPreprocessor',
                                mean=gpu.mean.flatten().tolist(),
                                std=gpu.std.flatten().tolist()))
    cpu_batch = []
    for p in paths:
        r = dict(img_path=p)
        for t in cpu_pipe:
            r = t(r)
        cpu_batch.append(r)
    ref = cpu_pre(dict(inputs=[b['inputs'] for b in cpu_batch],
                       data_samples=[b['data_samples'] for b in cpu_batch]))['inputs']
    out = gpu(data, training=False)
    assert out['inputs'].shape == ref.shape == (3, 3, 32, 32)
    assert ((out['inputs'] - ref).abs() * gpu.std).max() <= 2.0 + 1e-4
    assert len(out['data_samples']) == 3
    aug = gpu(data, training=True)['inputs']
    assert aug.shape == (3, 3, 32, 32) and not torch.allclose(aug, out['inputs'])
    again = MODELS.build(dict(type='GPUAugmentDataPreprocessor', train_pipeline=train,
                              seed=0))(data, training=True)['inputs']
    torch.testing.assert_close(again, aug)


@pytest.mark.parametrize('orientation', range(1, 9))
def test_decode_turns_exif_oriented_jpegs_upright_as_opencv(tmp_path, orientation):
    """nvJPEG ignores EXIF orientation, so the GPU path applies it from the header
    itself (on every device); OpenCV's decode is the reference. Within 2 levels."""
    from PIL import Image

    from mlr_plugin.datasets.transforms import GPUBatchPipeline, LoadImageCV2, LoadJPEGBytes
    path = tmp_path / f'o{orientation}.jpg'
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_image(32, 48)).save(path, quality=95, exif=exif.tobytes())
    data = LoadJPEGBytes()(dict(img_path=str(path)))
    ours = GPUBatchPipeline.decode([data['img']], 'cpu')[0].permute(1, 2, 0).numpy()
    ref = LoadImageCV2(to_rgb=True)(dict(img_path=str(path)))
    assert ours.shape == ref['img'].shape and data['ori_shape'] == ref['ori_shape']
    diff = np.abs(ours.astype(int) - ref['img'].astype(int))
    assert diff.max() <= 2, diff.max()
