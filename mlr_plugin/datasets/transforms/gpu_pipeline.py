"""The GPU data path: file bytes from the loader, JPEG decode + augmentation per batch.

The loader workers only read files (``LoadJPEGBytes``); ``GPUBatchPipeline`` decodes the
batch with ``torchvision.io.decode_jpeg`` (nvJPEG on CUDA, a list in one call) and runs
the training augmentations of a CPU pipeline config (Resize / RandomResizedCrop,
RandomFlip, RandAugment 'timm_increasing', Cutout) as batched ops from ``gpu_ops``.
``GPUAugmentDataPreprocessor`` (mlr_plugin/models/data_preprocessors) runs it on the
model's device. The CPU pipeline stays the default; docs/benchmark.md shows the switch.
"""
import warnings
from typing import List, Optional, Sequence

import torch
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmpretrain.registry import TRANSFORMS

from . import gpu_ops
from .loading import jpeg_header

# mmpretrain's RandAugment 'timm_increasing' policies: (op, magnitude range, signed),
# signed = the CPU op negates the magnitude with probability 0.5.
TIMM_INCREASING = (
    ('auto_contrast', None, False),
    ('equalize', None, False),
    ('invert', None, False),
    ('rotate', (0, 30), True),
    ('posterize', (4, 0), False),
    ('solarize', (256, 0), False),
    ('solarize_add', (0, 110), False),
    ('color', (0, 0.9), True),
    ('contrast', (0, 0.9), True),
    ('brightness', (0, 0.9), True),
    ('sharpness', (0, 0.9), True),
    ('shear_h', (0, 0.3), True),
    ('shear_v', (0, 0.3), True),
    ('translate_h', (0, 0.45), True),
    ('translate_v', (0, 0.45), True),
)
_FACTOR_OPS = ('color', 'contrast', 'brightness', 'sharpness')  # factor = 1 + magnitude


@TRANSFORMS.register_module()
class LoadJPEGBytes(BaseTransform):
    """Read ``results['img_path']`` as bytes into ``img`` (a 1-D uint8 tensor) for the
    GPU data path; ``ori_shape`` comes from the JPEG header (EXIF orientation honoured).
    """

    def __init__(self, backend_args: Optional[dict] = None):
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        data = fileio.get(path, backend_args=self.backend_args)
        header = jpeg_header(data)
        if header is None:
            raise OSError(f'not a JPEG file: {path} (the GPU data path decodes JPEG only; '
                          'use the CPU pipeline for other formats)')
        height, width, orientation = header
        results['img'] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        results['ori_shape'] = results['img_shape'] = \
            (width, height) if orientation >= 5 else (height, width)
        return results


def apply_exif_orientation(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turn a decoded ``(C, H, W)`` image upright for EXIF orientation 1..8, as OpenCV's
    decoder does (torchvision's nvJPEG decode does not apply it)."""
    if orientation >= 5:  # 5..8: the stored frame is transposed
        img = img.transpose(-1, -2)
        return {5: img, 6: img.flip(-1), 7: img.flip(-1).flip(-2), 8: img.flip(-2)}[
            orientation]
    return {1: img, 2: img.flip(-1), 3: img.flip(-1).flip(-2), 4: img.flip(-2)}.get(
        orientation, img)


def _pad_val(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3


class GPUBatchPipeline:
    """Batched decode + augmentation equivalent to a CPU pipeline config.

    Args:
        pipeline (list[dict]): a CPU pipeline (e.g. ``train_pipeline`` of
            configs/_base_/datasets/common.py); its size, crop, flip, RandAugment and
            Cutout settings are read from it. Supported steps: LoadImageCV2 /
            LoadImageFromFile, Resize (to a fixed size), RandomResizedCrop, RandomFlip
            (horizontal), RandAugment (policies='timm_increasing'), Cutout, PackInputs.
        seed (int, optional): seed of the augmentation draws (default: from torch's
            initial seed, which mmengine sets).
    """

    def __init__(self, pipeline: Sequence[dict], seed: Optional[int] = None):
        self.size = None
        self.crop_scale = None  # RandomResizedCrop's area range, None = plain resize
        self.flip_prob = 0.0
        self.rand_augment = None
        self.cutout = None
        for step in pipeline:
            self._read_step(dict(step))
        self.seed = seed
        self._generator = None

    def _read_step(self, step):
        kind = step.pop('type')
        if kind in ('LoadImageCV2', 'LoadImageFromFile', 'LoadJPEGBytes', 'PackInputs'):
            return
        if kind == 'Resize':
            scale = step.get('scale')
            if scale is None or step.get('keep_ratio', False):
                raise ValueError(f'GPUBatchPipeline: Resize must have a fixed scale '
                                 f'(got {step})')
            w, h = (scale, scale) if isinstance(scale, int) else scale
            self.size = (h, w)
        elif kind == 'RandomResizedCrop':
            scale = step['scale']
            w, h = (scale, scale) if isinstance(scale, int) else scale
            self.size = (h, w)
            self.crop_scale = tuple(step.get('crop_ratio_range', (0.08, 1.0)))
            self.crop_ratio = tuple(step.get('aspect_ratio_range', (3 / 4, 4 / 3)))
        elif kind == 'RandomFlip':
            if step.get('direction', 'horizontal') != 'horizontal':
                raise ValueError(f'GPUBatchPipeline: only horizontal flips (got {step})')
            self.flip_prob = float(step.get('prob', 0.5))
        elif kind == 'RandAugment':
            if step.get('policies') != 'timm_increasing':
                raise ValueError("GPUBatchPipeline: RandAugment needs policies="
                                 f"'timm_increasing' (got {step.get('policies')!r})")
            std = step.get('magnitude_std', 0.)
            if std == 'inf':
                raise ValueError("GPUBatchPipeline: magnitude_std='inf' is not supported")
            self.rand_augment = dict(
                num_policies=int(step['num_policies']),
                level=float(step['magnitude_level']), std=float(std),
                total=float(step.get('total_level', 10)),
                pad_val=_pad_val(step.get('hparams', {}).get('pad_val', 128)))
        elif kind == 'Cutout':
            shape = step['shape']
            shape = (shape, shape) if isinstance(shape, int) else tuple(shape)
            self.cutout = dict(shape=shape, prob=float(step.get('prob', 0.5)),
                               pad_val=_pad_val(step.get('pad_val', 128)))
        else:
            raise ValueError(f'GPUBatchPipeline: pipeline step {kind!r} has no GPU version')

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:  # lazily: after mmengine has seeded torch
            seed = self.seed if self.seed is not None else torch.initial_seed() % 2**62
            self._generator = torch.Generator().manual_seed(seed)
        return self._generator

    # ------------------------------------------------------------------ steps
    @staticmethod
    def decode(inputs: Sequence[torch.Tensor], device) -> List[torch.Tensor]:
        """JPEG byte tensors -> upright ``(3, h, w)`` uint8 RGB on ``device`` (one batched
        call); already decoded images pass through."""
        encoded = [x.cpu() for x in inputs if x.dim() == 1]
        decoded = []
        if encoded:
            from torchvision.io import ImageReadMode, decode_jpeg
            with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec
                warnings.filterwarnings('ignore', 'The image decoding', DeprecationWarning)
                decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
            # EXIF orientation from the header here, on both devices alike
            decoded = [apply_exif_orientation(img, jpeg_header(x.numpy().tobytes())[2])
                       for img, x in zip(decoded, encoded)]
        it = iter(decoded)
        return [next(it) if x.dim() == 1 else x.to(device) for x in inputs]

    def geometry(self, images: Sequence[torch.Tensor], training: bool) -> torch.Tensor:
        """Each image resized (or, training with RandomResizedCrop, cropped and resized)
        to the pipeline's size: ``(N, 3, H, W)`` float 0..255."""
        if self.size is None:
            sizes = {tuple(img.shape[-2:]) for img in images}
            if len(sizes) > 1:
                raise ValueError(f'GPUBatchPipeline: images of sizes {sorted(sizes)} in one '
                                 'batch and no Resize step in the pipeline to unify them')
            return torch.stack(list(images)).float()
        out = []
        for img in images:
            if training and self.crop_scale is not None:
                box = gpu_ops.random_resized_crop_params(
                    *img.shape[-2:], scale=self.crop_scale, ratio=self.crop_ratio,
                    generator=self.generator)
                out.append(gpu_ops.resized_crop(img, box, self.size))
            else:
                out.append(gpu_ops.resize(img, self.size))
        return torch.stack(out)

    def photometric(self, batch: torch.Tensor) -> torch.Tensor:
        """Flip, RandAugment and Cutout, each sample with its own draws."""
        n, gen = batch.shape[0], self.generator
        if self.flip_prob > 0:
            batch = gpu_ops.hflip(batch, (torch.rand(n, generator=gen) < self.flip_prob)
                                  .to(batch.device))
        if self.rand_augment is not None:
            batch = self._rand_augment(batch)
        if self.cutout is not None:
            c = self.cutout
            boxes = gpu_ops.cutout_boxes(n, *batch.shape[-2:], c['shape'], gen)
            apply = torch.rand(n, generator=gen) < c['prob']
            batch = gpu_ops.cutout(batch, boxes, apply, c['pad_val'])
        return batch

    def _rand_augment(self, batch):
        """``num_policies`` ops per sample, chosen with replacement, each applied with
        probability 0.5 at magnitude level ~ N(level, std) clipped to [0, total]
        (mmpretrain RandAugment + BaseAugTransform)."""
        cfg, gen, n = self.rand_augment, self.generator, batch.shape[0]
        batch = batch.clone()
        for _ in range(cfg['num_policies']):
            choice = torch.randint(len(TIMM_INCREASING), (n,), generator=gen)
            apply = torch.rand(n, generator=gen) < 0.5
            noise = torch.randn(n, generator=gen, dtype=torch.float64)
            level = (cfg['level'] + cfg['std'] * noise).clamp(0, cfg['total'])
            sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
            for k, (name, span, signed) in enumerate(TIMM_INCREASING):
                rows = ((choice == k) & apply).nonzero().flatten()
                if len(rows) == 0:
                    continue
                magnitude = None
                if span is not None:
                    magnitude = level[rows] / cfg['total'] * (span[1] - span[0]) + span[0]
                    if signed:
                        magnitude = magnitude * sign[rows]
                index = rows.to(batch.device)
                batch[index] = self._apply(name, batch[index], magnitude, cfg['pad_val'])
        return batch

    @staticmethod
    def _apply(name, img, magnitude, pad_val):
        if name in _FACTOR_OPS:
            return getattr(gpu_ops, name)(img, 1 + magnitude)
        if name == 'rotate':
            return gpu_ops.rotate(img, magnitude, pad_val)
        if name.startswith(('shear', 'translate')):
            op, axis = name.split('_')
            direction = 'horizontal' if axis == 'h' else 'vertical'
            return getattr(gpu_ops, op)(img, magnitude, direction, pad_val)
        if name == 'posterize':
            return gpu_ops.posterize(img, magnitude)
        if name == 'solarize':
            return gpu_ops.solarize(img, magnitude)
        if name == 'solarize_add':
            return gpu_ops.solarize_add(img, magnitude)
        return getattr(gpu_ops, name)(img)  # auto_contrast, equalize, invert

    def __call__(self, inputs, device, training: bool) -> torch.Tensor:
        batch = self.geometry(self.decode(inputs, device), training)
        return self.photometric(batch) if training else batch
