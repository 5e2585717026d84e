"""MKT (docs/methods.md section 5): two-stream scores, ranking and distillation losses,
template prompts, what trains in each stage, layer-wise lr decay and the schedules, and
the two-stage checkpoints. Tiny random ViT (mlr-tiny-vit: 2 blocks, 64 px, 16 patches)."""
import copy
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mlr_plugin.models.checkpoint import read_record
from mlr_plugin.models.heads.mkt import two_stream_scores
from mlr_plugin.models.losses.ranking import pairwise_ranking_per_image

REPO = Path(__file__).parent.parent
NAMES = ['cat', 'traffic light', 'bus', 'potted plant']
GT = torch.tensor([[1., 0., -1., 0.], [0., 1., 0., 0.], [-1., 0., 0., 0.], [0., 0., 1., 1.]])
TAIL = ('backbone.clip.visual.transformer.resblocks.1.', 'backbone.clip.visual.ln_post.',
        'backbone.clip.visual.proj')


def mkt_model(stage, blocks=1, topk_patches=4):
    """Stage 1 (tail of ``blocks`` blocks trains, KD on) or stage 2 (contexts train)."""
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MKTClassifier',
        backbone=dict(type='OpenCLIPBackbone', model_name='mlr-tiny-vit', pretrained=None,
                      image_size=64, trainable_vision_blocks=blocks, with_teacher=True),
        prompt_learner=dict(type='TemplateContextPrompts', learnable=stage == 2),
        head=dict(type='MKTTwoStreamHead', topk_patches=topk_patches),
        train_image_tower=stage == 1,
        distill_loss=dict(type='EmbeddingL1Loss') if stage == 1 else None,
        class_names=NAMES))


@pytest.fixture(scope='module')
def stage1():
    return mkt_model(1)


@pytest.fixture(scope='module')
def stage2():
    return mkt_model(2)


def images(num=4, seed=1):
    return torch.randn(num, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def samples(gt=GT):
    return [DataSample().set_gt_score(row) for row in gt]


def adamw_step(model, lr=1e-2):
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    losses = model.loss(images(), samples())
    sum(losses.values()).backward()
    optimizer.step()
    optimizer.zero_grad()
    return losses


def snapshot(model):
    return {n: t.detach().clone() for n, t in model.state_dict(keep_vars=True).items()
            if torch.is_tensor(t) and n != '_extra_state'} | {
        n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, model):
    now = dict(model.named_parameters())
    return {n for n, p in now.items() if not torch.equal(p, before[n])}


def pred_scores(model, seed=5):
    model.eval()
    return torch.stack([s.pred_score for s in model.predict(images(2, seed=seed))])


# ----------------------------------------------------------------------- formulas
def test_two_stream_scores_match_a_plain_loop():
    gen = torch.Generator().manual_seed(0)
    dense, glob, text = (torch.randn(2, 9, 5, generator=gen), torch.randn(2, 5, generator=gen),
                         torch.randn(3, 5, generator=gen))
    k = 4
    logit, local, global_, attention = two_stream_scores(dense, glob, text, topk=k)
    for b in range(2):
        raw_local, raw_global = [], []
        for c in range(3):
            patch = sorted((float(dense[b, j] @ text[c]) for j in range(9)), reverse=True)
            raw_local.append(sum(patch[:k]) / k)
            raw_global.append(float(glob[b] @ text[c]))
        norm_l = math.sqrt(sum(v * v for v in raw_local))
        norm_g = math.sqrt(sum(v * v for v in raw_global))
        for c in range(3):
            expect = (raw_local[c] / norm_l + raw_global[c] / norm_g) / 2
            assert logit[b, c].item() == pytest.approx(expect, abs=1e-6)
            assert local[b, c].item() == pytest.approx(raw_local[c] / norm_l, abs=1e-6)
            assert global_[b, c].item() == pytest.approx(raw_global[c] / norm_g, abs=1e-6)
            # the attention is the local mean's weights: 1/k on the top-k patches
            weights = attention[b, c]
            assert sorted(weights.tolist(), reverse=True)[:k + 1] == [1 / k] * k + [0.0]
            pooled = float(sum(weights[j] * (dense[b, j] @ text[c]) for j in range(9)))
            assert pooled == pytest.approx(raw_local[c], abs=1e-6)
    with pytest.raises(ValueError, match='topk=10 patches'):
        two_stream_scores(dense, glob, text, topk=10)


def test_zsl_scores_are_fused_over_the_unseen_classes_only(stage1):
    """MKT's reference test normalises each stream over the 81 unseen labels for ZSL and
    over all 1006 for GZSL. One test run: the head's ``pred_streams`` let the metric
    re-fuse the subset, which must equal the model scoring the subset's names alone."""
    from sklearn.metrics import average_precision_score

    from mlr_plugin.evaluation import MultiLabelMAP
    model, unseen = stage1, ['traffic light', 'potted plant']
    model.eval()
    x = images(6, seed=3)
    gt = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1],
                       [0, 1, 1, 0], [1, 0, 0, 1]], dtype=torch.float32)
    with torch.no_grad():
        full = model.predict(x, samples(gt))
        try:
            model.set_class_names(unseen)
            alone = torch.stack([s.pred_score for s in model.predict(x)])
        finally:
            model.set_class_names(NAMES)
    columns = [NAMES.index(n) for n in unseen]
    streams = torch.stack([s.pred_streams for s in full])  # (6, 2, 4) raw local, global
    for b in range(6):  # plain re-computation of the fusion over the subset
        for j, c in enumerate(columns):
            fused = sum(float(streams[b, k, c]) / math.sqrt(
                sum(float(streams[b, k, i]) ** 2 for i in columns)) for k in range(2)) / 2
            assert alone[b, j].item() == pytest.approx(fused, abs=1e-6)
    metric = MultiLabelMAP(class_subsets=dict(zsl=unseen))
    metric.dataset_meta = dict(classes=NAMES)
    metric.process(None, [s.to_dict() for s in full])
    result = metric.evaluate(6)
    expect = sum(average_precision_score(gt[:, c].numpy(), alone[:, j].numpy())
                 for j, c in enumerate(columns)) / 2 * 100
    assert result['zsl/mAP'] == pytest.approx(expect, abs=1e-4)
    scores = torch.stack([s.pred_score for s in full])
    gzsl = sum(average_precision_score(gt[:, c].numpy(), scores[:, c].numpy())
               for c in range(4)) / 4 * 100
    assert result['mAP'] == pytest.approx(gzsl, abs=1e-4)
    # the GZSL columns would be another ranking: the re-fusion is not a no-op here
    assert not torch.allclose(alone, scores[:, columns])


def test_ranking_loss_hand_worked_case():
    logit = torch.tensor([[0.5, 0.2, -0.8, 3.0],   # pos 0; neg 1, 2; 3 unknown (high)
                          [3.0, 2.5, 0.0, 1.0],    # pos 0, 1; neg 2, 3: no violating pair
                          [0.9, 0.1, 0.2, 0.3],    # no known positive
                          [0.0, 0.5, 0.2, 0.1]],   # pos 0, 2; neg 1, 3
                         requires_grad=True)
    target = torch.tensor([[1., 0., 0., -1.], [1., 1., 0., 0.], [0., 0., -1., 0.],
                           [1., 0., 1., 0.]])
    # image 0: only (0, 1) violates: 1 + 0.2 - 0.5 = 0.7 -> 0.7 / 1 (the unknown class
    # would add 1 + 3.0 - 0.5 as a negative); image 3: 1.5 + 1.1 + 1.3 + 0.9 over 4 pairs
    per_image = pairwise_ranking_per_image(logit, target)
    assert per_image.tolist() == pytest.approx([0.7, 0.0, 0.0, 1.2], abs=1e-6)
    loss = MODELS.build(dict(type='PairwiseRankingLoss'))(logit, target)
    assert loss.item() == pytest.approx((0.7 + 0.0 + 1.2) / 3, abs=1e-6)  # image 2 skipped
    keep_all = MODELS.build(dict(type='PairwiseRankingLoss', skip_images_without_positive=False))
    assert keep_all(logit, target).item() == pytest.approx(1.9 / 4, abs=1e-6)
    loss.backward()
    grad = logit.grad
    assert grad[0].tolist() == pytest.approx([-1 / 3, 1 / 3, 0, 0], abs=1e-6)
    assert grad[1].abs().sum() == 0 and grad[2].abs().sum() == 0  # no violation / skipped
    # image 3: each positive is in 2 violating pairs, each negative in 2, over 4 pairs
    assert grad[3].tolist() == pytest.approx([-0.5 / 3, 0.5 / 3, -0.5 / 3, 0.5 / 3], abs=1e-6)
    # a margin-exact pair (1 + s_n - s_p == 0) is not a violation
    assert pairwise_ranking_per_image(torch.tensor([[1.0, 0.0]]),
                                      torch.tensor([[1., 0.]])).item() == 0.0


def test_distillation_is_mean_abs_difference_over_kept_images():
    gen = torch.Generator().manual_seed(3)
    student = torch.randn(3, 4, generator=gen).requires_grad_()
    teacher = torch.randn(3, 4, generator=gen).requires_grad_()
    s, t = student.tolist(), teacher.tolist()
    kd = MODELS.build(dict(type='EmbeddingL1Loss'))
    expect = sum(abs(s[b][d] - t[b][d]) for b in range(3) for d in range(4)) / 12
    assert kd(student, teacher).item() == pytest.approx(expect, abs=1e-6)
    keep = torch.tensor([True, False, True])
    expect = sum(abs(s[b][d] - t[b][d]) for b in (0, 2) for d in range(4)) / 8
    loss = kd(student, teacher, keep)
    assert loss.item() == pytest.approx(expect, abs=1e-6)
    loss.backward()
    assert teacher.grad is None  # the teacher target is detached
    assert student.grad[1].abs().sum() == 0


# ----------------------------------------------------------------------- prompts
def test_fixed_template_features_are_clip_features_of_the_sentence(stage1):
    backbone = stage1.backbone
    feats = stage1.prompt_learner(NAMES, backbone)['pos']
    sentences = backbone.encode_text([f'There is a {n} in the scene' for n in NAMES])
    assert torch.allclose(feats, sentences.float(), atol=1e-5)
    # the learned positions: SOS, "there is a", "in the scene", EOT; never a name token
    tokens, _, positions = stage1.prompt_learner._layout(tuple(NAMES), backbone)
    eot = backbone.eot_indices(tokens)
    for row, name in enumerate(NAMES):
        name_len = len(backbone.tokenize([name])[0].nonzero()) - 2
        expect = [0, 1, 2, 3] + [4 + name_len + i for i in range(3)] + [int(eot[row])]
        assert positions[row].tolist() == expect


def test_stage1_encodes_label_embeddings_once(stage1):
    model = copy.deepcopy(stage1)
    calls = []
    original = model.backbone.encode_prompt_embeddings
    model.backbone.encode_prompt_embeddings = lambda *a, **k: calls.append(1) or original(
        *a, **k)
    model.train()
    for _ in range(2):
        model.loss(images(), samples())
    model.predict(images(2))
    assert len(calls) == 1


# ----------------------------------------------------------------------- what trains
def test_stage1_step_trains_only_the_student_tail_and_never_the_teacher(stage1):
    model = copy.deepcopy(stage1)
    before = snapshot(model)
    teacher = {n: t.clone() for n, t in model.backbone.teacher_tail.state_dict().items()}
    losses = adamw_step(model)
    assert set(losses) == {'loss_rank', 'loss_kd'}
    expected = {n for n, _ in model.named_parameters() if n.startswith(TAIL)}
    assert expected and changed(before, model) == expected
    assert all(p.grad is None and not p.requires_grad
               for p in model.backbone.teacher_tail.parameters())
    for name, value in model.backbone.teacher_tail.state_dict().items():
        assert torch.equal(value, teacher[name])
    # the teacher is CLIP's original tail: the student moved away from it
    assert not torch.equal(model.backbone.clip.visual.proj, model.backbone.teacher_tail.proj)


def test_stage2_step_trains_only_the_template_contexts(stage2):
    model = copy.deepcopy(stage2)
    before = snapshot(model)
    losses = adamw_step(model)
    assert set(losses) == {'loss_rank'}
    assert changed(before, model) == {'prompt_learner.ctx'}
    # the class-name token embeddings are CLIP's frozen table
    assert not model.backbone.clip.token_embedding.weight.requires_grad


def test_forward_returns_the_local_stream_attention(stage1):
    out = stage1(images(2), mode='tensor')
    assert out['attention'].shape == (2, len(NAMES), 16)
    assert torch.allclose(out['attention'].sum(-1), torch.ones(2, len(NAMES)))


# ----------------------------------------------------------------------- optimisation
def test_layer_wise_lr_decay_follows_mkt_rule():
    model = mkt_model(1, blocks=2)  # both tiny blocks train
    cfg = Config.fromfile(str(REPO / 'configs/_base_/schedules/mkt_adamw_stage1_20e.py'))
    init_default_scope('mmpretrain')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(groups) == set(trainable)
    prefix = 'backbone.clip.visual.transformer.resblocks.'
    for name, param in trainable.items():
        if name.startswith(prefix):
            block = int(name[len(prefix):].split('.')[0])
            scale = 0.65 ** (2 - block)  # block i of N: 0.65 ** (N - i)
        else:
            scale = 1.0  # ln_post, proj
        assert groups[name]['lr'] == pytest.approx(1e-3 * scale, rel=1e-12), name
        assert groups[name]['weight_decay'] == (0.0 if param.ndim == 1 else 0.05), name


def _official_lr(t, lr, min_lr, warmup, epochs):
    """MKT's per-iteration schedule at fractional epoch t."""
    if t < warmup:
        return lr * t / warmup
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * (t - warmup) /
                                                       (epochs - warmup)))


@pytest.mark.parametrize('stage', [1, 2])
def test_schedules_match_the_reference_per_iteration(stage):
    file, epochs, warmup, min_lr = (('mkt_adamw_stage1_20e.py', 20, 2, 1e-6) if stage == 1
                                    else ('mkt_adamw_stage2_4e.py', 4, 0, 1e-8))
    cfg = Config.fromfile(str(REPO / 'configs/_base_/schedules' / file))
    init_default_scope('mmpretrain')
    model = mkt_model(stage, blocks=2)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    epoch_length = 3
    schedulers = [PARAM_SCHEDULERS.build(dict(s), default_args=dict(
        optimizer=wrapper, epoch_length=epoch_length)) for s in cfg.param_scheduler]
    scales = [g['initial_lr'] / 1e-3 for g in wrapper.optimizer.param_groups]
    for it in range(epochs * epoch_length):
        expect = _official_lr(it / epoch_length, 1e-3, min_lr, warmup, epochs)
        for group, scale in zip(wrapper.optimizer.param_groups, scales):
            assert group['lr'] == pytest.approx(expect * scale, rel=1e-6, abs=1e-10), it
        for scheduler in schedulers:
            scheduler.step()


# ----------------------------------------------------------------------- checkpoints
def test_stage2_from_stage1_checkpoint_and_bit_identical_reload(tmp_path, stage1):
    model1 = copy.deepcopy(stage1)
    adamw_step(model1)
    tuned = {n: p.detach().clone() for n, p in model1.named_parameters() if p.requires_grad}
    save_checkpoint(dict(state_dict=model1.state_dict()), str(tmp_path / 'stage1.pth'))

    model2 = mkt_model(2)
    load_checkpoint(model2, str(tmp_path / 'stage1.pth'), map_location='cpu')  # load_from
    assert model2.last_load_report['initialised'] == ['prompt_learner.ctx']
    params2 = dict(model2.named_parameters())
    for name, value in tuned.items():
        assert torch.equal(params2[name], value) and not params2[name].requires_grad
    adamw_step(model2)
    saved = model2.state_dict()
    assert set(read_record(saved['_extra_state'])['trained']) == set(tuned) | {
        'prompt_learner.ctx'}
    save_checkpoint(dict(state_dict=saved), str(tmp_path / 'stage2.pth'))

    fresh = mkt_model(2)
    assert not torch.equal(pred_scores(fresh), pred_scores(model2))
    load_checkpoint(fresh, str(tmp_path / 'stage2.pth'), map_location='cpu', strict=True)
    assert fresh.last_load_report['initialised'] == []
    for seed in (5, 9):
        assert torch.equal(pred_scores(fresh, seed), pred_scores(model2, seed))
    for name, value in model2.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name


def test_distillation_needs_a_trainable_tower():
    with pytest.raises(ValueError, match='distill_loss is for stage 1'):
        MODELS.build(dict(
            type='MKTClassifier',
            backbone=dict(type='OpenCLIPBackbone', model_name='mlr-tiny-vit', image_size=64,
                          trainable_vision_blocks=1, with_teacher=True),
            prompt_learner=dict(type='TemplateContextPrompts'),
            head=dict(type='MKTTwoStreamHead', topk_patches=4),
            train_image_tower=False))


# ----------------------------------------------------------------------- inference
def test_inferencer_scores_any_names_with_an_mkt_model(tmp_path, stage2):
    import cv2
    import numpy as np

    from mlr_plugin.apis import MultiLabelInferencer
    model = copy.deepcopy(stage2)
    adamw_step(model)
    rng = np.random.default_rng(0)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    inferencer = MultiLabelInferencer(model, device='cpu')
    names = ['lighthouse', 'harbor', 'red bicycle', 'sunset', 'cat']
    result = inferencer(path, class_names=names, return_attention=True)[0]
    # the same scores as the model's own prediction for these names
    model.set_class_names(names)
    image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    data = model.data_preprocessor(dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)]),
                                   False)
    expect = model.predict(data['inputs'])[0].pred_score
    assert [result['scores'][n] for n in names] == pytest.approx(expect.tolist(), abs=1e-6)
    # rank-only scores: the labels are the head's top 3, not a 0.5 threshold
    ranked = sorted(names, key=lambda n: -result['scores'][n])
    assert result['labels'] == ranked[:3]
    assert result['attention'].shape == (len(names), 4, 4)
