"""The training augmentations as batched tensor ops (GPU data path; they run on any device).

Images are float tensors ``(N, 3, H, W)`` holding whole numbers 0..255, RGB. Every op
takes per-sample parameters (tensors of length N) and reproduces the CPU pipeline's op
(mmcv / mmpretrain on uint8 HWC arrays, the default) including its rounding, so switching
the data path does not change what the model is trained on; tests/test_gpu_transforms.py
compares each op with its CPU counterpart on the same input and states the tolerance.

Rounding rules copied from the CPU ops: ``cv2.addWeighted`` / ``filter2D`` / ``cvtColor``
on uint8 round (half to even); blends computed in float32 then ``astype(uint8)``
truncate; geometric ops fill outside pixels with ``pad_val``.
"""
import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

# cv2's BGR2GRAY weights. The CPU pipeline decodes to RGB and mmcv's gray conversion
# assumes BGR, so channel 0 (R here) gets the blue weight: kept for parity with it.
_GRAY_WEIGHTS = (0.114, 0.587, 0.299)
_SMOOTH = torch.tensor([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13  # PIL SMOOTH


def _per_sample(value, img):
    return torch.as_tensor(value, dtype=img.dtype, device=img.device).reshape(-1, 1, 1, 1)


def _fill(pad_val, img):
    if isinstance(pad_val, (int, float)):
        pad_val = [pad_val] * img.shape[1]
    return torch.tensor(pad_val, dtype=img.dtype, device=img.device).reshape(1, -1, 1, 1)


def resize(img: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of one ``(3, h, w)`` or a batch to ``size`` = (H, W), as
    ``cv2.resize(INTER_LINEAR)`` (half-pixel centres, no antialiasing), rounded."""
    batch = img if img.dim() == 4 else img[None]
    out = F.interpolate(batch.float(), size=tuple(size), mode='bilinear',
                        align_corners=False, antialias=False)
    out = out.round_().clamp_(0, 255)
    return out if img.dim() == 4 else out[0]


def random_resized_crop_params(h: int, w: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                               max_attempts: int = 10, generator=None):
    """(top, left, height, width) as mmpretrain's ``RandomResizedCrop`` draws them
    (area fraction in ``scale``, log-uniform aspect ratio, centre crop fallback)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def uniform(lo, hi):
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    for _ in range(max_attempts):
        target_area = uniform(*scale) * area
        aspect = math.exp(uniform(*log_ratio))
        tw = int(round(math.sqrt(target_area * aspect)))
        th = int(round(math.sqrt(target_area / aspect)))
        if 0 < tw <= w and 0 < th <= h:
            top = int(torch.randint(0, h - th + 1, (), generator=generator))
            left = int(torch.randint(0, w - tw + 1, (), generator=generator))
            return top, left, th, tw
    if w / h < min(ratio):
        tw, th = w, int(round(w / min(ratio)))
    elif w / h > max(ratio):
        th, tw = h, int(round(h * max(ratio)))
    else:
        tw, th = w, h
    return (h - th) // 2, (w - tw) // 2, th, tw


def resized_crop(img: torch.Tensor, box: Sequence[int], size) -> torch.Tensor:
    """Crop ``(3, h, w)`` at box = (top, left, height, width), then ``resize``."""
    top, left, height, width = box
    return resize(img[:, top:top + height, left:left + width], size)


def hflip(img: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the samples where ``flip`` (bool, N) is set."""
    return torch.where(flip.reshape(-1, 1, 1, 1), img.flip(-1), img)


def invert(img, _=None):
    return 255 - img


def solarize(img, thr):
    """mmcv.solarize: pixels >= thr are inverted."""
    return torch.where(img < _per_sample(thr, img), img, 255 - img)


def solarize_add(img, magnitude, thr: float = 128):
    """mmpretrain SolarizeAdd: pixels < thr get +magnitude (saturated, truncated)."""
    added = (img + _per_sample(magnitude, img)).clamp(max=255).floor()
    return torch.where(img < thr, added, img)


def posterize(img, bits):
    """mmcv.posterize with ``ceil(bits)`` bits kept (mmpretrain rounds the magnitude up)."""
    step = 2 ** (8 - torch.as_tensor(bits, device=img.device).float().ceil())
    step = step.reshape(-1, 1, 1, 1)
    return (img / step).floor() * step


def _blend_trunc(img, other, factor):
    """``astype(uint8)(clip(img * f + other * (1 - f)))`` with float32 maths, as mmcv's
    brightness / contrast / sharpness."""
    f = _per_sample(factor, img)
    return (img * f + other * (1 - f)).clamp(0, 255).floor()


def gray(img):
    """cv2 BGR2GRAY of the channels in their stored order, rounded: ``(N, 1, H, W)``."""
    w = torch.tensor(_GRAY_WEIGHTS, dtype=img.dtype, device=img.device).reshape(1, 3, 1, 1)
    return (img * w).sum(1, keepdim=True).round()


def brightness(img, factor):
    return _blend_trunc(img, torch.zeros_like(img), factor)


def contrast(img, factor):
    """Blend with the rounded mean of the gray image (mmcv.adjust_contrast)."""
    mean = gray(img).mean(dim=(1, 2, 3), keepdim=True).round()
    return _blend_trunc(img, mean.expand_as(img), factor)


def color(img, factor):
    """Blend with the gray image, rounded like ``cv2.addWeighted`` on uint8
    (mmcv.adjust_color)."""
    f = _per_sample(factor, img)
    return (img * f + gray(img) * (1 - f)).round().clamp(0, 255)


def sharpness(img, factor):
    """Blend with the SMOOTH-filtered image (``cv2.filter2D``, reflect-101 border,
    rounded) as mmcv.adjust_sharpness."""
    kernel = _SMOOTH.to(img).expand(img.shape[1], 1, 3, 3)
    smooth = F.conv2d(F.pad(img, (1, 1, 1, 1), mode='reflect'), kernel,
                      groups=img.shape[1]).round().clamp(0, 255)
    return _blend_trunc(img, smooth, factor)


def auto_contrast(img, _=None):
    """Per-channel min..max stretched to 0..255, truncated (mmcv.auto_contrast, no cutoff);
    flat channels are left alone."""
    lo = img.amin(dim=(2, 3), keepdim=True)
    hi = img.amax(dim=(2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp(min=1)
    out = (img * scale - lo * scale).clamp(0, 255).floor()
    return torch.where(hi > lo, out, img)


def equalize(img, _=None):
    """Per-channel histogram equalisation with PIL's integer rule (mmcv.imequalize)."""
    n, c, h, w = img.shape
    flat = img.reshape(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=img.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    last = hist.gather(1, flat.amax(dim=1, keepdim=True))  # count of the top value
    step = (h * w - last) // 255
    lut = (hist.cumsum(1) + step // 2) // step.clamp(min=1)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp(max=255)
    out = lut.gather(1, flat).reshape(n, c, h, w).to(img.dtype)
    return torch.where((step > 0).reshape(n, c, 1, 1), out, img)


def warp_affine(img, matrix, pad_val, mode: str):
    """``cv2.warpAffine(img, M, (w, h), borderValue=pad_val)`` for a batch of forward
    matrices ``M`` (N, 2, 3) in pixel coordinates; mode 'nearest' | 'bilinear' | 'bicubic'.

    Sampling ``img - pad_val`` with zero padding and adding ``pad_val`` back is the
    constant border of cv2 (interpolation is linear in the pixel values).
    """
    n, _, h, w = img.shape
    matrix = torch.as_tensor(matrix, dtype=torch.float64, device=img.device)
    full = torch.cat([matrix, matrix.new_tensor([0., 0., 1.]).expand(n, 1, 3)], dim=1)
    inverse = torch.linalg.inv(full)[:, :2]  # dst pixel -> src pixel
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=img.device),
                            torch.arange(w, dtype=torch.float64, device=img.device),
                            indexing='ij')
    dst = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3)
    src = dst @ inverse.transpose(1, 2)  # (N, h*w, 2) pixel coordinates
    if mode == 'nearest':  # cv2 rounds half up; grid_sample would round half to even
        src = (src + 0.5).floor()
    # pixel centres -> [-1, 1] with align_corners=False
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], -1)
    fill = _fill(pad_val, img)
    out = F.grid_sample(img - fill, grid.reshape(n, h, w, 2).to(img.dtype), mode=mode,
                        padding_mode='zeros', align_corners=False) + fill
    return out.round().clamp(0, 255)


def rotate_matrix(angle, h: int, w: int):
    """cv2.getRotationMatrix2D(centre, -angle, 1) as mmcv.imrotate builds it (degrees,
    positive = clockwise), one per sample."""
    angle = torch.as_tensor(angle, dtype=torch.float64).reshape(-1)
    cx, cy = (w - 1) * 0.5, (h - 1) * 0.5
    a = torch.deg2rad(-angle)
    alpha, beta = torch.cos(a), torch.sin(a)
    return torch.stack([torch.stack([alpha, beta, (1 - alpha) * cx - beta * cy], -1),
                        torch.stack([-beta, alpha, beta * cx + (1 - alpha) * cy], -1)], 1)


def rotate(img, angle, pad_val=128, mode='nearest'):
    return warp_affine(img, rotate_matrix(angle, *img.shape[-2:]), pad_val, mode)


def shear_matrix(magnitude, direction: str):
    m = torch.as_tensor(magnitude, dtype=torch.float32).double().reshape(-1)
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    if direction == 'horizontal':
        rows = [[one, m, zero], [zero, one, zero]]
    else:
        rows = [[one, zero, zero], [m, one, zero]]
    return torch.stack([torch.stack(r, -1) for r in rows], 1)


def shear(img, magnitude, direction='horizontal', pad_val=128, mode='bicubic'):
    return warp_affine(img, shear_matrix(magnitude, direction), pad_val, mode)


def translate(img, magnitude, direction='horizontal', pad_val=128, mode='nearest'):
    """mmpretrain Translate: offset = magnitude * width (or height) pixels."""
    h, w = img.shape[-2:]
    offset = torch.as_tensor(magnitude, dtype=torch.float64).reshape(-1)
    offset = (offset * (w if direction == 'horizontal' else h)).float().double()
    one, zero = torch.ones_like(offset), torch.zeros_like(offset)
    if direction == 'horizontal':
        rows = [[one, zero, offset], [zero, one, zero]]
    else:
        rows = [[one, zero, zero], [zero, one, offset]]
    matrix = torch.stack([torch.stack(r, -1) for r in rows], 1)
    return warp_affine(img, matrix, pad_val, mode)


def cutout_boxes(n: int, h: int, w: int, shape: Tuple[int, int], generator=None):
    """(y1, x1, y2, x2) per sample as mmcv.cutout draws them: a uniform centre, the box
    clipped to the image."""
    cut_h, cut_w = shape
    y0 = torch.rand(n, generator=generator, dtype=torch.float64) * h
    x0 = torch.rand(n, generator=generator, dtype=torch.float64) * w
    y1 = (y0 - cut_h / 2).clamp(min=0).long()
    x1 = (x0 - cut_w / 2).clamp(min=0).long()
    return torch.stack([y1, x1, (y1 + cut_h).clamp(max=h), (x1 + cut_w).clamp(max=w)], 1)


def cutout(img, boxes, apply, pad_val=128):
    """Fill ``boxes`` (N, 4: y1, x1, y2, x2, end exclusive) with pad_val where ``apply``."""
    h, w = img.shape[-2:]
    boxes = boxes.to(img.device)
    ys = torch.arange(h, device=img.device).reshape(1, h, 1)
    xs = torch.arange(w, device=img.device).reshape(1, 1, w)
    b = boxes.reshape(-1, 4, 1, 1)
    inside = (ys >= b[:, 0]) & (ys < b[:, 2]) & (xs >= b[:, 1]) & (xs < b[:, 3])
    inside = inside & apply.to(img.device).reshape(-1, 1, 1)
    return torch.where(inside[:, None], _fill(pad_val, img), img)
