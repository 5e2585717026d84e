"""Inference: images (+ any list of class names) -> per-class scores and labels."""
import difflib
import os.path as osp
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

ImageInput = Union[str, np.ndarray]


class MultiLabelInferencer:
    """Score images with a trained checkpoint, a model name, a built model or plain
    zero-shot CLIP; optionally draw each class's attention map over the image.

    Args:
        model (str | nn.Module): a model name from :func:`~mlr_plugin.apis.list_models`,
            a config file (``.py``), a checkpoint (``.pth``) written by
            ``tools/train.py`` (it carries its config and class names), or a built model
            (e.g. from :func:`~mlr_plugin.apis.get_model`; its ``_config`` gives the test
            pipeline, else images are resized to the backbone's input size).
        checkpoint (str, optional): checkpoint to load on top of a config or name.
        class_names (Sequence[str], optional): names to score. Default: the checkpoint's
            training classes. Shared-context and hand-crafted prompts score any names;
            class-specific contexts score their trained classes only, matched by name
            (any order or subset; the model always scores all its classes in the trained
            order, results come in the order given). Empty or repeated names are errors.
        device (str, optional): ``'cuda'`` when available, else ``'cpu'`` (a built
            model stays where it is unless a device is given).
        cfg_options (Sequence[str], optional): ``KEY=VALUE`` config overrides.
        batch_size (int): images per forward pass (a call may override it).
        return_vis (bool): add ``vis``, the heatmap figure, to every result (a call may
            override it).

    Example:
        >>> inferencer = MultiLabelInferencer('work_dirs/coco_p30/epoch_50.pth')
        >>> inferencer(['street.jpg'], class_names=['person', 'bicycle', 'dog'])[0]
        {'scores': {'person': 0.93, ...}, 'labels': ['person', 'bicycle'], ...}
        >>> inferencer(many_paths, out_dir='preds/')  # predictions.json + vis/*.png
    """

    def __init__(self, model: Union[str, torch.nn.Module], checkpoint: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None,
                 device: Optional[str] = None,
                 cfg_options: Optional[Sequence[str]] = None,
                 batch_size: int = 16, return_vis: bool = False):
        from mmengine.dataset import Compose

        if isinstance(model, torch.nn.Module):
            if checkpoint is not None or cfg_options:
                raise ValueError('a built model takes no checkpoint or cfg_options: load '
                                 'them when building it (get_model(name, pretrained=...))')
            self.model, cfg = model, getattr(model, '_config', None)
            ckpt_meta = dict(dataset_meta=getattr(model, 'dataset_meta', None) or {})
            self.device = (torch.device(device) if device is not None else
                           next(model.parameters()).device)
        else:
            self.model, cfg, ckpt_meta = self._build(model, checkpoint, cfg_options)
            self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.cfg = cfg
        self.model.to(self.device).eval()
        self.batch_size = _check_positive(batch_size, 'batch_size')
        self.return_vis = bool(return_vis)

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

        if cfg is not None:
            pipeline_cfg = list(cfg.test_dataloader.dataset.pipeline)
        else:  # a bare built model: decode, resize to the backbone's input, pack
            h, w = self.model.backbone._input_hw
            pipeline_cfg = [dict(type='LoadImageCV2', to_rgb=True),
                            dict(type='Resize', scale=(w, h)), dict(type='PackInputs')]
        self.load_step = Compose([pipeline_cfg[0]]) if pipeline_cfg else None
        self.pipeline = Compose(pipeline_cfg[1:])

    @staticmethod
    def _build(model: str, checkpoint: Optional[str], cfg_options):
        """(model, config, checkpoint meta) from a name, a config or a checkpoint."""
        from mmengine.config import Config
        from mmengine.runner import load_checkpoint
        from mmpretrain.registry import MODELS

        from mlr_plugin.engine.launch import load_config, parse_cfg_options

        ckpt_meta = {}
        if model.endswith(('.pth', '.pt')):
            if checkpoint is not None:
                raise ValueError('give either a checkpoint as model or a config + checkpoint')
            checkpoint = model
            ckpt_meta = read_checkpoint_meta(checkpoint)
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
            if not model.endswith('.py'):  # a model name from the metafiles
                from .model_zoo import model_info
                info = model_info(model)
                model = info['Config']
                if checkpoint is None and info.get('Weights'):
                    checkpoint = info['Weights']
            cfg = load_config(model, cfg_options)
            if checkpoint is not None:
                ckpt_meta = read_checkpoint_meta(checkpoint)
        built = MODELS.build(cfg.model)
        if checkpoint is not None:
            from mlr_plugin.models.checkpoint import require_complete
            load_checkpoint(built, checkpoint, map_location='cpu', strict=True)
            require_complete(built, checkpoint)
        return built, cfg, ckpt_meta

    def _prepare(self, image: ImageInput) -> dict:
        """The packed input and the RGB image the pipeline started from (for drawing)."""
        if isinstance(image, str):
            if not osp.isfile(image):
                raise FileNotFoundError(f'image not found: {image}')
            loaded = self.load_step(dict(img_path=image))
        elif isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3:
            h, w = image.shape[:2]
            loaded = dict(img=image, img_shape=(h, w), ori_shape=(h, w))
        else:
            raise TypeError('images must be file paths or H x W x 3 RGB uint8 arrays, got '
                            f'{type(image).__name__}')
        original = loaded['img']
        return self.pipeline(dict(loaded)), original

    def _forward(self, batch: List[dict]):
        """(B, C) scores, (B, C, L) attention or None, and the feature grid (h, w)."""
        from mlr_plugin.visualization import scores_and_attention
        data = self.model.data_preprocessor(
            dict(inputs=[b['inputs'] for b in batch],
                 data_samples=[b['data_samples'] for b in batch]), False)
        return scores_and_attention(self.model, data['inputs'])

    def __call__(self, images: Union[ImageInput, Sequence[ImageInput]],
                 class_names: Optional[Sequence[str]] = None,
                 threshold: Optional[float] = None, topk: int = 5,
                 batch_size: Optional[int] = None,
                 return_vis: Optional[bool] = None,
                 return_attention: bool = False,
                 out_dir: Optional[str] = None,
                 show_progress: bool = True,
                 vis_ncols: Optional[int] = None) -> List[Dict]:
        """Returns one dict per image: ``scores`` {name: score}, ``labels`` (score >
        ``threshold``, best first; with ``threshold=None`` the head's own rule: its
        ``thr`` (0.5 for the probability heads) or its ``topk`` (MKT's rank-only
        scores: the head's top 3)) and ``topk`` [(name, score)]; ``attention`` (C, h, w) in
        the order of the names when ``return_attention`` (None for a head without
        one); ``vis`` (the figure of the ``topk`` classes' maps, uint8 RGB, ``vis_ncols``
        panels a row: default all in one row, up to 6) when ``return_vis``.

        ``out_dir``: also write ``predictions.json`` (image, scores, labels, topk per
        image) there and, with ``return_vis``, ``vis/<image name>.png``, each file
        atomically. A progress bar shows on stderr when there is more than one batch.
        """
        if isinstance(images, (str, np.ndarray)):
            images = [images]
        images = list(images)
        batch_size = _check_positive(self.batch_size if batch_size is None else batch_size,
                                     'batch_size')
        return_vis = self.return_vis if return_vis is None else bool(return_vis)
        names = list(class_names) if class_names is not None else self.class_names
        scored, report = self._match(names)
        vis_names = vis_file_names(images) if return_vis else None
        progress = None
        if show_progress and len(images) > batch_size:
            from mmengine.utils import ProgressBar
            progress = ProgressBar(len(images), file=sys.stderr)
        rule = label_rule(self.model.head, threshold)
        previous = self.model.class_names
        self.model.set_class_names(scored)
        results = []
        try:
            for start in range(0, len(images), batch_size):
                prepared = [self._prepare(img) for img in images[start:start + batch_size]]
                scores, attention, grid = self._forward([p[0] for p in prepared])
                for j, (_, original) in enumerate(prepared):
                    result = self._result(scores[j], None if attention is None else
                                          attention[j], grid, report, names, rule,
                                          topk, return_attention or return_vis)
                    if return_vis:
                        result['vis'] = self._draw(original, result, names, topk,
                                                   vis_names[start + j], vis_ncols)
                        if not return_attention:
                            del result['attention']
                    results.append(result)
                    if progress is not None:
                        progress.update()
        finally:  # a model given built keeps the names it had
            self.model.class_names = previous
        if progress is not None:
            sys.stderr.write('\n')
        if out_dir is not None:
            write_results(out_dir, images, results, vis_names)
        return results

    @staticmethod
    def _result(scores, attention, grid, report, names, rule, topk, with_attention):
        scores = scores.cpu().numpy()
        if report is not None:  # trained order -> the order asked for
            scores = scores[report]
        order = np.argsort(-scores, kind='stable')
        threshold, label_topk = rule
        labels = ([names[i] for i in order if scores[i] > threshold] if label_topk is None
                  else [names[i] for i in order[:label_topk]])
        result = dict(scores={names[i]: float(scores[i]) for i in range(len(names))},
                      labels=labels,
                      topk=[(names[i], float(scores[i])) for i in order[:topk]])
        if with_attention:
            maps = None
            if attention is not None:
                from mlr_plugin.visualization import attention_to_maps
                maps = attention_to_maps(attention.float().cpu().numpy(), grid)
                if report is not None:
                    maps = maps[report]
            result['attention'] = maps
        return result

    @staticmethod
    def _draw(image: np.ndarray, result: dict, names: List[str], topk: int,
              title: str, ncols: Optional[int] = None) -> np.ndarray:
        from mlr_plugin.visualization import draw_topk
        scores = np.array([result['scores'][n] for n in names])
        return draw_topk(np.ascontiguousarray(image), scores, result['attention'], names,
                         topk, title=title, ncols=ncols)

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


def _check_positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{what} must be a positive int, got {value!r}')
    return value


def vis_file_names(images: Sequence[ImageInput]) -> List[str]:
    """A file name per image for its figure: the image's own stem, numbered when two
    images share one (or for arrays)."""
    stems = [osp.splitext(osp.basename(img))[0] if isinstance(img, str) else f'image_{i}'
             for i, img in enumerate(images)]
    counts = Counter(stems)
    return [f'{stem}_{i}' if counts[stem] > 1 else stem for i, stem in enumerate(stems)]


def write_results(out_dir: str, images: Sequence[ImageInput], results: List[dict],
                  vis_names: Optional[List[str]] = None) -> None:
    """``out_dir/predictions.json`` (image, scores, labels, topk) and, for results with
    ``vis``, ``out_dir/vis/<name>.png``; every file written atomically."""
    from mlr_plugin.fileio import write_json_atomic
    rows = []
    for i, (image, result) in enumerate(zip(images, results)):
        row = dict(image=image if isinstance(image, str) else f'<array {i}>')
        row.update({k: result[k] for k in ('scores', 'labels', 'topk')})
        if 'vis' in result:
            png = osp.join(out_dir, 'vis', (vis_names or vis_file_names(images))[i] + '.png')
            write_png_atomic(png, result['vis'])
            row['vis'] = png
        rows.append(row)
    write_json_atomic(rows, osp.join(out_dir, 'predictions.json'), indent=1)


def write_png_atomic(path: str, rgb: np.ndarray) -> None:
    """An RGB uint8 image as a PNG file, replaced in one step (never half written)."""
    import cv2

    from mlr_plugin.fileio import atomic_open
    ok, data = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError(f'could not encode {path} as PNG (image {rgb.shape})')
    with atomic_open(path, 'wb') as f:
        f.write(data.tobytes())


def inference_model(model, image: ImageInput, class_names: Optional[Sequence[str]] = None,
                    topk: Optional[int] = None, return_vis: bool = False) -> dict:
    """Score one image (mmpretrain's ``inference_model``).

    Args:
        model: a built model (e.g. :func:`~mlr_plugin.apis.get_model`), a
            :class:`MultiLabelInferencer`, or a name / config / checkpoint it accepts.
        image: a file path or an (H, W, 3) uint8 RGB array.
        class_names: names to score (default: the model's).
        topk: classes drawn in ``vis`` (default 5, or all when fewer).
        return_vis: add ``vis``, the figure of the top classes' attention maps.

    Returns:
        dict(pred_scores=(C,) array, class_names=list, attention=(C, h, w) array or None
        for a head without attention maps, [vis=(H', W', 3) uint8 RGB]).
    """
    if isinstance(model, MultiLabelInferencer):
        inferencer = model
    else:
        inferencer = MultiLabelInferencer(model, class_names=class_names)
    names = list(class_names) if class_names is not None else inferencer.class_names
    topk = _check_positive(topk if topk is not None else 5, 'topk')
    result = inferencer(image, class_names=names, topk=topk, return_vis=return_vis,
                        return_attention=True, show_progress=False)[0]
    out = dict(pred_scores=np.array([result['scores'][n] for n in names], dtype=np.float32),
               class_names=names, attention=result['attention'])
    if return_vis:
        out['vis'] = result['vis']
    return out


def read_checkpoint_meta(path: str) -> dict:
    # the same scoped weights-only loader as mmengine's load_from / resume
    from mlr_plugin.compat import load_checkpoint_file
    ckpt = load_checkpoint_file(path, map_location='cpu')
    return ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}


def label_rule(head, threshold: Optional[float]) -> Tuple[Optional[float], Optional[int]]:
    """(threshold, top-k) deciding an image's labels: the given threshold, else the
    head's own rule (``thr`` or, for rank-only scores such as MKT's, ``topk``)."""
    if threshold is not None:
        return float(threshold), None
    if getattr(head, 'topk', None) is not None:
        return None, int(head.topk)
    thr = getattr(head, 'thr', None)
    return (0.5 if thr is None else float(thr)), None
