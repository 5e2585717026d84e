"""DualCoOp / DualCoOp++ heads and aggregation against plain (b, c, j) loops."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mlr_plugin.models.heads import (BaseSingleLogitHead, DualCoOpHead, DualCoOpPlusPlusHead,
                                     class_specific_region_aggregation,
                                     evidence_guided_aggregation, winner_take_all)

B, L, D, C = 2, 5, 8, 4


def _inputs(seed=0, names=('evidence', 'pos', 'neg'), dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    dense = F.normalize(torch.randn(B, L, D, generator=gen, dtype=dtype), dim=-1)
    feats = dict(dense=dense, global_feat=F.normalize(dense.mean(1), dim=-1))
    text = {n: F.normalize(torch.randn(C, D, generator=gen, dtype=dtype), dim=-1)
            for n in names}
    return feats, text


def _cos(dense, text, b, c, j):
    return sum(dense[b, j, d].item() * text[c, d].item() for d in range(dense.shape[-1]))


def _cos_table(dense, text):
    """cos[b][c][j] as nested python lists."""
    return [[[_cos(dense, text, b, c, j) for j in range(dense.shape[1])]
             for c in range(text.shape[0])] for b in range(dense.shape[0])]


def _loop_softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def _loop_dualcoop(dense, t_pos, t_neg, spatial_scale, logit_scale):
    cos_p, cos_n = _cos_table(dense, t_pos), _cos_table(dense, t_neg)
    pos = torch.zeros(B, C, dtype=torch.float64)
    neg = torch.zeros(B, C, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            s_pos = [spatial_scale * v for v in cos_p[b][c]]
            s_neg = [spatial_scale * v for v in cos_n[b][c]]
            w = _loop_softmax(s_pos)
            pos[b, c] = logit_scale * sum(w[j] * s_pos[j] for j in range(L))
            neg[b, c] = logit_scale * sum(w[j] * s_neg[j] for j in range(L))
    return pos, neg


def _loop_wta(cos_p, gamma):
    """w~[b][c][j]: per location, softmax over classes then divide by its max."""
    n_b, n_c, n_l = len(cos_p), len(cos_p[0]), len(cos_p[0][0])
    out = torch.zeros(n_b, n_c, n_l, dtype=torch.float64)
    for b in range(n_b):
        for j in range(n_l):
            column = [cos_p[b][c][j] for c in range(n_c)]
            g = gamma * max(column)
            w = _loop_softmax([g * v for v in column])
            for c in range(n_c):
                out[b, c, j] = w[c] / max(w)
    return out


def _loop_dualcoop_pp(dense, text, log_t, k, gamma, use_wta):
    cos_e, cos_p, cos_n = (_cos_table(dense, text[n]) for n in ('evidence', 'pos', 'neg'))
    wta = _loop_wta(cos_p, gamma) if use_wta else torch.ones(B, C, L, dtype=torch.float64)
    pos = torch.zeros(B, C, dtype=torch.float64)
    neg = torch.zeros(B, C, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            pi = _loop_softmax([math.exp(log_t) * a for a in cos_e[b][c]])
            pos[b, c] = sum(pi[j] * wta[b, c, j].item() * k * cos_p[b][c][j] for j in range(L))
            neg[b, c] = sum(pi[j] * k * cos_n[b][c][j] for j in range(L))
    return pos, neg


# ----------------------------------------------------------------------------- DualCoOp
def test_class_specific_region_aggregation_matches_loop():
    feats, text = _inputs(1, names=('pos', 'neg'))
    dense = feats['dense']
    sim_p = torch.einsum('bld,cd->bcl', dense, text['pos'])
    sim_n = torch.einsum('bld,cd->bcl', dense, text['neg'])
    pos, neg, w = class_specific_region_aggregation(sim_p, sim_n, 20.0, 5.0,
                                                    return_weights=True)
    exp_pos, exp_neg = _loop_dualcoop(dense, text['pos'], text['neg'], 20.0, 5.0)
    torch.testing.assert_close(pos, exp_pos)
    torch.testing.assert_close(neg, exp_neg)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, C, dtype=torch.float64))


def test_dualcoop_head_logits_scale_and_scores():
    feats, text = _inputs(2, names=('pos', 'neg'))
    head = DualCoOpHead(spatial_scale=10.0, logit_scale=3.0)
    out = head(feats, text)
    exp_pos, exp_neg = _loop_dualcoop(feats['dense'], text['pos'], text['neg'], 10.0, 3.0)
    torch.testing.assert_close(out['pos_logit'], exp_pos)
    torch.testing.assert_close(out['neg_logit'], exp_neg)
    assert out['attention'].shape == (B, C, L)

    # logit_scale multiplies both logits linearly.
    out2 = DualCoOpHead(spatial_scale=10.0, logit_scale=6.0)(feats, text)
    torch.testing.assert_close(out2['pos_logit'], 2 * out['pos_logit'])
    torch.testing.assert_close(out2['neg_logit'], 2 * out['neg_logit'])

    # Score = p+ = softmax([l-, l+])[1].
    scores = head.predict_scores(out)
    for b in range(B):
        for c in range(C):
            l_pos, l_neg = exp_pos[b, c].item(), exp_neg[b, c].item()
            p_pos = math.exp(l_pos) / (math.exp(l_pos) + math.exp(l_neg))
            assert scores[b, c].item() == pytest.approx(p_pos, rel=1e-9)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_dualcoop_head_loss_and_registry():
    feats, text = _inputs(3, names=('pos', 'neg'))
    for t in text.values():
        t.requires_grad_(True)
    head = MODELS.build(dict(type='DualCoOpHead',
                             loss=dict(type='PairSoftmaxASL', loss_weight=0.03)))
    assert isinstance(head, DualCoOpHead) and head.prompt_names == ('pos', 'neg')
    out = head(feats, text)
    gt = torch.tensor([[1, 0, -1, 1], [-1, -1, 0, 1]])
    losses = head.compute_loss(out, gt)
    expected = MODELS.build(dict(type='PairSoftmaxASL', loss_weight=0.03))(
        out['pos_logit'], out['neg_logit'], gt)
    assert set(losses) == {'loss_asl'}
    assert losses['loss_asl'].item() == pytest.approx(expected.item())
    losses['loss_asl'].backward()
    assert text['pos'].grad.abs().sum() > 0 and text['neg'].grad.abs().sum() > 0


# ----------------------------------------------------------------------------- WTA
def test_winner_take_all_matches_loop_and_winner_is_one():
    gen = torch.Generator().manual_seed(4)
    sim = torch.rand(B, C, L, generator=gen, dtype=torch.float64) * 2 - 1
    sim[0, :, 0] = -torch.rand(C, generator=gen, dtype=torch.float64)  # all-negative column
    for gamma in (1.0, 20.0, 200.0):
        wta = winner_take_all(sim, gamma)
        torch.testing.assert_close(wta, _loop_wta(sim.tolist(), gamma))
        # Exactly one weight of 1 per location, all others strictly below.
        assert (wta.amax(dim=1) == 1).all()
        assert ((wta == 1).sum(dim=1) == 1).all()
        assert (wta <= 1).all() and (wta >= 0).all()


def _suppression_case():
    """Location 0 = e0; class 0's prompt is e0, the others are close but worse."""
    e = torch.eye(4, dtype=torch.float64)
    dense = torch.stack([e[0], e[3]])[None]  # (1, 2, 4): location 1 matches nothing
    t_pos = F.normalize(torch.stack([e[0], e[0] + 0.6 * e[1], e[0] + 0.6 * e[2]]), dim=-1)
    text = dict(evidence=e[0].expand(3, 4).clone(), pos=t_pos, neg=e[2].expand(3, 4).clone())
    return dict(dense=dense, global_feat=dense.mean(1)), text


def test_winner_take_all_suppresses_other_classes_positive_evidence():
    feats, text = _suppression_case()
    k = math.exp(3)
    cos_pos = torch.einsum('bld,cd->bcl', feats['dense'], text['pos'])
    assert cos_pos[0, 1, 0] > 0.8 and cos_pos[0, 2, 0] > 0.8  # good, but not the best

    out = DualCoOpPlusPlusHead(use_wta=True)(feats, text)
    contrib = out['attention'] * out['wta'] * k * cos_pos  # pi * w~ * P
    assert out['attention'][0, :, 0].min() > 0.99  # evidence looks at location 0
    assert contrib[0, 0, 0] > 0.99 * k  # the winner keeps its evidence
    assert contrib[0, 1, 0] < 1e-6 and contrib[0, 2, 0] < 1e-6  # the others are silenced
    assert out['pos_logit'][0, 1] < 1e-6

    out_plain = DualCoOpPlusPlusHead(use_wta=False)(feats, text)
    contrib_plain = out_plain['attention'] * out_plain['wta'] * k * cos_pos
    assert contrib_plain[0, 1, 0] > 0.8 * k and contrib_plain[0, 2, 0] > 0.8 * k
    assert (out_plain['wta'] == 1).all()


# ----------------------------------------------------------------------------- DualCoOp++
@pytest.mark.parametrize('use_wta', [True, False])
def test_dualcoop_pp_logits_match_loop(use_wta):
    feats, text = _inputs(5)
    head = DualCoOpPlusPlusHead(init_log_temperature=2.0, gamma=50.0, use_wta=use_wta)
    out = head(feats, text)
    exp_pos, exp_neg = _loop_dualcoop_pp(feats['dense'], text, 2.0, math.exp(3), 50.0,
                                         use_wta)
    torch.testing.assert_close(out['pos_logit'], exp_pos)
    torch.testing.assert_close(out['neg_logit'], exp_neg)
    torch.testing.assert_close(head.predict_scores(out), torch.sigmoid(exp_pos - exp_neg))
    assert out['attention'].shape == out['wta'].shape == (B, C, L)


def test_evidence_guided_aggregation_without_wta_matches_loop():
    gen = torch.Generator().manual_seed(6)
    att = torch.softmax(torch.randn(B, C, L, generator=gen, dtype=torch.float64), -1)
    pos_map = torch.randn(B, C, L, generator=gen, dtype=torch.float64)
    neg_map = torch.randn(B, C, L, generator=gen, dtype=torch.float64)
    pos, neg = evidence_guided_aggregation(att, pos_map, neg_map)
    for b in range(B):
        for c in range(C):
            assert pos[b, c].item() == pytest.approx(
                sum(att[b, c, j].item() * pos_map[b, c, j].item() for j in range(L)))
            assert neg[b, c].item() == pytest.approx(
                sum(att[b, c, j].item() * neg_map[b, c, j].item() for j in range(L)))


def test_log_temperature_is_learned_map_scale_is_not():
    head = DualCoOpPlusPlusHead()
    params = dict(head.named_parameters())
    assert list(params) == ['log_temperature']
    assert head.log_temperature.item() == 3.0
    assert head.map_scale == pytest.approx(math.exp(3))
    assert list(head.state_dict()) == ['log_temperature']
    assert head.prompt_names == ('evidence', 'pos', 'neg')

    feats, text = _inputs(7, dtype=torch.float32)
    gt = torch.tensor([[1, 0, -1, 0], [0, 1, 1, -1]])
    losses = head.compute_loss(head(feats, text), gt)
    losses['loss_asl'].backward()
    assert head.log_temperature.grad is not None and head.log_temperature.grad != 0
    # DualCoOp++ default: sum x 0.02.
    assert head.loss_module.reduction == 'sum' and head.loss_module.loss_weight == 0.02


def test_bf16_autocast_keeps_softmaxes_fp32():
    feats, text = _inputs(8, dtype=torch.float32)
    head = DualCoOpPlusPlusHead()
    ref = head(feats, text)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = head(feats, text)
    assert out['attention'].dtype == torch.float32 and out['wta'].dtype == torch.float32
    torch.testing.assert_close(out['attention'].sum(-1), torch.ones(B, C))
    torch.testing.assert_close(out['pos_logit'], ref['pos_logit'], atol=0.5, rtol=0.05)
    out = DualCoOpHead()(feats, {'pos': text['pos'], 'neg': text['neg']})
    assert torch.isfinite(out['pos_logit']).all()


def test_bad_inputs_raise_clear_errors():
    feats, text = _inputs(9)
    head = DualCoOpPlusPlusHead()
    with pytest.raises(ValueError, match='evidence'):
        head(feats, {'pos': text['pos'], 'neg': text['neg']})
    with pytest.raises(ValueError, match='dense'):
        head(dict(global_feat=feats['global_feat']), text)
    bad = dict(text, neg=text['neg'][:2])
    with pytest.raises(ValueError, match='neg'):
        head(feats, bad)
    with pytest.raises(ValueError, match='text\\["pos"\\]'):
        DualCoOpHead()(feats, dict(pos=text['pos'][:, :3], neg=text['neg']))


# ---------------------------------------------------------------- heads own loss/predict
class _GlobalDotHead(BaseSingleLogitHead):
    """A minimal single-logit head for the base-class tests: 10 * cos(global, t_c)."""
    prompt_names = ('pos', )

    def forward(self, feats, text):
        self.check_inputs(feats, text)
        return dict(logit=10.0 * feats['global_feat'] @ text['pos'].t())


def _samples(gt):
    return [DataSample().set_gt_score(row) for row in gt]


def test_predict_with_thr_and_topk():
    feats, text = _inputs(seed=3, names=('pos', 'neg'))
    outputs = DualCoOpHead()(feats, text)
    scores = DualCoOpHead().predict_scores(outputs).float()  # predict() reports fp32
    for thr in (0.3, 0.5, 0.7):
        samples = DualCoOpHead(thr=thr).predict(feats, text)
        for b, sample in enumerate(samples):
            assert torch.equal(sample.pred_score, scores[b])
            assert sample.pred_label.tolist() == [c for c in range(C) if scores[b, c] > thr]
    for k in (1, 2, 4):
        for b, sample in enumerate(DualCoOpHead(topk=k).predict(feats, text)):
            ranked = sorted(range(C), key=lambda c: (-float(scores[b, c]), c))
            assert sample.pred_label.tolist() == ranked[:k]
    with pytest.raises(ValueError, match='not both'):
        DualCoOpHead(thr=0.5, topk=2)
    with pytest.raises(ValueError, match='topk'):
        DualCoOpHead(topk=0)


def test_topk_breaks_ties_by_class_index():
    head = _GlobalDotHead(topk=2, score_activation='none')
    feats = dict(dense=torch.zeros(1, 1, 2), global_feat=torch.tensor([[1.0, 0.0]]))
    text = dict(pos=torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    assert head.predict(feats, text)[0].pred_label.tolist() == [1, 2]


def test_single_logit_head_base_scores_and_loss():
    feats, text = _inputs(seed=4, names=('pos', ))
    gt = torch.tensor([[1., 0., -1., 0.], [0., -1., 1., 1.]])
    head = _GlobalDotHead()
    logit = 10.0 * feats['global_feat'] @ text['pos'].t()
    sample = head.predict(feats, text)[1]
    torch.testing.assert_close(sample.pred_score, torch.sigmoid(logit[1]).float())
    assert sample.pred_label.tolist() == [c for c in range(C) if logit[1, c] > 0]
    losses = head.loss(feats, text, _samples(gt))
    assert list(losses) == ['loss_asl']
    expected = MODELS.build(dict(type='PartialSigmoidASL'))(logit, gt)
    torch.testing.assert_close(losses['loss_asl'], expected)
    raw = _GlobalDotHead(score_activation='none', loss_name='loss_rank', topk=1)
    torch.testing.assert_close(raw.predict_scores(raw(feats, text)), logit)
    with pytest.raises(ValueError, match='loss_'):
        _GlobalDotHead(loss_name='asl')


def test_head_loss_uses_the_classes_of_the_step():
    """``class_indices`` picks the label columns that match the encoded classes."""
    feats, text = _inputs(seed=5, names=('pos', 'neg'))
    gt = torch.tensor([[1., 0., -1., 0., 1., 0.], [0., -1., 1., 1., 0., 0.]])
    index = torch.tensor([0, 2, 3, 5])  # text has C = 4 rows: these classes
    head = DualCoOpHead()
    losses = head.loss(feats, text, _samples(gt), class_indices=index)
    expected = head.compute_loss(head(feats, text), gt[:, index])
    torch.testing.assert_close(losses['loss_asl'], expected['loss_asl'])
    with pytest.raises(ValueError, match='gt_score has 6 classes but 4'):
        head.loss(feats, text, _samples(gt))


def test_pooling_covers_prefix_tokens_then_the_grid():
    """The DualCoOp head pools over the mean token and the grid alike: splitting one
    token sequence into ``prefix_tokens`` + ``dense`` changes nothing."""
    feats, text = _inputs(seed=6, names=('evidence', 'pos', 'neg'))
    split = dict(prefix_tokens=feats['dense'][:, :1], dense=feats['dense'][:, 1:],
                 global_feat=feats['global_feat'])
    for head in (DualCoOpHead(), DualCoOpPlusPlusHead()):
        whole, parts = head(feats, text), head(split, text)
        for key in ('pos_logit', 'neg_logit', 'attention'):
            torch.testing.assert_close(whole[key], parts[key])
