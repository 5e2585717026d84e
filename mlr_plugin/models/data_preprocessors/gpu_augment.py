"""A data preprocessor that decodes and augments the batch on the model's device."""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor
from mmpretrain.registry import MODELS

from ...datasets.transforms.gpu_pipeline import GPUBatchPipeline


@MODELS.register_module()
class GPUAugmentDataPreprocessor(BaseDataPreprocessor):
    """JPEG bytes from the loader (``LoadJPEGBytes`` + ``PackInputs``) -> decoded,
    augmented, normalised batch, all on the model's device (nvJPEG + batched ops on CUDA).

    The augmentations are read from ordinary CPU pipeline configs, so a config switches
    data paths without restating them (docs/benchmark.md):

        model.data_preprocessor = dict(type='GPUAugmentDataPreprocessor',
                                       train_pipeline=train_pipeline,
                                       test_pipeline=test_pipeline)
        train_dataloader.dataset.pipeline = [dict(type='LoadJPEGBytes'),
                                             dict(type='PackInputs')]  # val/test alike

    Args:
        train_pipeline / test_pipeline (list[dict]): the CPU pipelines to reproduce
            (``GPUBatchPipeline``); test_pipeline defaults to a resize to the train size
            (none if the train pipeline has none).
        mean / std (sequence): per-channel normalisation of 0..255 RGB images; default
            OpenAI CLIP's (every CLIP tag shipped here uses it; set them for others).
        channels_last (bool): hand the batch over in channels_last memory format (only
            on CUDA, where the tower's convolutions gain from it; a no-op on CPU).
        seed (int, optional): seed of the augmentation draws.
    """

    def __init__(self, train_pipeline: Sequence[dict],
                 test_pipeline: Optional[Sequence[dict]] = None,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 channels_last: bool = False,
                 seed: Optional[int] = None):
        super().__init__()
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        mean = mean if mean is not None else [255 * m for m in OPENAI_DATASET_MEAN]
        std = std if std is not None else [255 * s for s in OPENAI_DATASET_STD]
        self.register_buffer('mean', torch.tensor(mean).reshape(1, -1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std).reshape(1, -1, 1, 1), False)
        self.train_pipeline = GPUBatchPipeline(train_pipeline, seed=seed)
        if test_pipeline is None:
            size = self.train_pipeline.size
            test_pipeline = [] if size is None else [dict(type='Resize', scale=size[::-1])]
        self.test_pipeline = GPUBatchPipeline(test_pipeline)
        self.channels_last = channels_last

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if torch.is_tensor(inputs):  # a stacked batch of decoded images
            inputs = list(inputs)
        pipeline = self.train_pipeline if training else self.test_pipeline
        batch = pipeline(inputs, self.mean.device, training)
        batch = (batch - self.mean) / self.std
        if self.channels_last and batch.is_cuda:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return dict(inputs=batch, data_samples=self.cast_data(data.get('data_samples')))
