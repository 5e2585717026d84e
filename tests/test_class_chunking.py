"""Class-chunked scoring (heads' ``class_chunk_size``) gives the unchunked outputs and
gradients; WTA's cross-class competition survives chunking."""
import pytest
import torch
import torch.nn.functional as F

from mlr_plugin.models.heads import DualCoOpHead, DualCoOpPlusPlusHead, winner_take_all

B, P, L, D, C = 3, 1, 12, 16, 37  # C not a multiple of the chunk sizes below


def _inputs(seed=0, names=('evidence', 'pos', 'neg'), dtype=torch.float64):
    """fp64, so summation-order rounding (~1e-16) cannot hide a real difference."""
    gen = torch.Generator().manual_seed(seed)

    def unit(*shape):
        return F.normalize(torch.randn(*shape, generator=gen, dtype=dtype),
                           dim=-1).requires_grad_()
    dense, prefix = unit(B, L, D), unit(B, P, D)
    text = {n: unit(C, D) for n in names}
    return dict(dense=dense, prefix_tokens=prefix), text


def _run(head, feats, text):
    """Outputs and the gradients of a loss touching every output."""
    out = head(feats, text)
    total = sum((value * torch.linspace(0.5, 1.5, value.numel(), dtype=value.dtype).view_as(value)).sum()
                for value in out.values())
    leaves = [feats['dense'], feats['prefix_tokens'], *text.values(),
              *[p for p in head.parameters() if p.requires_grad]]
    grads = torch.autograd.grad(total, leaves)
    return {k: v.detach() for k, v in out.items()}, grads


HEADS = [
    (DualCoOpHead, {}, ('pos', 'neg')),
    (DualCoOpPlusPlusHead, dict(use_wta=True), ('evidence', 'pos', 'neg')),
    (DualCoOpPlusPlusHead, dict(use_wta=False), ('evidence', 'pos', 'neg')),
]


@pytest.mark.parametrize('head_type,kwargs,names', HEADS)
@pytest.mark.parametrize('chunk', [1, 5, 16])
def test_chunked_outputs_and_gradients_match_unchunked(head_type, kwargs, names, chunk):
    feats, text = _inputs(names=names)
    full = head_type(class_chunk_size=None, **kwargs).double()
    chunked = head_type(class_chunk_size=chunk, **kwargs).double()
    assert len(chunked.class_chunks(C)) == -(-C // chunk)
    out_full, grad_full = _run(full, feats, text)
    out_chunk, grad_chunk = _run(chunked, feats, text)
    assert out_full.keys() == out_chunk.keys()
    for key in out_full:  # logits, attention maps, WTA weights
        assert out_chunk[key].shape == out_full[key].shape == (
            (B, C) if key.endswith('logit') else (B, C, P + L))
        torch.testing.assert_close(out_chunk[key], out_full[key], rtol=1e-12, atol=1e-12)
    for g_chunk, g_full in zip(grad_chunk, grad_full):
        torch.testing.assert_close(g_chunk, g_full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('head_type,kwargs,names', HEADS)
def test_chunked_fp32_outputs_within_1e6_relative(head_type, kwargs, names):
    """In fp32 a chunk's matmul may round differently from the full one: logits (~100)
    and maps agree to 1e-6 relative."""
    feats, text = _inputs(names=names, dtype=torch.float32)
    with torch.no_grad():
        full = head_type(class_chunk_size=None, **kwargs)(feats, text)
        chunked = head_type(class_chunk_size=7, **kwargs)(feats, text)
    for key in full:
        torch.testing.assert_close(chunked[key], full[key], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('chunk', [3, 512])
def test_chunked_predict_scores_match(chunk):
    feats, text = _inputs(dtype=torch.float32)
    feats = {k: v.detach() for k, v in feats.items()}
    text = {k: v.detach() for k, v in text.items()}
    full = DualCoOpPlusPlusHead(class_chunk_size=None)
    with torch.no_grad():
        expected = full.predict_scores(full(feats, text))
        # predict skips the (B, C, L) maps: only logits are kept across chunks
        assert set(full.score_outputs(feats, text)) == {'pos_logit', 'neg_logit'}
        got = DualCoOpPlusPlusHead(class_chunk_size=chunk).predict(feats, text)
    torch.testing.assert_close(torch.stack([s.pred_score for s in got]), expected,
                               atol=1e-6, rtol=0)


def test_wta_extrema_are_exact_with_negative_maxima():
    """A location where every class has a negative cosine (g_j < 0): the chunk formula
    must take the min over classes there; the result is bit-identical."""
    gen = torch.Generator().manual_seed(3)
    sim = torch.rand(2, 9, 7, generator=gen) * 2 - 1
    sim[:, :, 0] = -torch.rand(2, 9, generator=gen) - 0.1  # all negative at location 0
    sim[0, :, 1] = 0.0  # g_j = 0
    full = winner_take_all(sim, 200.0)
    extrema = (sim.amax(dim=1, keepdim=True), sim.amin(dim=1, keepdim=True))
    pieces = [winner_take_all(sim[:, s], 200.0, extrema) for s in (slice(0, 4), slice(4, 9))]
    assert torch.equal(torch.cat(pieces, dim=1), full)
    # independent check of the rule at the all-negative location: w~ = exp(x - max x)
    b, j = 1, 0
    x = [200.0 * float(sim[b, :, j].max()) * float(v) for v in sim[b, :, j]]
    expected = torch.tensor([pow(2.718281828459045, v - max(x)) for v in x])
    torch.testing.assert_close(full[b, :, j], expected, rtol=1e-4, atol=1e-6)
    assert float(full[b, :, j].max()) == 1.0


def test_class_chunks_cover_every_class_once():
    head = DualCoOpHead(class_chunk_size=4)
    covered = [i for s in head.class_chunks(10) for i in range(10)[s]]
    assert covered == list(range(10))
    assert DualCoOpHead(class_chunk_size=None).class_chunks(10) == [slice(0, 10)]


@pytest.mark.parametrize('bad', [0, -3, 2.5, True, '512'])
def test_bad_class_chunk_size_is_one_clear_error(bad):
    with pytest.raises(ValueError, match='class_chunk_size'):
        DualCoOpHead(class_chunk_size=bad)
