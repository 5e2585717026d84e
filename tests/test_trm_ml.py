"""TRM-ML, equation by equation (docs/methods.md, TRM-ML section): each against a plain
loop over classes / locations or a hand-worked case; the prototype bank's FIFO,
thresholds and agreement rule; checkpoints with and without the training-only state."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mlr_plugin.models import checkpoint
from mlr_plugin.models.classifiers.trm_ml import MultimodalPrototypeBank
from mlr_plugin.models.heads.trm_ml import (CategoryAwareRegionDecoder, TRMMLHead,
                                            dual_matching_logit, region_features)
from mlr_plugin.models.losses import (MultimodalContrastiveLoss, anchored_info_nce,
                                      kl_distillation)

NAMES = [f'c{i}' for i in range(5)]
GT = torch.tensor([[1., 0., -1., 0., 1.],
                   [0., 1., -1., -1., 0.],
                   [-1., 0., 1., 0., -1.],
                   [0., 0., 0., 1., -1.]])


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                                   dtype=torch.float64), dim=-1)


def tiny_model(**overrides):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    cfg = dict(
        type='TRMMLClassifier',
        backbone=dict(type='OpenCLIPBackbone', model_name='mlr-tiny-rn', pretrained=None,
                      image_size=64),
        prompt_learner=dict(type='LearnablePrompts', n_ctx=4, class_specific=True,
                            num_classes=len(NAMES)),
        head=dict(type='TRMMLHead', num_classes=len(NAMES), embed_dim=32),
        prototype_bank=dict(type='MultimodalPrototypeBank', num_classes=len(NAMES),
                            embed_dim=32, queue_length=3, topk=2),
        contrastive_loss=dict(type='MultimodalContrastiveLoss', embed_dim=32),
        class_names=NAMES)
    cfg.update(overrides)
    return MODELS.build(cfg)


def _samples(gt, first_idx=0):
    return [DataSample(metainfo=dict(sample_idx=first_idx + i)).set_gt_score(row)
            for i, row in enumerate(gt)]


def _images(n=len(GT), seed=3):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------- eq. 2-5
def test_decoder_energies_regions_and_query_features_match_a_loop():
    torch.manual_seed(0)
    dec = CategoryAwareRegionDecoder(num_classes=3, embed_dim=4).double()
    tokens = _unit(2, 5, 4)
    region, query_feat = dec(tokens)
    W = {n: (getattr(dec, n).weight, getattr(dec, n).bias)
         for n in ('q_proj', 'k_proj', 'v_proj', 'out_proj')}

    def lin(name, x):
        return W[name][0] @ x + W[name][1]

    for b in range(2):
        for c in range(3):
            q = lin('q_proj', dec.queries[c])
            energies = torch.stack([q @ lin('k_proj', tokens[b, j]) / 2.0  # sqrt(D) = 2
                                    for j in range(5)])
            for j in range(5):  # eq. 2: R = sigmoid(e)
                assert torch.isclose(region[b, c, j], 1 / (1 + torch.exp(-energies[j])))
            weights = torch.exp(energies) / torch.exp(energies).sum()
            attended = lin('out_proj', sum(weights[j] * lin('v_proj', tokens[b, j])
                                           for j in range(5)))
            expected = attended + dec.mlp(attended)  # eq. 3: F^q = A + MLP(A)
            torch.testing.assert_close(query_feat[b, c], expected)


def test_clip_decoder_init_starts_from_clip_text_region_matching():
    """decoder_init='clip' [ours]: e_cj = s (cos(g_c, f_j) - m) for unit text queries,
    R = sigmoid(e), and F^q = the softmax(e)-pooled raw tokens (a plain loop)."""
    torch.manual_seed(0)
    scale, offset = 7.0, 0.3
    dec = CategoryAwareRegionDecoder(num_classes=3, embed_dim=4, query_init='text',
                                     decoder_init='clip', init_energy_scale=scale,
                                     init_energy_offset=offset).double()
    text = F.normalize(torch.randn(3, 4, dtype=torch.float64), dim=-1)
    dec.init_queries(text)
    tokens = 3.0 * torch.randn(2, 5, 4, dtype=torch.float64)  # not unit: keys normalise
    with torch.no_grad():
        region, query_feat = dec(tokens)
    for b in range(2):
        for c in range(3):
            energies = []
            for j in range(5):
                t = tokens[b, j]
                cos = float(text[c] @ t) / math.sqrt(float(t @ t))
                energies.append(scale * (cos - offset))
                assert math.isclose(float(region[b, c, j]),
                                    1 / (1 + math.exp(-energies[-1])), rel_tol=1e-9)
            weights = [math.exp(e) for e in energies]
            pooled = sum(w * tokens[b, j] for j, w in enumerate(weights)) / sum(weights)
            torch.testing.assert_close(query_feat[b, c], pooled)
    with pytest.raises(ValueError, match="decoder_init='clip' needs query_init='text'"):
        CategoryAwareRegionDecoder(3, 4, query_init='random', decoder_init='clip')
    head = TRMMLHead(num_classes=3, embed_dim=4, decoder_init='clip')
    assert head.query_init == 'text'


def test_region_features_and_dual_matching_score_match_a_loop():
    region = torch.rand(2, 3, 5, dtype=torch.float64)
    tokens = _unit(2, 5, 4)
    feat = region_features(region, tokens)
    text_pos, text_neg = _unit(3, 4, seed=1), _unit(3, 4, seed=2)
    logit = dual_matching_logit(feat, text_pos, text_neg, torch.tensor(7.0))
    for b in range(2):
        for c in range(3):
            f = sum(region[b, c, j] * tokens[b, j] for j in range(5))  # eq. 4
            torch.testing.assert_close(feat[b, c], f)
            cos = [float(f @ t[c] / f.norm()) for t in (text_pos, text_neg)]
            assert math.isclose(float(logit[b, c]), 7.0 * (cos[0] - cos[1]), rel_tol=1e-9)


def test_head_scores_from_the_region_path_and_switches():
    head = TRMMLHead(num_classes=3, embed_dim=4, init_logit_scale=10.0).double()
    feats = dict(dense=_unit(2, 5, 4))
    text = dict(pos=_unit(3, 4, seed=1), neg=_unit(3, 4, seed=2))
    out = head(feats, text)
    region, query = head.decoder(feats['dense'])
    torch.testing.assert_close(out['region_map'], region)
    expected = dual_matching_logit(region_features(region, feats['dense']), text['pos'],
                                   text['neg'], torch.tensor(10.0, dtype=torch.float64))
    torch.testing.assert_close(out['logit'], expected)
    torch.testing.assert_close(head.predict_scores(out), torch.sigmoid(expected))
    gt = torch.tensor([[1., 0., -1.], [0., -1., 1.]])
    losses = head.compute_loss(out, gt)
    assert set(losses) == {'loss_asl_region', 'loss_asl_query', 'loss_kd'}
    torch.testing.assert_close(losses['loss_kd'],
                               0.05 * kl_distillation(out['logit'], out['query_logit']))
    # CARL off: DualCoOp's spatial softmax of the positive prompt is the region map
    base = TRMMLHead(num_classes=3, embed_dim=4, use_carl=False, use_kd=False,
                     baseline_spatial_scale=3.0).double()
    out = base(feats, text)
    sim = torch.einsum('bld,cd->bcl', feats['dense'], text['pos'])
    torch.testing.assert_close(out['region_map'], torch.softmax(3.0 * sim, dim=-1))
    assert set(base.compute_loss(out, gt)) == {'loss_asl_region'}
    with pytest.raises(ValueError, match='use_kd=True needs use_carl=True'):
        TRMMLHead(num_classes=3, embed_dim=4, use_carl=False)
    with pytest.raises(ValueError, match='built for 3 classes'):
        head(feats, dict(pos=text['pos'][:2], neg=text['neg'][:2]))


# ---------------------------------------------------------------------- eq. 6
def test_kd_is_kl_of_class_softmaxes_with_the_teacher_detached():
    teacher = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    student = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = kl_distillation(teacher, student)
    expected = 0.0
    for b in range(3):
        pr = [math.exp(t) for t in teacher[b].tolist()]
        pq = [math.exp(s) for s in student[b].tolist()]
        pr = [p / sum(pr) for p in pr]
        pq = [p / sum(pq) for p in pq]
        expected += sum(r * math.log(r / q) for r, q in zip(pr, pq)) / 3
    assert math.isclose(float(loss.detach()), expected, rel_tol=1e-9)
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    assert float(kl_distillation(student, student)) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------- eq. 7
def test_topk_prototypes_take_the_features_at_the_highest_energies():
    region = torch.tensor([[[0.1, 0.9, 0.5, 0.7]], [[0.8, 0.2, 0.3, 0.1]]])
    tokens = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2)
    protos = MultimodalPrototypeBank.topk_prototypes(
        region, tokens, torch.tensor([0, 1]), torch.tensor([0, 0]), k=2)
    torch.testing.assert_close(protos[0], tokens[0, [1, 3]])
    torch.testing.assert_close(protos[1], tokens[1, [0, 2]])


def test_fifo_queue_order_pointer_and_fill():
    bank = MultimodalPrototypeBank(num_classes=2, embed_dim=1, queue_length=3)
    val = torch.tensor

    def push(values, classes):
        bank.push(val(values, dtype=torch.float32)[:, None], val(classes))

    push([1., 2.], [0, 0])
    assert bank.queue[0, :, 0].tolist() == [1., 2., 0.]
    assert bank.queue_ptr.tolist() == [2, 0] and bank.queue_len.tolist() == [2, 0]
    push([3., 4., 9.], [0, 0, 1])   # 4 overwrites the oldest (1)
    assert bank.queue[0, :, 0].tolist() == [4., 2., 3.]
    assert bank.queue[1, :, 0].tolist() == [9., 0., 0.]
    assert bank.queue_ptr.tolist() == [1, 1] and bank.queue_len.tolist() == [3, 1]
    push([5., 6., 7., 8.], [0, 0, 0, 0])  # longer than the queue: the last 3 stay
    # sequentially: 5 -> slot 1, 6 -> 2, 7 -> 0, 8 -> 1
    assert bank.queue[0, :, 0].tolist() == [7., 8., 6.]
    assert bank.queue_ptr.tolist() == [2, 1] and bank.queue_len.tolist() == [3, 1]
    feats, classes = bank.filled()
    assert feats[:, 0].tolist() == [7., 8., 6., 9.] and classes.tolist() == [0, 0, 0, 1]


# ---------------------------------------------------------------------- eq. 8-12
def test_prototype_similarities_match_a_loop():
    bank = MultimodalPrototypeBank(num_classes=3, embed_dim=4, queue_length=3)
    bank.push(_unit(4, 4, seed=5).float(), torch.tensor([0, 0, 2, 0]))
    bank.push(_unit(2, 4, seed=6).float(), torch.tensor([0, 2]))  # class 0 wraps
    region = torch.randn(2, 3, 4, dtype=torch.float64)
    text = _unit(3, 4, seed=7)
    sims = bank.similarities(region, text)
    for n in range(2):
        for c in range(3):
            f = region[n, c].float() / region[n, c].float().norm()
            slots = [bank.queue[c, j] for j in range(int(bank.queue_len[c]))]
            visual = (sum(float(f @ (v / v.norm())) for v in slots) / len(slots)
                      if slots else 0.0)  # eq. 8 + 10: the mean over the class's queue
            assert math.isclose(float(sims[0, n, c]), visual, abs_tol=1e-6)
            assert math.isclose(float(sims[1, n, c]), float(f.double() @ text[c]),
                                abs_tol=1e-6)
    assert float(sims[0, :, 1].abs().sum()) == 0.0  # empty queue


def test_thresholds_first_set_then_follow_the_ema():
    bank = MultimodalPrototypeBank(num_classes=3, embed_dim=2, queue_length=2,
                                   momentum=0.9)
    bank.push(torch.ones(1, 2), torch.tensor([0]))  # only class 0 has prototypes
    gt = torch.tensor([[1., 0., 1.], [1., -1., 0.], [0., 0., -1.]])
    sims = torch.tensor([[[0.8, 0.1, 0.6], [0.6, 0.9, 0.2], [0.2, 0.3, 0.9]],
                         [[0.5, 0.0, 0.4], [0.3, 0.9, 0.1], [0.1, 0.2, 0.9]]])
    bank.update_thresholds(sims, gt)
    th, seen = bank.thresholds, bank.threshold_seen
    # [source][pos/neg][class]; eq. 9: mean over the known positives / negatives
    assert th[0, 0, 0] == pytest.approx(0.7) and th[0, 1, 0] == pytest.approx(0.2)
    assert not seen[0, :, 1:].any()  # classes 1, 2 have no visual prototypes yet
    assert th[1, 0, 0] == pytest.approx(0.4) and th[1, 1, 0] == pytest.approx(0.1)
    assert not seen[1, 0, 1] and th[1, 1, 1] == pytest.approx(0.1)  # (0.0 + 0.2) / 2
    assert th[1, 0, 2] == pytest.approx(0.4) and th[1, 1, 2] == pytest.approx(0.1)
    bank.update_thresholds(torch.full_like(sims, 1.0), gt)  # eq. 11
    assert th[0, 0, 0] == pytest.approx(0.9 * 0.7 + 0.1 * 1.0)
    assert th[1, 1, 1] == pytest.approx(0.9 * 0.1 + 0.1 * 1.0)
    assert not seen[1, 0, 1]  # still no known positive of class 1


def test_votes_and_agreement_rule():
    bank = MultimodalPrototypeBank(num_classes=4, embed_dim=2, queue_length=2)
    bank.push(torch.ones(3, 2), torch.tensor([0, 1, 2]))  # class 3: empty queue
    bank.thresholds.copy_(torch.tensor([[[0.6] * 4, [0.3] * 4],
                                        [[0.5, 0.5, 0.5, 0.5], [0.7, 0.2, 0.2, 0.2]]]))
    bank.threshold_seen.fill_(True)
    sims = torch.tensor([[[0.9, 0.1, 0.9, 0.9]],      # visual
                         [[0.6, 0.1, 0.1, 0.9]]])     # text
    votes = bank.votes(sims)
    # text, class 0: 0.6 >= 0.5 and 0.6 <= 0.7 (theta+ < theta-): no vote
    assert votes[0].tolist() == [[1, -1, 1, 0]] and votes[1].tolist() == [[0, -1, -1, 1]]
    unknown = torch.full((1, 4), -1.)
    assert bank.agree(votes, unknown).tolist() == [[-1, 0, -1, -1]]   # eq. 12
    assert bank.agree(votes, unknown, ('visual',)).tolist() == [[1, 0, 1, -1]]
    assert bank.agree(votes, unknown, ('text',)).tolist() == [[-1, 0, 0, 1]]
    known = torch.tensor([[0., 1., -1., 0.]])  # known labels are never overwritten
    assert bank.agree(votes, known, ('visual',)).tolist() == [[0, 1, 1, 0]]
    bank.threshold_seen[:, 0] = False  # no positive threshold yet: no positive votes
    assert (bank.votes(sims) == 1).sum() == 0


# ---------------------------------------------------------------------- eq. 13
def test_info_nce_matches_a_loop():
    anchor, samples = _unit(3, 4, seed=1), _unit(7, 4, seed=2)
    cls = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    t = 0.07
    loss = anchored_info_nce(anchor, samples, cls, t)
    per_anchor = []
    for c in range(3):
        pos = [samples[m] for m in range(7) if cls[m] == c]
        neg = [samples[m] for m in range(7) if cls[m] != c]
        terms = []
        for q in pos:
            num = math.exp(float(anchor[c] @ q) / t)
            den = num + sum(math.exp(float(anchor[c] @ n) / t) for n in neg)
            terms.append(-math.log(num / den))
        per_anchor.append(sum(terms) / len(terms))
    assert math.isclose(float(loss), sum(per_anchor) / 3, rel_tol=1e-9)
    # an anchor without positives is left out of the mean
    loss = anchored_info_nce(anchor, samples[:2], cls[:2], t)
    pos_terms = [-math.log(math.exp(float(anchor[0] @ q) / t) /
                           math.exp(float(anchor[0] @ q) / t)) for q in samples[:2]]
    assert math.isclose(float(loss), sum(pos_terms) / 2, abs_tol=1e-12)


def test_contrastive_loss_takes_batch_positives_and_bank_prototypes():
    torch.manual_seed(0)
    loss_fn = MultimodalContrastiveLoss(embed_dim=4, temperature=0.1, loss_weight=0.5)
    text = _unit(3, 4, seed=1).float()
    region = torch.randn(2, 3, 4)
    target = torch.tensor([[1., 0., -1.], [1., 1., 0.]])
    bank_feats, bank_class = torch.randn(2, 4), torch.tensor([2, 0])
    loss = loss_fn(text, region, target, bank_feats, bank_class)
    samples = torch.stack([region[0, 0], region[1, 0], region[1, 1], bank_feats[0],
                           bank_feats[1]])
    expected = anchored_info_nce(loss_fn.project(text), loss_fn.project(samples),
                                 torch.tensor([0, 0, 1, 2, 0]), 0.1)
    torch.testing.assert_close(loss, 0.5 * expected)


# ---------------------------------------------------------------------- classifier step
def test_pseudo_labels_fill_only_unknown_entries():
    model = tiny_model(pseudo_label_sources=('text',))
    bank = model.prototype_bank
    # every text similarity is >= -1 and <= 1: with theta+ = -1 every unknown entry
    # votes positive, with theta- = 1 also negative -> no label; theta- = -2: positive
    bank.thresholds[1, 0] = -1.0
    bank.thresholds[1, 1] = -2.0
    bank.threshold_seen.fill_(True)
    bank.momentum = 0.999999  # keep the thresholds where they are during this step
    model.loss(_images(), _samples(GT))
    target = model.last_pseudo_labels
    known = GT != -1
    assert torch.equal(target[known], GT[known])
    assert (target[~known] == 1).all()
    model.unknown_as_negative = True
    bank.thresholds[1, 0] = 2.0  # nothing votes: unknown -> negative
    model.loss(_images(), _samples(GT))
    assert torch.equal(model.last_pseudo_labels, torch.where(known, GT, torch.zeros_like(GT)))


def test_training_step_fills_the_bank_from_known_positives():
    model = tiny_model()
    model.loss(_images(), _samples(GT))
    # known positives per class: c0 1, c1 1, c2 1, c3 1, c4 1; k = 2 prototypes each
    assert model.prototype_bank.queue_len.tolist() == [2, 2, 2, 2, 2]
    model.loss(_images(), _samples(GT))
    assert model.prototype_bank.queue_len.tolist() == [3] * 5
    assert model.prototype_bank.queue_ptr.tolist() == [1] * 5
    assert model.prototype_bank.threshold_seen[1].all()  # text: every class has pos/neg


def test_config_errors_are_one_line():
    with pytest.raises(ValueError, match='needs a prototype_bank'):
        tiny_model(prototype_bank=None)
    with pytest.raises(ValueError, match='pseudo_label_sources must be'):
        tiny_model(pseudo_label_sources=('visual', 'audio'))
    with pytest.raises(ValueError, match='num_train_classes is not supported'):
        tiny_model(num_train_classes=2)
    with pytest.raises(ValueError, match='queue_length must be a positive int'):
        MultimodalPrototypeBank(num_classes=2, embed_dim=2, queue_length=0)


# ---------------------------------------------------------------------- checkpoints
def _train_steps(model, steps, optimizer):
    for step in range(steps):
        losses = model.loss(_images(seed=step), _samples(GT))
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()


def test_bank_state_survives_save_and_resume_bit_exactly(tmp_path):
    model = tiny_model()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    _train_steps(model, 3, opt)
    torch.save(dict(state_dict=model.state_dict(), optim=opt.state_dict()),
               tmp_path / 'ckpt.pth')
    saved = torch.load(tmp_path / 'ckpt.pth', weights_only=True)
    for name in ('queue', 'queue_ptr', 'queue_len', 'thresholds', 'threshold_seen'):
        assert f'prototype_bank.{name}' in saved['state_dict']
    resumed = tiny_model()
    resumed.load_state_dict(saved['state_dict'])
    opt2 = torch.optim.SGD([p for p in resumed.parameters() if p.requires_grad], lr=0.01)
    opt2.load_state_dict(saved['optim'])
    for name, buf in model.prototype_bank.named_buffers():
        assert torch.equal(buf, getattr(resumed.prototype_bank, name)), name
    _train_steps(model, 2, opt)
    _train_steps(resumed, 2, opt2)
    ref, new = model.state_dict(), resumed.state_dict()
    for key in ref:
        if key != '_extra_state':
            assert torch.equal(ref[key], new[key]), key


def test_inference_checkpoint_without_bank_is_complete(tmp_path):
    from mmengine.runner import load_checkpoint
    model = tiny_model()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    _train_steps(model, 2, opt)
    state = checkpoint.inference_state_dict(model)
    assert not [k for k in state if k.startswith(('prototype_bank.', 'contrastive_loss.'))]
    torch.save(dict(state_dict=state), tmp_path / 'infer.pth')
    fresh = tiny_model()
    load_checkpoint(fresh, str(tmp_path / 'infer.pth'), map_location='cpu', strict=True)
    checkpoint.require_complete(fresh, 'infer.pth')  # what tools/test.py checks
    assert fresh.last_load_report['training_only_absent']
    model.eval()
    fresh.eval()
    x = _images()
    scores = [torch.stack([s.pred_score for s in m(x, mode='predict')]) for m in (model, fresh)]
    assert torch.equal(scores[0], scores[1])
    # a trained entry that prediction needs may not be absent
    del state['head.decoder.queries']
    with pytest.raises(checkpoint.CheckpointMismatchError, match='does not hold'):
        tiny_model().load_state_dict(state)


def test_embed_dim_must_match_the_backbone():
    with pytest.raises(ValueError, match='head.embed_dim is 16 but backbone mlr-tiny-rn '
                                         'gives 32-d features'):
        tiny_model(head=dict(type='TRMMLHead', num_classes=len(NAMES), embed_dim=16))


def test_one_cycle_scheduler_state_loads_weights_only(tmp_path):
    """TRM-ML's schedule (OneCycle): mmengine's OneCycleLR saves a bound method, which
    the weights-only loader refuses; PlainOneCycleLR saves plain data and resumes to the
    same learning rates."""
    import pickle

    from mmengine.optim.scheduler import OneCycleLR

    from mlr_plugin.engine.lr_schedulers import PlainOneCycleLR

    def make(cls):
        param = torch.nn.Parameter(torch.zeros(1))
        optim = torch.optim.AdamW([param], lr=1e-3)
        return optim, cls(optim, eta_max=1e-3, total_steps=10)

    _, plain = make(OneCycleLR)
    torch.save(plain.state_dict(), tmp_path / 'mmengine.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / 'mmengine.pth', weights_only=True)

    optim, sched = make(PlainOneCycleLR)
    for _ in range(4):
        optim.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / 'plain.pth')
    optim2, resumed = make(PlainOneCycleLR)
    resumed.load_state_dict(torch.load(tmp_path / 'plain.pth', weights_only=True))
    optim2.load_state_dict(optim.state_dict())
    for _ in range(4):
        optim.step()
        sched.step()
        optim2.step()
        resumed.step()
        assert optim.param_groups[0]['lr'] == optim2.param_groups[0]['lr']


def test_text_queries_initialise_from_the_first_class_names_only():
    """Configs carry no class names (the ClassNamesHook sets them before each train
    epoch): the first names initialise the 'clip' decoder; a resumed model's trained
    queries survive the hook (this raised at build time before)."""
    head = dict(type='TRMMLHead', num_classes=len(NAMES), embed_dim=32, decoder_init='clip')
    model = tiny_model(head=head, class_names=None)
    assert not bool(model.head.decoder.text_initialised)
    model.set_class_names(NAMES)
    text = F.normalize(model.backbone.encode_text(
        [f'a photo of a {n}.' for n in NAMES]).float(), dim=-1)
    torch.testing.assert_close(model.head.decoder.queries.detach(), text)
    with torch.no_grad():
        model.head.decoder.queries.add_(1.0)  # "trained"
    state = model.state_dict()
    resumed = tiny_model(head=head, class_names=None)
    resumed.load_state_dict(state)
    resumed.set_class_names(NAMES)
    torch.testing.assert_close(resumed.head.decoder.queries, model.head.decoder.queries)
