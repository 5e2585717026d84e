"""Inference: images (+ any list of class names) -> per-class scores and labels."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

ImageInput = Union[str, np.ndarray]


class MultiLabelInferencer:
    """Score images with a trained checkpoint or plain zero-shot CLIP.

    Args:
        model (str): a config file (``.py``) or a checkpoint (``.pth``) written by
            ``tools/train.py``; a checkpoint carries its config and class names.
        checkpoint (str, optional): checkpoint to load on top of a config.
        class_names (Sequence[str], optional): names to score. Default: the checkpoint's
            training classes. Shared-context and hand-crafted prompts score any names.
        device (str, optional): ``'cuda'`` when available, else ``'cpu'``.
        cfg_options (Sequence[str], optional): ``KEY=VALUE`` config overrides.

    Example:
        >>> inferencer = MultiLabelInferencer('work_dirs/coco_p30/epoch_50.pth')
        >>> inferencer(['street.jpg'], class_names=['person', 'bicycle', 'dog'])[0]
        {'scores': {'person': 0.93, ...}, 'labels': ['person', 'bicycle'], ...}
    """

    def __init__(self, model: str, checkpoint: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None,
                 device: Optional[str] = None,
                 cfg_options: Optional[Sequence[str]] = None):
        from mmengine.config import Config
        from mmengine.dataset import Compose
        from mmengine.runner import load_checkpoint
        from mmpretrain.registry import MODELS

        from mlr_plugin.engine.launch import load_config, parse_cfg_options

        ckpt_meta = {}
        if model.endswith(('.pth', '.pt')):
            if checkpoint is not None:
                raise ValueError('give either a checkpoint as model or a config + checkpoint')
            checkpoint = model
            ckpt_meta = _read_checkpoint_meta(checkpoint)
            if 'cfg' not in ckpt_meta:
                raise ValueError(f'{checkpoint} holds no config (meta.cfg): pass the config '
                                 'file as model and the checkpoint as checkpoint=')
            cfg = Config.fromstring(ckpt_meta['cfg'], file_format='.py')
            options = parse_cfg_options(cfg_options)
            if options:
                cfg.merge_from_dict(options)
            # as load_config does: pipeline types resolve in mmpretrain's registries
            from mmengine.registry import init_default_scope
            init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        else:
            cfg = load_config(model, cfg_options)
            if checkpoint is not None:
                ckpt_meta = _read_checkpoint_meta(checkpoint)
        self.cfg = cfg
        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')

        self.model = MODELS.build(cfg.model)
        if checkpoint is not None:
            from mlr_plugin.models.checkpoint import require_complete
            load_checkpoint(self.model, checkpoint, map_location='cpu', strict=True)
            require_complete(self.model, checkpoint)
        self.model.to(self.device).eval()

        default_names = (ckpt_meta.get('dataset_meta') or {}).get('classes')
        names = class_names if class_names is not None else default_names
        if names is None:
            names = self.model.class_names
        if names is None:
            raise ValueError('no class names: pass class_names=[...] (a checkpoint from '
                             'tools/train.py carries its training classes)')
        self.class_names = list(names)

        pipeline_cfg = cfg.test_dataloader.dataset.pipeline
        self.load_step = Compose([pipeline_cfg[0]]) if pipeline_cfg else None
        self.pipeline = Compose(list(pipeline_cfg[1:]))

    def _prepare(self, image: ImageInput) -> dict:
        if isinstance(image, str):
            if not osp.isfile(image):
                raise FileNotFoundError(f'image not found: {image}')
            return self.pipeline(self.load_step(dict(img_path=image)))
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3:
            h, w = image.shape[:2]
            return self.pipeline(dict(img=image, img_shape=(h, w), ori_shape=(h, w)))
        raise TypeError('images must be file paths or H x W x 3 RGB uint8 arrays, got '
                        f'{type(image).__name__}')

    @torch.no_grad()
    def __call__(self, images: Union[ImageInput, Sequence[ImageInput]],
                 class_names: Optional[Sequence[str]] = None,
                 threshold: float = 0.5, topk: int = 5,
                 batch_size: int = 16) -> List[Dict]:
        """Returns one dict per image: ``scores`` {name: score}, ``labels`` (score >
        threshold, best first) and ``topk`` [(name, score)]."""
        if isinstance(images, (str, np.ndarray)):
            images = [images]
        names = list(class_names) if class_names is not None else self.class_names
        self.model.set_class_names(names)
        results = []
        for start in range(0, len(images), batch_size):
            batch = [self._prepare(img) for img in images[start:start + batch_size]]
            data = self.model.data_preprocessor(
                dict(inputs=[b['inputs'] for b in batch],
                     data_samples=[b['data_samples'] for b in batch]), False)
            samples = self.model.predict(data['inputs'])
            for sample in samples:
                scores = sample.pred_score.float().cpu().numpy()
                order = np.argsort(-scores, kind='stable')
                results.append(dict(
                    scores={names[i]: float(scores[i]) for i in range(len(names))},
                    labels=[names[i] for i in order if scores[i] > threshold],
                    topk=[(names[i], float(scores[i])) for i in order[:topk]]))
        return results


def _read_checkpoint_meta(path: str) -> dict:
    # the same scoped weights-only loader as mmengine's load_from / resume
    from mlr_plugin.compat import load_checkpoint_file
    ckpt = load_checkpoint_file(path, map_location='cpu')
    return ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
