"""Evaluate a CLIP on a demo-world split: caption retrieval and per-class zero-shot mAP.

Used by ``train_tiny_clip.py`` after training, and on its own::

    python tools/demo/tiny_clip_eval.py --data data/demo_world --split val \
        --weights mlr_plugin/demo/mlr-demo-rn.safetensors

Numbers (all in %):
- ``i2t_r1 / i2t_r5 / t2i_r1 / t2i_r5``: retrieval between each image and its first caption.
- ``zs_map_global``: for each class c, images ranked by cos(image embedding,
  text("a photo of a {c}.")); sklearn average precision vs "image contains c"; mean over
  classes that have a positive.
- ``zs_map_dense``: same, but an image's score is the max over its grid locations j of
  cos(c_proj(v_proj(x_j + pos_j)), text) -- the attention pool's value path without q/k
  attention, i.e. the dense features the DualCoOp family aggregates.
- ``positive_rate``: mean over classes of the fraction of positive images (chance mAP).
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

ZERO_SHOT_TEMPLATE = 'a photo of a {}.'


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
@torch.no_grad()
def dense_image_features(visual, x: torch.Tensor) -> torch.Tensor:
    """Per-location embeddings (N, h*w, D) of an open_clip ModifiedResNet.

    Location j gets ``c_proj(v_proj(x_j + pos_j))``: the attention pool's value path with
    its positional embedding (row 0, the mean token's, is skipped), no q/k attention.
    """
    feat = visual.stem(x)
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        feat = layer(feat)
    tokens = feat.flatten(2).transpose(1, 2)  # (N, h*w, W)
    pool = visual.attnpool
    tokens = tokens + pool.positional_embedding[1:].to(tokens.dtype)
    return pool.c_proj(pool.v_proj(tokens))


@torch.no_grad()
def encode_images(model, x: torch.Tensor, batch_size: int = 256):
    """-> (global (N, D), dense (N, L, D)), both L2-normalised along D."""
    glob, dense = [], []
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        glob.append(F.normalize(model.encode_image(chunk), dim=-1))
        dense.append(F.normalize(dense_image_features(model.visual, chunk), dim=-1))
    return torch.cat(glob), torch.cat(dense)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 512):
    out = [F.normalize(model.encode_text(tokenizer(list(texts[i:i + batch_size]))), dim=-1)
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out)


# ----------------------------------------------------------------------------- metrics
def retrieval_recall(similarity: torch.Tensor, k: int) -> float:
    """% of rows whose matching column (the diagonal) is among the top-k of the row."""
    topk = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    target = torch.arange(similarity.shape[0]).unsqueeze(1)
    return 100.0 * (topk == target).any(dim=1).float().mean().item()


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes with >= 1 positive of sklearn's AP, in %."""
    aps = [average_precision_score(labels[:, c], scores[:, c])
           for c in range(labels.shape[1]) if labels[:, c].sum() > 0]
    return 100.0 * float(np.mean(aps))


@torch.no_grad()
def evaluate_clip(model, tokenizer, split: Dict[str, object], mean, std) -> Dict[str, float]:
    """All numbers described in the module docstring, for one loaded split."""
    model.eval()
    images = normalise(torch.from_numpy(np.ascontiguousarray(split['images'])), mean, std)
    labels = split['labels']
    img_glob, img_dense = encode_images(model, images)
    cap_feat = encode_texts(model, tokenizer, [caps[0] for caps in split['captions']])
    prompts = [ZERO_SHOT_TEMPLATE.format(name) for name in split['class_names']]
    cls_feat = encode_texts(model, tokenizer, prompts)

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


def main(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a tiny CLIP on the demo world.')
    parser.add_argument('--data', default='data/demo_world')
    parser.add_argument('--split', default='val')
    parser.add_argument('--model', default='mlr-demo-rn')
    parser.add_argument('--weights', default='mlr_plugin/demo/mlr-demo-rn.safetensors')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import open_clip

    import mlr_plugin  # noqa: F401  (registers the model config)
    if not Path(args.weights).is_file():
        raise FileNotFoundError(f'weights not found: {args.weights} '
                                '(train them with python tools/demo/train_tiny_clip.py)')
    model = open_clip.create_model(args.model, pretrained=args.weights)
    tokenizer = open_clip.get_tokenizer(args.model)
    split = load_demo_split(args.data, args.split)
    metrics = evaluate_clip(model, tokenizer, split, open_clip.OPENAI_DATASET_MEAN,
                            open_clip.OPENAI_DATASET_STD)
    print(json.dumps({k: round(v, 2) for k, v in metrics.items()}))


if __name__ == '__main__':
    main()
