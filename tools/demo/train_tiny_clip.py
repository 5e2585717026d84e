"""Pretrain the tiny demo CLIP (``mlr-demo-rn``) on the synthetic demo world, on CPU.

    python tools/demo/train_tiny_clip.py            # generates data/demo_world if missing

Contrastive training (symmetric InfoNCE with open_clip's learnable logit_scale, AdamW,
warmup + cosine) on the train split's image-caption pairs: each step pairs every image
with one of its 5 captions at random, and augments images with flips, small shifts and
brightness jitter (never hue: colour is half of every class name). Then it evaluates on
the val split (see tiny_clip_eval.py), saves fp16 safetensors atomically, reloads them
with ``open_clip.create_model('mlr-demo-rn', pretrained=<file>)`` and writes a JSON card
with the reloaded model's numbers next to the weights.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlr_plugin.datasets.demo_world import DEMO_CLASSES as ALL_CLASSES  # noqa: E402
from tiny_clip_eval import evaluate_clip, load_demo_split  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default=str(REPO_ROOT / 'data' / 'demo_world'),
                        help='demo world folder (generated with --data-seed if missing)')
    parser.add_argument('--data-seed', type=int, default=0)
    parser.add_argument('--model', default='mlr-demo-rn')
    parser.add_argument('--out', default=str(REPO_ROOT / 'mlr_plugin' / 'demo' /
                                             'mlr-demo-rn.safetensors'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--weight-decay', type=float, default=0.1)
    parser.add_argument('--warmup-epochs', type=float, default=1.0)
    parser.add_argument('--threads', type=int, default=2, help='torch threads (<= 2 here)')
    return parser.parse_args(argv)


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
    """open_clip's rule: no weight decay on gains, biases, norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or 'bn' in name or 'ln' in name or 'logit_scale' in name
        (no_decay if skip else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay),
            dict(params=no_decay, weight_decay=0.0)]


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


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


def hard_negative_caption(caption: str, names: list, rng: np.random.RandomState) -> str:
    """The caption with one object's colour or shape changed to one the image lacks.

    ``names`` are the image's class names ("red circle"). Why: with random in-batch
    negatives, colours alone tell most images apart, so shapes (and which colour goes
    with which shape) get almost no gradient; these NegCLIP-style negatives need both.
    """
    colours = sorted({n.split(' ')[0] for n in ALL_CLASSES})
    shapes = sorted({n.split(' ')[1] for n in ALL_CLASSES})
    target = names[rng.randint(len(names))]
    colour, shape = target.split(' ')
    swap_shape = [f'{colour} {s}' for s in shapes if f'{colour} {s}' not in names]
    swap_colour = [f'{c} {shape}' for c in colours if f'{c} {shape}' not in names]
    options = swap_shape if (rng.rand() < 0.5 and swap_shape) or not swap_colour \
        else swap_colour
    return caption.replace(target, options[rng.randint(len(options))], 1)


def clip_loss(img_feat, txt_feat, neg_feat, logit_scale):
    """Symmetric InfoNCE over B matching (image, text) pairs, plus B hard-negative texts.

    img_feat, txt_feat, neg_feat: (B, D). Image->text is a softmax over all 2B texts;
    text->image over the B images (negative texts have no matching image).
    """
    img_feat = F.normalize(img_feat, dim=-1)
    texts = F.normalize(torch.cat([txt_feat, neg_feat]), dim=-1)
    logits = logit_scale.exp().clamp(max=100) * img_feat @ texts.T  # (B, 2B)
    target = torch.arange(len(logits))
    return 0.5 * (F.cross_entropy(logits, target) +
                  F.cross_entropy(logits[:, :len(target)].T, target))


def train(model, tokenizer, data, args, mean, std):
    rng = np.random.RandomState(args.seed)
    images = torch.from_numpy(np.ascontiguousarray(data['images']))  # uint8 N,S,S,3
    num = len(images)
    per_image = min(len(c) for c in data['captions'])
    tokens = tokenizer([c for caps in data['captions'] for c in caps[:per_image]])
    tokens = tokens.view(num, per_image, -1)
    names = [[data['class_names'][c] for c in np.flatnonzero(row)] for row in data['labels']]
    negatives = [hard_negative_caption(c, names[i], rng)
                 for i, caps in enumerate(data['captions']) for c in caps[:per_image]]
    neg_tokens = tokenizer(negatives).view(num, per_image, -1)
    steps_per_epoch = num // args.batch_size  # drop the last partial batch
    total = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr,
                                  betas=(0.9, 0.98), eps=1e-6)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():  # the shortcut must equal open_clip's own text encoder
        model.eval()
        sample = tokens[:8, 0]
        if not torch.allclose(encode_text_prefix(model, sample), model.encode_text(sample),
                              atol=1e-5):
            raise RuntimeError('encode_text_prefix differs from model.encode_text')
    step, start = 0, time.time()
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(num)
        losses = []
        for b in range(steps_per_epoch):
            idx = torch.from_numpy(order[b * args.batch_size:(b + 1) * args.batch_size])
            pick = torch.from_numpy(rng.randint(0, per_image, size=len(idx)))
            x = images[idx].permute(0, 3, 1, 2).float().div_(255)
            x = (augment(x, rng) - mean_t) / std_t
            for group in optimizer.param_groups:
                group['lr'] = lr_at(step, total, warmup, args.lr)
            loss = clip_loss(model.encode_image(x),
                             encode_text_prefix(model, tokens[idx, pick]),
                             encode_text_prefix(model, neg_tokens[idx, pick]),
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
    return dict(steps=step, final_loss=float(np.mean(losses)))


# ------------------------------------------------------------------------------ saving
def save_fp16_safetensors(model, path: Path) -> str:
    """Write the state dict (floats as fp16) atomically; return its sha256."""
    from safetensors.torch import save_file
    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=dict(format='pt', model='mlr-demo-rn'))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json_atomic(obj, path: Path):
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    with os.fdopen(fd, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    if not 1 <= args.threads <= 2:
        raise ValueError(f'--threads must be 1 or 2 on the shared machine, got {args.threads}')
    wall_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import open_clip

    import mlr_plugin  # noqa: F401  (registers the mlr-demo-rn config)
    from mlr_plugin.datasets.demo_world import generate_demo_world

    data_root = Path(args.data)
    if not (data_root / 'annotations' / 'instances_train.json').is_file():
        print(f'generating the demo world into {data_root} (seed {args.data_seed})', flush=True)
        generate_demo_world(data_root, seed=args.data_seed)
    train_split = load_demo_split(data_root, 'train')
    val_split = load_demo_split(data_root, 'val')
    print(f'train {len(train_split["labels"])} images, val {len(val_split["labels"])} images, '
          f'{len(train_split["class_names"])} classes', flush=True)

    model = open_clip.create_model(args.model, pretrained=None)
    tokenizer = open_clip.get_tokenizer(args.model)
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    fit = train(model, tokenizer, train_split, args, mean, std)
    train_time = time.time() - wall_start

    out = Path(args.out)
    sha256 = save_fp16_safetensors(model, out)
    # Report the numbers of what we ship: the fp16 file, loaded the way users load it.
    shipped = open_clip.create_model(args.model, pretrained=str(out))
    metrics = evaluate_clip(shipped, tokenizer, val_split, mean, std)
    print('val (fp16 weights, reloaded): ' +
          '  '.join(f'{k} {v:.1f}' for k, v in metrics.items()), flush=True)

    card = dict(
        model=args.model, weights=out.name, sha256=sha256,
        size_bytes=out.stat().st_size, dtype='float16',
        load='open_clip.create_model("mlr-demo-rn", pretrained=<this file>) after '
             'import mlr_plugin; or pretrained="mlr_plugin://demo/mlr-demo-rn.safetensors" '
             'in mlr_plugin configs',
        preprocess=dict(image_size=128, mean=list(mean), std=list(std)),
        zero_shot_template='a photo of a {}.',
        data=dict(generator='mlr_plugin.datasets.demo_world.generate_demo_world',
                  seed=args.data_seed, train_images=len(train_split['labels']),
                  val_images=len(val_split['labels']),
                  captions_per_image=len(train_split['captions'][0]),
                  classes=len(train_split['class_names'])),
        training=dict(seed=args.seed, epochs=args.epochs, steps=fit['steps'],
                      batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      optimizer='AdamW(betas=(0.9, 0.98), eps=1e-6)',
                      schedule='linear warmup + cosine', loss='symmetric InfoNCE',
                      augmentation='h-flip, shift <= 8 px (reflect pad), brightness x[0.85, 1.15]',
                      final_train_loss=round(fit['final_loss'], 4),
                      logit_scale=round(shipped.logit_scale.exp().item(), 2)),
        val_metrics={k: round(v, 2) for k, v in metrics.items()},
        wall_time_s=dict(train=round(train_time, 1),
                         total=round(time.time() - wall_start, 1)),
        machine=dict(platform=platform.platform(), processor=platform.processor(),
                     python=platform.python_version(), torch=torch.__version__,
                     open_clip=open_clip.__version__, threads=args.threads,
                     cpu_count=os.cpu_count()),
        command='python tools/demo/train_tiny_clip.py ' + ' '.join(sys.argv[1:]),
    )
    write_json_atomic(card, out.with_suffix('.json'))
    print(f'saved {out} ({out.stat().st_size / 2**20:.1f} MiB) and its card '
          f'{out.with_suffix(".json")} in {time.time() - wall_start:.0f}s', flush=True)


if __name__ == '__main__':
    main()
