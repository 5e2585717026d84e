"""Learning, not only shapes: MKT stage 1 on the demo world with the shipped ViT demo CLIP.

The same 15 seen / 5 held-out protocol as configs/demo/zeroshot_dualcoop.py and
configs/demo/mkt_zsl.py: the student's last 2 blocks, ln_post and proj train on the seen
classes only (ranking loss + L1 distillation, through ``MKTClassifier.loss``), and are
then scored on the 5 held-out classes, whose names it never saw.
"""
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

import mlr_plugin
from demo_helpers import build_mkt_model, frozen_vit_prefix, student_tail_features
from test_demo_world import _load_tool
from mlr_plugin.datasets.demo_world import DEMO_SEEN, DEMO_UNSEEN
from mlr_plugin.evaluation import mean_average_precision
from mlr_plugin.models.clip.pretrained import resolve_package_path

VIT_WEIGHTS = Path(mlr_plugin.__file__).parent / 'demo' / 'mlr-demo-vit.safetensors'


def test_shipped_vit_weights_card_and_package_path():
    """fp16 weights, a card whose sha256 and architecture match, a geometry where MKT's
    "last 2 blocks" is a strict tail (6 blocks, 8 x 8 patches at 128 px), and the
    checkpoint-safe ``mlr_plugin://`` path the demo configs use resolves to the file."""
    from safetensors.torch import load_file
    assert VIT_WEIGHTS.is_file(), (
        f'{VIT_WEIGHTS} is missing: run python tools/demo/train_tiny_clip.py --model '
        'mlr-demo-vit --epochs 18 --warmup-epochs 1 --distill-from '
        'mlr_plugin/demo/mlr-demo-rn.safetensors')
    state = load_file(str(VIT_WEIGHTS))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    card = json.loads(VIT_WEIGHTS.with_suffix('.json').read_text())
    assert card['sha256'] == hashlib.sha256(VIT_WEIGHTS.read_bytes()).hexdigest()
    assert card['model'] == 'mlr-demo-vit'
    blocks = {k.split('.')[3] for k in state if k.startswith('visual.transformer.resblocks.')}
    assert len(blocks) == 6
    assert state['visual.positional_embedding'].shape[0] == 1 + 8 * 8
    assert Path(resolve_package_path('mlr_plugin://demo/mlr-demo-vit.safetensors')) == \
        VIT_WEIGHTS


@pytest.fixture(scope='module')
def world(demo_images):
    return demo_images


def mkt_scores(model, feats):
    with torch.no_grad():
        return model.head.predict_scores(model.head(feats, model.encode_classes()))


def clip_zero_shot_scores(model, feats, classes):
    """CLIP's standard zero-shot classifier: cos(image embedding, "a photo of a {}.")."""
    with torch.no_grad():
        text = model.backbone.encode_text([f'a photo of a {c}.' for c in classes]).float()
    return F.normalize(feats['global_feat'], dim=-1) @ F.normalize(text, dim=-1).T


def train_stage1(model, cache, gt, steps, batch, lr=1e-3):
    """AdamW (wd 0.05, layer-wise lr decay 0.65) with a 10% linear warm-up then cosine to
    0, per step, through the classifier's own ``loss`` (ranking + distillation) on cached
    frozen-prefix tokens, as configs/demo/mkt_zsl.py trains (minus the flips, and with
    weight decay on every tensor)."""
    groups = {}  # MKT's layer-wise lr decay (0.65), as the config's optimizer applies it
    for name, p in model.named_parameters():
        if p.requires_grad:
            layer, max_id = model.get_layer_depth(name)
            groups.setdefault(layer, []).append(p)
    optim = torch.optim.AdamW(
        [dict(params=ps, lr=lr * 0.65 ** (max_id - layer - 1)) for layer, ps in groups.items()],
        lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / warmup if s < warmup else
        0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))))
    # the classifier's loss reads features through extract_feat: feed it the tail's
    model.extract_feat = lambda idx: student_tail_features(
        model, cache['prefix'][idx], cache['teacher_global_feat'][idx])
    gen = torch.Generator().manual_seed(0)
    model.train()
    try:
        for _ in range(steps):
            idx = torch.randperm(len(gt), generator=gen)[:batch]
            losses = model.loss(idx, [DataSample().set_gt_score(r) for r in gt[idx]])
            optim.zero_grad()
            sum(losses.values()).backward()
            optim.step()
            sched.step()
    finally:
        del model.extract_feat
    model.eval()
    return losses


def train_ranking_loss(model, cache, gt, num=500):
    """The classifier's ranking loss on the first ``num`` training images (no update)."""
    idx = torch.arange(min(num, len(gt)))
    with torch.no_grad():
        feats = student_tail_features(model, cache['prefix'][idx],
                                      cache['teacher_global_feat'][idx])
        return model.head.loss(feats, model.encode_classes(),
                               [DataSample().set_gt_score(r) for r in gt[idx]])[
                                   'loss_rank'].item()


def test_mkt_stage1_learns_and_beats_clip_zero_shot_on_held_out_classes_in_gzsl(world):
    """Stage 1 on the 15 seen classes (STEPS AdamW steps of batch BATCH, lr 1e-3), then:

    - the training ranking loss falls by >= RANK_FLOOR and the seen classes' test mAP
      rises by >= SEEN_FLOOR;
    - GZSL (all 20 names scored together, as MKT's reference GZSL test): the 5 held-out
      classes, whose names training never used, are ranked better than by the ViT demo
      CLIP's own zero-shot classifier ("a photo of a {}." on the image embedding) by
      >= GZSL_MARGIN mAP (MKT's local stream, scoring the top patches, gives most of
      it: the untrained two-stream model is there already) and stage 1 keeps it;
    - ZSL (the 5 held-out names alone, each stream normalised over those 5): reported,
      and within ZSL_SLACK of CLIP's zero-shot. With only 5 names the per-image
      normalisation leaves an image without any held-out object a unit score vector all
      the same, which costs MKT's ZSL mAP here (measured numbers below).
    """
    train, test = world['train'], world['test']
    classes = list(train['classes'])
    seen = [classes.index(c) for c in DEMO_SEEN]
    unseen = [classes.index(c) for c in DEMO_UNSEEN]
    target, target_seen = test['labels'][:, unseen], test['labels'][:, seen]

    model = build_mkt_model(DEMO_SEEN)
    train_cache = frozen_vit_prefix(model, train['images'])
    test_cache = frozen_vit_prefix(model, test['images'])
    # the original CLIP's image embedding: the untrained student's = the teacher's
    assert torch.allclose(test_cache['global_feat'], test_cache['teacher_global_feat'],
                          atol=1e-5)
    seen_before = mean_average_precision(mkt_scores(model, test_cache), target_seen)
    rank_before = train_ranking_loss(model, train_cache, train['labels'][:, seen])
    model.set_class_names(DEMO_UNSEEN)
    clip_zs = mean_average_precision(
        clip_zero_shot_scores(model, test_cache, DEMO_UNSEEN), target)
    model.set_class_names(classes)
    gzsl_before = mean_average_precision(mkt_scores(model, test_cache)[:, unseen], target)

    model.set_class_names(DEMO_SEEN)
    losses = train_stage1(model, train_cache, train['labels'][:, seen], STEPS, BATCH)
    with torch.no_grad():
        feats = student_tail_features(model, test_cache['prefix'],
                                      test_cache['teacher_global_feat'])
        # the cached-prefix shortcut is the classifier's own forward, trained weights too
        x = model.data_preprocessor(dict(inputs=test['images'][:8]), False)['inputs']
        full = model.extract_feat(x)
    for key in ('dense', 'global_feat'):
        assert torch.allclose(feats[key][:8], full[key], atol=1e-4)
    seen_after = mean_average_precision(mkt_scores(model, feats), target_seen)
    rank_after = train_ranking_loss(model, train_cache, train['labels'][:, seen])
    model.set_class_names(classes)  # GZSL: all 20 names, held-out ones never trained on
    gzsl_after = mean_average_precision(mkt_scores(model, feats)[:, unseen], target)
    model.set_class_names(DEMO_UNSEEN)  # ZSL: the held-out names alone
    zsl_after = mean_average_precision(mkt_scores(model, feats), target)
    print(f'train ranking loss {rank_before:.4f} -> {rank_after:.4f}; '
          f'seen 15: {seen_before:.1f} -> {seen_after:.1f}; held-out 5: CLIP zero-shot '
          f'{clip_zs:.1f}, MKT GZSL {gzsl_before:.1f} -> {gzsl_after:.1f}, MKT ZSL '
          f'{zsl_after:.1f}; last losses ' +
          ', '.join(f'{k} {v.item():.3f}' for k, v in losses.items()))
    assert rank_after < rank_before - RANK_FLOOR
    assert seen_after > seen_before + SEEN_FLOOR
    assert gzsl_after > clip_zs + GZSL_MARGIN
    assert gzsl_after > gzsl_before - GZSL_KEEP
    assert zsl_after > clip_zs - ZSL_SLACK


STEPS, BATCH = 150, 32
# measured on this world (seed 7, 2000 train images), torch 2.14 CPU:
RANK_FLOOR = 0.05  # ranking loss 0.688 -> 0.593
SEEN_FLOOR = 0.7  # seen mAP 53.5 -> 54.7
GZSL_MARGIN = 1.0  # held-out in GZSL 62.5 (untrained 62.5) vs CLIP zero-shot 60.5
GZSL_KEEP = 1.0  # stage 1 must not lose the held-out ranking it started from
ZSL_SLACK = 8.0  # ZSL 54.0 vs CLIP 60.5 here (the demo table has the demo world's)


def test_lock_text_tower_copies_and_freezes_only_the_text_side():
    """train_tiny_clip --lock-text-from (implied by --distill-from, how mlr-demo-vit was
    trained): the text tower equals the source's, is frozen and left out of the
    optimizer; the image tower and the logit scale still train; a text tower of another
    shape is a one-line error."""
    import open_clip
    from safetensors.torch import load_file
    train = _load_tool('train_tiny_clip')
    rn = Path(mlr_plugin.__file__).parent / 'demo' / 'mlr-demo-rn.safetensors'
    model = open_clip.create_model('mlr-demo-vit', pretrained=None)
    locked = train.lock_text_tower(model, rn)
    source, own = load_file(str(rn)), model.state_dict()
    assert 'token_embedding.weight' in locked and 'text_projection' in locked
    assert not any(k.startswith('visual.') or k == 'logit_scale' for k in locked)
    for k in locked:
        assert torch.equal(own[k], source[k].to(own[k].dtype)), k
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters()
                         if n.startswith('visual.') or n == 'logit_scale'}
    in_optimizer = {id(p) for g in train.param_groups(model, 0.1) for p in g['params']}
    assert in_optimizer == {id(p) for n, p in model.named_parameters() if n in trainable}
    with pytest.raises(ValueError, match='text tower does not fit'):
        train.lock_text_tower(open_clip.create_model('mlr-tiny-vit', pretrained=None), rn)
