"""Evaluate a CLIP on a demo-world split: caption retrieval and per-class zero-shot mAP.

Used by ``train_tiny_clip.py`` after training, and on its own::

    python tools/demo/tiny_clip_eval.py --data data/demo_world --split val \
        --weights mlr_plugin/demo/mlr-demo-rn.safetensors
    python tools/demo/tiny_clip_eval.py --model mlr-demo-vit   # its shipped weights

Everything model-side is the package's: ``OpenCLIPBackbone`` (dense + global image
features, text encoding), ``HandcraftedPrompts`` (class prompts) and
``mlr_plugin.evaluation.functional.mean_average_precision``.

Numbers (all in %):
- ``i2t_r1 / i2t_r5 / t2i_r1 / t2i_r5``: retrieval between each image and its first caption.
- ``zs_map_global``: for each class c, images ranked by cos(image embedding,
  text("a photo of a {c}.")); non-interpolated average precision (tied scores are one
  threshold, as in sklearn) vs "image contains c"; mean over classes that have a positive.
- ``zs_map_dense``: same, but an image's score is the max over its grid locations j of
  cos(dense_j, text). ResNet (``mlr-demo-rn``): dense_j = c_proj(v_proj(x_j + pos_j)),
  the attention pool's value path without q/k attention, i.e. the dense features the
  DualCoOp family aggregates (the backbone with ``with_mean_token=False,
  with_pos_embed=True``). ViT (``mlr-demo-vit``): dense_j = proj(ln_post(patch token j)),
  the patch features MKT's local stream scores.
- ``positive_rate``: mean over classes of the fraction of positive images (chance mAP).
"""
import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's mlr_plugin

from mlr_plugin.evaluation.functional import mean_average_precision  # noqa: E402
from mlr_plugin.models.clip import OpenCLIPBackbone  # noqa: E402
from mlr_plugin.models.prompts import HandcraftedPrompts  # noqa: E402

ZERO_SHOT_TEMPLATE = 'a photo of a {}.'
DEFAULT_MODEL = 'mlr-demo-rn'
DEFAULT_WEIGHTS = 'mlr_plugin/demo/mlr-demo-rn.safetensors'


# -------------------------------------------------------------------------------- data
def load_demo_split(data_root, split: str) -> Dict[str, object]:
    """Read one split of a COCO-format demo world with plain json + cv2.

    Returns a dict with ``images`` uint8 (N, S, S, 3) RGB, ``labels`` float (N, C) 0/1,
    ``areas`` float (N, C) visible pixels of each class (0 when absent), ``captions`` list
    of N lists of strings, ``class_names`` list of C strings (category id order).
    """
    root = Path(data_root)
    inst_file = root / 'annotations' / f'instances_{split}.json'
    cap_file = root / 'annotations' / f'captions_{split}.json'
    for path in (inst_file, cap_file):
        if not path.is_file():
            raise FileNotFoundError(f'demo world file not found: {path} (generate it with '
                                    'python -m mlr_plugin.datasets.demo_world --out ...)')
    instances = json.loads(inst_file.read_text())
    captions = json.loads(cap_file.read_text())
    for field in ('images', 'annotations', 'categories'):
        if field not in instances:
            raise ValueError(f'{inst_file}: missing field {field!r}')
    categories = sorted(instances['categories'], key=lambda c: c['id'])
    cat_index = {c['id']: i for i, c in enumerate(categories)}
    images = instances['images']
    img_index = {img['id']: i for i, img in enumerate(images)}

    labels = np.zeros((len(images), len(categories)), np.float32)
    areas = np.zeros((len(images), len(categories)), np.float32)
    for ann in instances['annotations']:
        i, c = img_index[ann['image_id']], cat_index[ann['category_id']]
        labels[i, c] = 1
        areas[i, c] += ann['area']
    texts: List[List[str]] = [[] for _ in images]
    for ann in sorted(captions['annotations'], key=lambda a: a['id']):
        texts[img_index[ann['image_id']]].append(ann['caption'])

    pixels = []
    for img in images:
        path = root / split / img['file_name']
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f'cannot read demo image {path}')
        pixels.append(bgr[:, :, ::-1])
    return dict(images=np.stack(pixels) if pixels else np.zeros((0, 1, 1, 3), np.uint8),
                labels=labels, areas=areas, captions=texts,
                class_names=[c['name'] for c in categories])


def normalise(images_uint8: torch.Tensor, mean: Sequence[float],
              std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, S, S, 3) RGB -> float (N, 3, S, S), CLIP-normalised."""
    x = images_uint8.permute(0, 3, 1, 2).float().div_(255)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


# ---------------------------------------------------------------------------- features
def load_backbone(weights: str = DEFAULT_WEIGHTS, model_name: str = DEFAULT_MODEL):
    """The package's ``OpenCLIPBackbone`` with this tool's dense features (no mean token,
    positional embedding added), weights from a local file, in eval mode."""
    if not Path(weights).is_file():
        raise FileNotFoundError(f'weights not found: {weights} '
                                '(train them with python tools/demo/train_tiny_clip.py)')
    return OpenCLIPBackbone(model_name, pretrained=str(weights), with_mean_token=False,
                            with_pos_embed=True).eval()


def backbone_from_open_clip(model, model_name: str = DEFAULT_MODEL):
    """An ``OpenCLIPBackbone`` like :func:`load_backbone` holding a copy of the weights of
    an open_clip model (e.g. one being trained); ``model`` itself is not changed."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # open_clip's "initialized randomly": we copy next
    try:
        backbone = OpenCLIPBackbone(model_name, pretrained=None, with_mean_token=False,
                                    with_pos_embed=True)
    finally:
        logging.disable(previous)
    backbone.clip.load_state_dict(model.state_dict())
    return backbone.eval()


@torch.no_grad()
def encode_images(backbone, x: torch.Tensor, batch_size: int = 256):
    """-> (global (N, D), dense (N, h*w, D)), both L2-normalised along D."""
    glob, dense = [], []
    for i in range(0, len(x), batch_size):
        out = backbone(x[i:i + batch_size])
        glob.append(F.normalize(out['global_feat'].float(), dim=-1))
        dense.append(F.normalize(out['dense'].float(), dim=-1))
    return torch.cat(glob), torch.cat(dense)


@torch.no_grad()
def encode_texts(backbone, texts: Sequence[str], batch_size: int = 512):
    """-> (N, D) L2-normalised text features."""
    out = [F.normalize(backbone.encode_text(list(texts[i:i + batch_size])).float(), dim=-1)
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out)


# ----------------------------------------------------------------------------- metrics
def retrieval_recall(similarity: torch.Tensor, k: int) -> float:
    """% of rows whose matching column (the diagonal) is among the top-k of the row."""
    topk = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    target = torch.arange(similarity.shape[0]).unsqueeze(1)
    return 100.0 * (topk == target).any(dim=1).float().mean().item()


@torch.no_grad()
def evaluate_backbone(backbone, split: Dict[str, object],
                      mean: Optional[Sequence[float]] = None,
                      std: Optional[Sequence[float]] = None) -> Dict[str, float]:
    """All numbers described in the module docstring, for one loaded split.

    ``mean`` / ``std`` default to the normalisation the backbone's weights expect.
    """
    backbone.eval()
    mean = backbone.image_mean if mean is None else mean
    std = backbone.image_std if std is None else std
    images = normalise(torch.from_numpy(np.ascontiguousarray(split['images'])), mean, std)
    labels = split['labels']
    img_glob, img_dense = encode_images(backbone, images)
    cap_feat = encode_texts(backbone, [caps[0] for caps in split['captions']])
    cls_feat = HandcraftedPrompts(ZERO_SHOT_TEMPLATE)(split['class_names'], backbone)['pos']

    sim = img_glob @ cap_feat.T
    global_scores = (img_glob @ cls_feat.T).numpy()
    dense_scores = torch.einsum('nld,cd->nlc', img_dense, cls_feat).amax(dim=1).numpy()
    has_pos = labels.sum(0) > 0
    return dict(
        i2t_r1=retrieval_recall(sim, 1), i2t_r5=retrieval_recall(sim, 5),
        t2i_r1=retrieval_recall(sim.T, 1), t2i_r5=retrieval_recall(sim.T, 5),
        zs_map_global=mean_average_precision(global_scores, labels),
        zs_map_dense=mean_average_precision(dense_scores, labels),
        positive_rate=100.0 * float(labels.mean(0)[has_pos].mean()),
        num_images=int(len(labels)))


def evaluate_clip(model, tokenizer, split: Dict[str, object], mean, std,
                  model_name: str = DEFAULT_MODEL) -> Dict[str, float]:
    """:func:`evaluate_backbone` for a plain open_clip model of architecture
    ``model_name`` (``train_tiny_clip.py`` evaluates the model it trains this way).

    ``tokenizer`` is not used: the backbone tokenises with open_clip's tokenizer for
    ``model_name``, the one ``train_tiny_clip.py`` passes.
    """
    del tokenizer
    return evaluate_backbone(backbone_from_open_clip(model, model_name), split, mean, std)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a tiny CLIP on the demo world.')
    parser.add_argument('--data', default='data/demo_world')
    parser.add_argument('--split', default='val')
    parser.add_argument('--model', default=DEFAULT_MODEL)
    parser.add_argument('--weights', default=None,
                        help='default: the shipped mlr_plugin/demo/<model>.safetensors')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    weights = args.weights or str(Path(DEFAULT_WEIGHTS).with_name(f'{args.model}.safetensors'))
    backbone = load_backbone(weights, args.model)
    metrics = evaluate_backbone(backbone, load_demo_split(args.data, args.split))
    print(json.dumps({k: round(v, 2) for k, v in metrics.items()}))
    return metrics


if __name__ == '__main__':
    main()
