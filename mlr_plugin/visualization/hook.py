"""A test-time hook writing each image's heatmap figure (``tools/test.py --show-dir``)."""
import os.path as osp
from typing import Optional

import numpy as np
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class AttentionVisHook(Hook):
    """After every test batch, draw the top classes' attention maps of its images into
    ``out_dir/<image file stem>.png`` (mmpretrain's ``--show-dir`` habit).

    The picture is the network's input (the test pipeline's resized image), so the grid
    lines up with it exactly. The figures need the head's ``attention``, which
    ``predict`` does not return: the batch's features and head run once more here, so
    this roughly doubles the test time.

    Args:
        out_dir: the folder for the figures (created when needed).
        topk: how many of the best-scoring classes to draw.
        interval: draw the images of every ``interval``-th batch.
    """
    priority = 'LOW'

    def __init__(self, out_dir: str, topk: int = 4, interval: int = 1):
        if not out_dir:
            raise ValueError('AttentionVisHook needs an out_dir')
        for name, value in (('topk', topk), ('interval', interval)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'AttentionVisHook {name} must be a positive int, '
                                 f'got {value!r}')
        self.out_dir, self.topk, self.interval = out_dir, topk, interval

    def after_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                        outputs=None) -> None:
        if batch_idx % self.interval or data_batch is None:
            return
        from mlr_plugin.apis.inference import write_png_atomic

        from .attention import attention_to_maps, scores_and_attention
        from .heatmaps import draw_topk

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        data = model.data_preprocessor(data_batch, False)
        scores, attention, grid = scores_and_attention(model, data['inputs'])
        if attention is None:
            raise ValueError(f'--show-dir: the head {type(model.head).__name__} returns no '
                             "'attention' maps to draw")
        names = list(model.class_names)
        for i, sample in enumerate(data_batch['data_samples']):
            # the packed input: (3, S, S) uint8 RGB, before mean/std
            image = data_batch['inputs'][i].permute(1, 2, 0).cpu().numpy().astype(np.uint8)
            path = sample.get('img_path') or f'batch{batch_idx}_{i}'
            stem = osp.splitext(osp.basename(path))[0]
            figure = draw_topk(image, scores[i].cpu().numpy(),
                               attention_to_maps(attention[i].cpu().numpy(), grid), names,
                               self.topk, title=osp.basename(path))
            write_png_atomic(osp.join(self.out_dir, stem + '.png'), figure)
