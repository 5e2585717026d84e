"""Inference: images (+ any list of class names) -> per-class scores and labels."""
import difflib
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
            training classes. Shared-context and hand-crafted prompts score any names;
            class-specific contexts score their trained classes only, matched by name
            (any order or subset; the model always scores all its classes in the trained
            order, results come in the order given). Empty or repeated names are errors.
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
        if default_names is None and self.model.class_names is not None:
            default_names = self.model.class_names
        self.class_specific = bool(getattr(self.model.prompt_learner, 'class_specific',
                                           False))
        # the classes the contexts of a class-specific model were trained for, in order
        self.trained_classes = (list(default_names) if self.class_specific and
                                default_names is not None else None)
        names = class_names if class_names is not None else default_names
        if names is None:
            raise ValueError('no class names: pass class_names=[...] (a checkpoint from '
                             'tools/train.py carries its training classes)')
        self.class_names = check_class_names(names)
        self._match(self.class_names)  # wrong names fail here, not at the first call

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
        scored, report = self._match(names)
        self.model.set_class_names(scored)
        results = []
        for start in range(0, len(images), batch_size):
            batch = [self._prepare(img) for img in images[start:start + batch_size]]
            data = self.model.data_preprocessor(
                dict(inputs=[b['inputs'] for b in batch],
                     data_samples=[b['data_samples'] for b in batch]), False)
            samples = self.model.predict(data['inputs'])
            for sample in samples:
                scores = sample.pred_score.float().cpu().numpy()
                if report is not None:  # trained order -> the order asked for
                    scores = scores[report]
                order = np.argsort(-scores, kind='stable')
                results.append(dict(
                    scores={names[i]: float(scores[i]) for i in range(len(names))},
                    labels=[names[i] for i in order if scores[i] > threshold],
                    topk=[(names[i], float(scores[i])) for i in order[:topk]]))
        return results


    def _match(self, names: Sequence[str]) -> Tuple[List[str], Optional[List[int]]]:
        """(names the model scores, index of each asked name among them or None).

        Every model: no empty and no repeated names. A class-specific model scores its
        trained classes in their trained order; asked names are looked up there by name
        (unknown ones are an error listing close matches)."""
        names = check_class_names(names)
        if self.trained_classes is None:
            return names, None
        trained = self.trained_classes
        position = {name: i for i, name in enumerate(trained)}
        unknown = [name for name in names if name not in position]
        if unknown:
            described = []
            for name in unknown:
                close = difflib.get_close_matches(name, trained, n=3, cutoff=0.5)
                hint = ('did you mean ' + ' or '.join(repr(c) for c in close) + '?'
                        if close else 'no close match')
                described.append(f'{name!r} ({hint})')
            raise ValueError(
                f'class names not among the {len(trained)} classes this class-specific '
                f'model was trained on: {", ".join(described)}; its contexts score only '
                'those (a shared-context model scores new names)')
        return trained, [position[name] for name in names]


def check_class_names(names: Sequence[str]) -> List[str]:
    """``names`` as a list of str: not empty, no empty name, no name twice (one-line
    ValueError naming the culprit)."""
    if isinstance(names, str):
        raise ValueError(f'class_names must be a list of names, got the string {names!r}')
    names = list(names)
    if not names:
        raise ValueError('class_names is empty: give at least one class name')
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ValueError(f'class_names[{i}] is not a string: {name!r}')
        if not name.strip():
            raise ValueError(f'class_names[{i}] is an empty name ({name!r})')
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise ValueError(f'class_names lists {", ".join(map(repr, repeated))} more than '
                         'once: give each class once')
    return names


def _read_checkpoint_meta(path: str) -> dict:
    # the same scoped weights-only loader as mmengine's load_from / resume
    from mlr_plugin.compat import load_checkpoint_file
    ckpt = load_checkpoint_file(path, map_location='cpu')
    return ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
