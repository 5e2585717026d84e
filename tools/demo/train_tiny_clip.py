"""Pretrain a tiny demo CLIP (``mlr-demo-rn`` or ``mlr-demo-vit``) on CPU, on its own corpus
of the demo world.

    python tools/demo/train_tiny_clip.py   # generates data/demo_clip_corpus if missing
    python tools/demo/train_tiny_clip.py --model mlr-demo-vit --epochs 18 \
        --warmup-epochs 1 --distill-from mlr_plugin/demo/mlr-demo-rn.safetensors

Both architectures (mlr_plugin/models/clip/model_configs/) share the 64-d embedding and
text tower; ``mlr-demo-rn`` has a 4-stage ResNet with attention pool (the DualCoOp
family's dense features), ``mlr-demo-vit`` a 6-block ViT (width 64, patch 16: an 8 x 8
grid at 128 px) whose last blocks MKT fine-tunes.

The shipped ViT one is distilled from mlr-demo-rn on the same corpus
(``--distill-from``): its text tower is mlr-demo-rn's, frozen, and its image tower learns
to reproduce mlr-demo-rn's image embedding (class token) and dense features (patch
tokens, the teacher's 4 x 4 grid resized to 8 x 8), cosine loss, no text in the loop.
Why: trained contrastively (LiT, ``--lock-text-from`` alone) the small ViT reached 33 %
zero-shot mAP after 13 minutes; distilled, it nears its teacher (58 vs 62 %) in 5, and
its patch tokens are aligned with the text, which MKT's local stream scores.

The pretraining corpus is a separate world (``--corpus-seed 1``, 6000 images), not the
demo world's train split: prompt learning later sees only 10% of the train labels, so
the CLIP must not have seen captions of those images (they would be full labels).

Its texts are web-style alt text, not label lists: a caption always names the image's
most salient object (largest visible area) and each other object with probability
``--mention-prob``. Loss: symmetric InfoNCE with open_clip's learnable logit_scale, where
texts naming the same set of classes count as one caption (they are positives of each
other's images, as identical captions would be). Each text also gets one hard negative
(one object recoloured or reshaped) that only acts as a negative. Images get flips, small
shifts and brightness jitter (never hue: colour is half of every class name). AdamW,
warmup + cosine, fixed seeds, <= 2 threads. Then it saves fp16 safetensors atomically,
reloads them with ``open_clip.create_model(<model>, pretrained=<file>)``, evaluates
that on the demo world's val split (see tiny_clip_eval.py) and writes a JSON card next to
the weights.
"""
import argparse
import hashlib
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlr_plugin.datasets.demo_world import (DEMO_COLOURS, DEMO_SHAPES,  # noqa: E402
                                            make_captions)
from mlr_plugin.fileio import atomic_open, write_json_atomic  # noqa: E402
from tiny_clip_eval import evaluate_clip, load_demo_split  # noqa: E402

# the demo CLIPs shipped in mlr_plugin/demo/: a ResNet one (DualCoOp family) and a ViT one
# (MKT, whose student fine-tunes the last ViT blocks)
DEMO_MODELS = ('mlr-demo-rn', 'mlr-demo-vit')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--corpus', default=str(REPO_ROOT / 'data' / 'demo_clip_corpus'),
                        help='pretraining corpus folder (generated if missing)')
    parser.add_argument('--corpus-seed', type=int, default=1,
                        help='world seed of the corpus; the demo world uses 0')
    parser.add_argument('--corpus-images', type=int, default=6000)
    parser.add_argument('--data', default=str(REPO_ROOT / 'data' / 'demo_world'),
                        help='demo world whose val split is reported (generated if missing)')
    parser.add_argument('--data-seed', type=int, default=0)
    parser.add_argument('--model', default='mlr-demo-rn', choices=DEMO_MODELS,
                        help='architecture (mlr_plugin/models/clip/model_configs/<name>.json)')
    parser.add_argument('--out', default=None,
                        help='weights file (default mlr_plugin/demo/<model>.safetensors)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--weight-decay', type=float, default=0.1)
    parser.add_argument('--warmup-epochs', type=float, default=1.0)
    parser.add_argument('--mention-prob', type=float, default=0.35,
                        help='probability that a caption names a non-salient object')
    parser.add_argument('--lock-text-from', default=None, metavar='SAFETENSORS',
                        help='LiT: copy the text tower (token/positional embeddings, '
                             'transformer, ln_final, text_projection) from these weights '
                             'of a CLIP with the same text config and keep it frozen; only '
                             'the image tower and the logit scale train')
    parser.add_argument('--distill-from', default=None, metavar='SAFETENSORS',
                        help='train the image tower to reproduce these CLIP weights\' '
                             'image embedding and dense features (cosine) instead of the '
                             'contrastive loss; the text tower is locked from the same '
                             'file (implies --lock-text-from)')
    parser.add_argument('--dense-weight', type=float, default=1.0,
                        help='with --distill-from: weight of the dense-feature term')
    parser.add_argument('--threads', type=int, default=2, help='torch threads (<= 2 here)')
    parser.add_argument('--eval-every', type=int, default=0,
                        help='also print val zero-shot mAP every N epochs (0: only at the end)')
    args = parser.parse_args(argv)
    if args.distill_from:
        if args.lock_text_from and Path(args.lock_text_from).resolve() != \
                Path(args.distill_from).resolve():
            parser.error('--distill-from locks the text tower from the same weights; '
                         f'--lock-text-from {args.lock_text_from} differs')
        args.lock_text_from = args.distill_from
    if args.out is None:
        args.out = str(REPO_ROOT / 'mlr_plugin' / 'demo' / f'{args.model}.safetensors')
    return args


# ------------------------------------------------------------------------ augmentation
def augment(images: torch.Tensor, rng: np.random.RandomState, max_shift: int = 8,
            brightness: float = 0.15) -> torch.Tensor:
    """Float (B, 3, S, S) in [0, 1] -> same shape: h-flip, shift (reflect pad), brightness.

    The same brightness factor multiplies all three channels, so hues do not move.
    """
    b, _, s, _ = images.shape
    padded = F.pad(images, [max_shift] * 4, mode='reflect')
    flips = rng.rand(b) < 0.5
    dx, dy = rng.randint(0, 2 * max_shift + 1, size=(2, b))
    gains = torch.from_numpy(rng.uniform(1 - brightness, 1 + brightness, size=b)).float()
    out = torch.empty_like(images)
    for i in range(b):
        crop = padded[i, :, dy[i]:dy[i] + s, dx[i]:dx[i] + s]
        out[i] = crop.flip(-1) if flips[i] else crop
    return (out * gains.view(b, 1, 1, 1)).clamp_(0, 1)


# ---------------------------------------------------------------------------- training
def param_groups(model, weight_decay: float):
    """open_clip's rule: no weight decay on gains, biases, norms and the logit scale.
    Frozen parameters (a locked text tower) are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or 'bn' in name or 'ln' in name or 'logit_scale' in name
        (no_decay if skip else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay),
            dict(params=no_decay, weight_decay=0.0)]


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


def lock_text_tower(model, path) -> list:
    """LiT (Zhai et al. 2022): load the text tower of the CLIP weights at ``path`` into
    ``model`` and freeze it; return the names loaded.

    Why: a from-scratch ViT learns slowly on 6000 images; aligning it to a text space
    that already separates the demo's colours and shapes (``mlr-demo-rn``'s, trained on
    the same corpus) needs a fraction of the steps, and the text forward then needs no
    backward. Both shipped CLIPs then share one text encoder.
    """
    from safetensors.torch import load_file
    source = load_file(str(path))
    own = model.state_dict()
    text = {k: v for k, v in source.items()
            if not k.startswith('visual.') and k not in ('logit_scale', 'logit_bias')}
    mismatched = [k for k, v in text.items() if k not in own or own[k].shape != v.shape]
    if mismatched or not text:
        raise ValueError(f'--lock-text-from {path}: text tower does not fit this model '
                         f'(mismatched keys: {mismatched[:3] or "no text weights"})')
    model.load_state_dict(text, strict=False)
    for name, p in model.named_parameters():
        if name in text:
            p.requires_grad_(False)
    return sorted(text)


def encode_text_prefix(model, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` computed on the tokens up to the longest EOT only.

    Why: the text tower is causal and pools the EOT token, so padding after it cannot
    change the output; captions are ~25 of the 77 tokens, so this is ~3x cheaper.
    """
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(len(x)), tokens.argmax(dim=-1)]
    return x @ model.text_projection


def sample_web_caption(salient_names: list, rng: np.random.RandomState,
                       mention_prob: float):
    """Draw one web-style training text for an image and a hard negative of it.

    Args:
        salient_names: the image's class names, most salient (largest visible area)
            first, e.g. ``['blue star', 'red circle']``.
        mention_prob: probability that each non-salient object is named too. Why: alt
            text describes what stands out, not every object, so the CLIP's global
            embedding is biased to salient objects as real CLIP's is, and a text names
            an image's full label set only sometimes.

    Returns:
        (text, text_classes, negative, negative_classes): ``text`` names the salient
        object and the drawn others, in random order, with a random caption template;
        ``negative`` changes one named object's colour or shape to a class the image
        lacks (NegCLIP-style). Why: with random in-batch negatives colour alone tells
        most images apart, so shapes and which colour goes with which shape get almost
        no gradient.
    """
    named = [salient_names[0]] + [n for n in salient_names[1:] if rng.rand() < mention_prob]
    named = [named[i] for i in rng.permutation(len(named))]
    text = make_captions(named, rng, num=1)[0]
    target = named[rng.randint(len(named))]
    colour, shape = target.split(' ')
    swap_shape = [f'{colour} {s}' for s in DEMO_SHAPES
                  if f'{colour} {s}' not in salient_names]
    swap_colour = [f'{c} {shape}' for c in DEMO_COLOURS
                   if f'{c} {shape}' not in salient_names]
    options = swap_shape if (rng.rand() < 0.5 and swap_shape) or not swap_colour \
        else swap_colour
    replacement = options[rng.randint(len(options))]
    negative = text.replace(target, replacement, 1)
    negative_named = [replacement if n == target else n for n in named]
    return text, named, negative, negative_named


def same_caption_positives(image_texts: list, all_texts: list) -> torch.Tensor:
    """(B, T) bool: image i is a positive of text t when t names the same set of classes
    as image i's own text (B = len(image_texts); image i's own text is ``all_texts[i]``).

    Why not "every image showing the named classes": that turns each text into a label
    query over the batch, i.e. full supervision of every class named anywhere, which is
    what the demo's partial-label methods are meant to do without.
    """
    own = [frozenset(names) for names in image_texts]
    sets = [frozenset(names) for names in all_texts]
    return torch.tensor([[o == t for t in sets] for o in own], dtype=torch.bool)


def vit_image_features(model, images: torch.Tensor):
    """open_clip ViT image tower -> (dense (B, h*w, D), global (B, D)), every part trainable.

    The dense features are ``proj(ln_post(patch token))``, the ones MKT's local stream
    scores (``OpenCLIPBackbone`` computes them the same way); the global one equals
    ``model.encode_image`` (checked before training).
    """
    visual = model.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype))
    x = visual.ln_post(visual.transformer(x))
    return x[:, 1:] @ visual.proj, x[:, 0] @ visual.proj


def load_distill_teacher(path):
    """The CLIP whose image features ``--distill-from`` reproduces: the package's
    backbone (dense = the DualCoOp family's value-path features of mlr-demo-rn), frozen,
    in eval mode. Its architecture is the ``model`` entry of the file's metadata."""
    from safetensors import safe_open

    from mlr_plugin.models.clip import OpenCLIPBackbone
    with safe_open(str(path), 'pt') as f:
        arch = (f.metadata() or {}).get('model')
    if not arch:
        raise ValueError(f'--distill-from {path}: no "model" entry in the safetensors '
                         'metadata (weights written by this script have one)')
    teacher = OpenCLIPBackbone(arch, pretrained=str(path), with_mean_token=False,
                               with_pos_embed=True).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def feature_distillation_loss(student_dense, student_global, teacher_dense,
                              teacher_global, teacher_grid, dense_weight: float = 1.0):
    """``mean(1 - cos(global_s, global_t)) + dense_weight * mean_j(1 - cos(dense_sj,
    up(dense_t)_j))``, the teacher's grid bilinearly resized to the student's (square).

    Cosine only: zero-shot scores are cosines, so the norms are free.
    """
    b, l, d = student_dense.shape
    side = math.isqrt(l)
    h, w = teacher_grid
    up = F.interpolate(teacher_dense.reshape(b, h, w, d).permute(0, 3, 1, 2),
                       size=(side, side), mode='bilinear', align_corners=False)
    up = up.flatten(2).transpose(1, 2)
    glob = 1 - F.cosine_similarity(student_global, teacher_global, dim=-1).mean()
    dense = 1 - F.cosine_similarity(student_dense, up, dim=-1).mean()
    return glob + dense_weight * dense


def multi_positive_clip_loss(img_feat, txt_feat, positive, logit_scale):
    """Symmetric InfoNCE where a text may match several images (and vice versa).

    Args:
        img_feat: (B, D) image embeddings; txt_feat: (T, D) text embeddings.
        positive: (B, T) bool, image i shows every object text t names. Each row must
            have a positive (its own text). Texts no image matches (hard negatives) only
            act as negatives in the image->text softmax.
        logit_scale: open_clip's log temperature.

    Each direction is a cross-entropy between the softmax over the batch and the uniform
    distribution over the positives; with one positive per row/column (the diagonal)
    this is CLIP's loss exactly.
    """
    img_feat = F.normalize(img_feat, dim=-1)
    txt_feat = F.normalize(txt_feat, dim=-1)
    logits = logit_scale.exp().clamp(max=100) * img_feat @ txt_feat.T  # (B, T)
    pos = positive.float()
    if not (pos.sum(1) > 0).all():
        raise ValueError('multi_positive_clip_loss: every image needs a positive text')
    img_to_txt = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    matched = pos.sum(0) > 0
    pos_t = pos[:, matched]
    txt_to_img = -(pos_t / pos_t.sum(0, keepdim=True) *
                   logits[:, matched].log_softmax(0)).sum(0).mean()
    return 0.5 * (img_to_txt + txt_to_img)


def train(model, tokenizer, data, args, mean, std, val_data=None, teacher=None):
    rng = np.random.RandomState(args.seed)
    images = torch.from_numpy(np.ascontiguousarray(data['images']))  # uint8 N,S,S,3
    num = len(images)
    # class names by decreasing visible area: the first is the salient object
    names = [[data['class_names'][c] for c in np.argsort(-row, kind='stable') if row[c] > 0]
             for row in data['areas']]
    steps_per_epoch = num // args.batch_size  # drop the last partial batch
    total = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr,
                                  betas=(0.9, 0.98), eps=1e-6)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():  # the shortcut must equal open_clip's own text encoder
        model.eval()
        sample = tokenizer([caps[0] for caps in data['captions'][:8]])
        if not torch.allclose(encode_text_prefix(model, sample), model.encode_text(sample),
                              atol=1e-5):
            raise RuntimeError('encode_text_prefix differs from model.encode_text')
        if teacher is not None:
            x = torch.randn(2, 3, *model.visual.image_size)
            if not torch.allclose(vit_image_features(model, x)[1], model.encode_image(x),
                                  atol=1e-5):
                raise RuntimeError('vit_image_features differs from model.encode_image')
    step, start = 0, time.time()
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(num)
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            x = images[torch.from_numpy(idx)].permute(0, 3, 1, 2).float().div_(255)
            x = (augment(x, rng) - mean_t) / std_t
            for group in optimizer.param_groups:
                group['lr'] = lr_at(step, total, warmup, args.lr)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(x)
                loss = feature_distillation_loss(
                    *vit_image_features(model, x), target['dense'].float(),
                    target['global_feat'].float(), target['grid'], args.dense_weight)
            else:
                pairs = [sample_web_caption(names[i], rng, args.mention_prob) for i in idx]
                texts = [p[0] for p in pairs] + [p[2] for p in pairs]
                positive = same_caption_positives(
                    [p[1] for p in pairs], [p[1] for p in pairs] + [p[3] for p in pairs])
                with torch.set_grad_enabled(model.token_embedding.weight.requires_grad):
                    txt_feat = encode_text_prefix(model, tokenizer(texts))
                loss = multi_positive_clip_loss(model.encode_image(x), txt_feat, positive,
                                                model.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # as in CLIP: keep the temperature in [1/100, 1]
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            step += 1
        print(f'epoch {epoch + 1}/{args.epochs}  loss {np.mean(losses):.3f}  '
              f'logit_scale {model.logit_scale.exp().item():.1f}  '
              f'lr {optimizer.param_groups[0]["lr"]:.2e}  {time.time() - start:.0f}s',
              flush=True)
        if val_data is not None and args.eval_every and (epoch + 1) % args.eval_every == 0:
            metrics = evaluate_clip(model, tokenizer, val_data, mean, std,
                                    model_name=args.model)
            print('  val: ' + '  '.join(f'{k} {v:.1f}' for k, v in metrics.items()
                                        if k != 'num_images'), flush=True)
    return dict(steps=step, final_loss=float(np.mean(losses)))


# ------------------------------------------------------------------------------ saving
def _readable_by_all(path: Path):
    """mkstemp-based atomic writes leave 0600 files; shipped files must be 0644."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_fp16_safetensors(model, path: Path, model_name: str) -> str:
    """Write the state dict (floats as fp16) atomically; return its sha256."""
    from safetensors.torch import save
    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    payload = save(state, metadata=dict(format='pt', model=model_name))
    with atomic_open(path, 'wb') as f:
        f.write(payload)
    _readable_by_all(path)
    return hashlib.sha256(payload).hexdigest()


def main(argv=None):
    args = parse_args(argv)
    if not 1 <= args.threads <= 2:
        raise ValueError(f'--threads must be 1 or 2 on the shared machine, got {args.threads}')
    wall_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import open_clip

    import mlr_plugin  # noqa: F401  (registers the demo model configs)
    from mlr_plugin.datasets.demo_world import generate_demo_world

    corpus_root, data_root = Path(args.corpus), Path(args.data)
    if not (corpus_root / 'annotations' / 'instances_train.json').is_file():
        print(f'generating the pretraining corpus into {corpus_root} (seed '
              f'{args.corpus_seed}, {args.corpus_images} images)', flush=True)
        generate_demo_world(corpus_root, seed=args.corpus_seed,
                            num_train=args.corpus_images, num_val=0, num_test=0)
    if not (data_root / 'annotations' / 'instances_val.json').is_file():
        print(f'generating the demo world into {data_root} (seed {args.data_seed})', flush=True)
        generate_demo_world(data_root, seed=args.data_seed)
    data_time = time.time() - wall_start
    train_split = load_demo_split(corpus_root, 'train')
    val_split = load_demo_split(data_root, 'val')
    print(f'corpus {len(train_split["labels"])} images, demo-world val '
          f'{len(val_split["labels"])} images, {len(train_split["class_names"])} classes',
          flush=True)

    model = open_clip.create_model(args.model, pretrained=None)
    if args.lock_text_from:
        locked = lock_text_tower(model, args.lock_text_from)
        print(f'text tower ({len(locked)} tensors) locked from {args.lock_text_from}',
              flush=True)
    teacher = None
    if args.distill_from:
        if not hasattr(model.visual, 'conv1') or not hasattr(model.visual, 'class_embedding'):
            raise ValueError(f'--distill-from trains a ViT image tower; {args.model} is not one')
        teacher = load_distill_teacher(args.distill_from)
        with torch.no_grad():  # the zero-shot temperature is the teacher's; not trained
            model.logit_scale.copy_(teacher.clip.logit_scale)
        model.logit_scale.requires_grad_(False)
        print(f'distilling the image features of {args.distill_from}', flush=True)
    tokenizer = open_clip.get_tokenizer(args.model)
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    fit = train(model, tokenizer, train_split, args, mean, std, val_split, teacher)
    train_time = time.time() - wall_start - data_time

    out = Path(args.out)
    sha256 = save_fp16_safetensors(model, out, args.model)
    # Report the numbers of what we ship: the fp16 file, loaded the way users load it.
    shipped = open_clip.create_model(args.model, pretrained=str(out))
    metrics = evaluate_clip(shipped, tokenizer, val_split, mean, std,
                            model_name=args.model)
    print('val (fp16 weights, reloaded): ' +
          '  '.join(f'{k} {v:.1f}' for k, v in metrics.items()), flush=True)

    card = dict(
        model=args.model, weights=out.name, sha256=sha256,
        size_bytes=out.stat().st_size, dtype='float16',
        load=f'open_clip.create_model("{args.model}", pretrained=<this file>) after '
             f'import mlr_plugin; or pretrained="mlr_plugin://demo/{out.name}" '
             'in mlr_plugin configs',
        preprocess=dict(image_size=128, mean=list(mean), std=list(std)),
        zero_shot_template='a photo of a {}.',
        corpus=dict(generator='mlr_plugin.datasets.demo_world.generate_demo_world',
                    seed=args.corpus_seed, images=len(train_split['labels']),
                    classes=len(train_split['class_names']),
                    captions='web-style, generated per step: the most salient object '
                             f'always named, each other one with p={args.mention_prob}',
                    instances_sha256=hashlib.sha256(
                        (corpus_root / 'annotations' / 'instances_train.json').read_bytes()
                    ).hexdigest()),
        evaluation=dict(data=f'demo world seed {args.data_seed}, val split',
                        images=len(val_split['labels'])),
        training=dict(seed=args.seed, epochs=args.epochs, steps=fit['steps'],
                      batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      optimizer='AdamW(betas=(0.9, 0.98), eps=1e-6)',
                      schedule='linear warmup + cosine',
                      loss=('symmetric InfoNCE; texts naming the same class set are '
                            'positives of each other' if teacher is None else
                            '1 - cos to the teacher image embedding + '
                            f'{args.dense_weight} x mean over patches of 1 - cos to its '
                            'dense features (bilinearly resized to the patch grid)'),
                      augmentation='h-flip, shift <= 8 px (reflect pad), brightness '
                                   'x[0.85, 1.15]',
                      hard_negatives=('one object recoloured or reshaped per text'
                                      if teacher is None else None),
                      distilled_from=(None if teacher is None else dict(
                          source=Path(args.distill_from).name,
                          sha256=hashlib.sha256(
                              Path(args.distill_from).read_bytes()).hexdigest())),
                      final_train_loss=round(fit['final_loss'], 4),
                      locked_text_tower=(None if not args.lock_text_from else dict(
                          source=Path(args.lock_text_from).name,
                          sha256=hashlib.sha256(
                              Path(args.lock_text_from).read_bytes()).hexdigest())),
                      logit_scale=round(shipped.logit_scale.exp().item(), 2)),
        val_metrics={k: round(v, 2) for k, v in metrics.items()},
        wall_time_s=dict(data=round(data_time, 1), train=round(train_time, 1),
                         total=round(time.time() - wall_start, 1)),
        machine=dict(platform=platform.platform(), processor=platform.processor(),
                     python=platform.python_version(), torch=torch.__version__,
                     open_clip=open_clip.__version__, threads=args.threads,
                     cpu_count=os.cpu_count()),
        command='python tools/demo/train_tiny_clip.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv),
    )
    write_json_atomic(card, out.with_suffix('.json'), indent=2)
    _readable_by_all(out.with_suffix('.json'))
    print(f'saved {out} ({out.stat().st_size / 2**20:.1f} MiB) and its card '
          f'{out.with_suffix(".json")} in {time.time() - wall_start:.0f}s', flush=True)


if __name__ == '__main__':
    main()
