"""Prompt learners: CoOp layout, caching, subsets, gradients, hand-crafted ensembles."""
import functools

import pytest
import torch
import torch.nn.functional as F

from mlr_plugin.models.clip import OpenCLIPBackbone
from mlr_plugin.models.prompts import (DEFAULT_ENSEMBLE_TEMPLATES, HandcraftedPrompts,
                                       LearnablePrompts)

NAMES = ['dog', 'traffic light', 'person', 'potted plant']


@pytest.fixture(scope='module', params=['mlr-tiny-rn', 'mlr-tiny-vit'])
def backbone(request):
    torch.manual_seed(0)
    return OpenCLIPBackbone(model_name=request.param)


@pytest.fixture(scope='module')
def rn():
    torch.manual_seed(0)
    return OpenCLIPBackbone(model_name='mlr-tiny-rn')


def clip_text(backbone, texts):
    """Reference: open_clip's own encode_text on the tokenized sentences, normalised."""
    with torch.no_grad():
        return F.normalize(backbone.clip.encode_text(backbone.tokenize(texts)), dim=-1)


@pytest.mark.parametrize('class_specific', [False, True])
def test_phrase_contexts_reproduce_clip_sentences(backbone, class_specific):
    prompts = LearnablePrompts(class_specific=class_specific, num_classes=len(NAMES),
                               init_phrase='a photo of a')
    prompts.init_context(backbone)
    assert prompts.n_ctx == 4
    expected_shape = (len(NAMES), 4, backbone.text_width) if class_specific else \
        (4, backbone.text_width)
    assert prompts.ctx_pos.shape == expected_shape and prompts.ctx_neg.shape == expected_shape
    out = prompts(NAMES, backbone)
    expected = clip_text(backbone, [f'a photo of a {name}.' for name in NAMES])
    assert set(out) == {'pos', 'neg'}
    for feats in out.values():
        assert feats.shape == (len(NAMES), backbone.embed_dim)
        torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(feats.norm(dim=-1), torch.ones(len(NAMES)))


def test_class_specific_rows_are_per_class(rn):
    prompts = LearnablePrompts(prompt_names=('pos', ), class_specific=True, num_classes=2,
                               init_phrase='a photo of a').init_context(rn)
    with torch.no_grad():  # class 1 gets another phrase: only its row changes
        other = rn.embed_tokens(rn.tokenize(['a picture of the']))[0, 1:5]
        prompts.ctx_pos[1] = other
    out = prompts(['cat', 'bus'], rn)['pos']
    expected = clip_text(rn, ['a photo of a cat.', 'a picture of the bus.'])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_truncated_encoding_equals_full_length(rn, monkeypatch):
    prompts = LearnablePrompts(n_ctx=3).init_context(rn)
    lengths = []
    hook = rn.clip.transformer.resblocks[0].register_forward_pre_hook(
        lambda module, args: lengths.append(args[0].shape[1]))
    try:
        short = prompts(NAMES, rn)
        monkeypatch.setattr(rn, 'encode_prompt_embeddings', functools.partial(
            OpenCLIPBackbone.encode_prompt_embeddings, rn, truncate=False))
        full = prompts(NAMES, rn)
    finally:
        hook.remove()
    # [SOS] + 3 contexts + 'traffic light .' / 'potted plant .' (3 tokens) + [EOS] = 8
    assert lengths == [8, rn.context_length]
    for name in ('pos', 'neg'):
        torch.testing.assert_close(short[name], full[name], atol=1e-5, rtol=1e-4)


def test_gradients_reach_contexts_only(rn):
    prompts = LearnablePrompts(n_ctx=2, class_specific=True, num_classes=len(NAMES))
    prompts.init_context(rn)
    out = prompts(NAMES, rn, class_indices=torch.tensor([2, 0]))
    (out['pos'].sum() - out['neg'].sum()).backward()
    assert not any(p.requires_grad for p in rn.parameters())
    assert all(p.grad is None for p in rn.parameters())
    grad = prompts.ctx_pos.grad
    assert grad[[0, 2]].abs().sum() > 0 and grad[[1, 3]].abs().sum() == 0  # selected rows only
    assert prompts.ctx_neg.grad[[0, 2]].abs().sum() > 0


@pytest.mark.parametrize('class_specific', [False, True])
def test_class_indices_select_rows_of_full_encoding(rn, class_specific):
    torch.manual_seed(5)
    prompts = LearnablePrompts(n_ctx=4, class_specific=class_specific,
                               num_classes=len(NAMES)).init_context(rn)
    with torch.no_grad():
        full = prompts(NAMES, rn)
        index = torch.tensor([3, 1])
        subset = prompts(NAMES, rn, class_indices=index)
    for name in ('pos', 'neg'):
        assert subset[name].shape == (2, rn.embed_dim)
        torch.testing.assert_close(subset[name], full[name][index], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match='class_indices'):
        prompts(NAMES, rn, class_indices=torch.tensor([4]))


def test_class_specific_errors(rn):
    with pytest.raises(ValueError, match='num_classes'):
        LearnablePrompts(class_specific=True)
    prompts = LearnablePrompts(n_ctx=2, class_specific=True, num_classes=3).init_context(rn)
    with pytest.raises(ValueError, match='num_classes=3'):
        prompts(NAMES, rn)
    with pytest.raises(ValueError, match='prompt_names'):
        LearnablePrompts(prompt_names=('pos', 'pos'))
    with pytest.raises(RuntimeError, match='init_context'):
        LearnablePrompts()(NAMES, rn)


def test_random_init_and_state_dict_round_trip(rn):
    torch.manual_seed(0)
    prompts = LearnablePrompts(n_ctx=16).init_context(rn)
    assert list(prompts.state_dict()) == ['ctx_pos', 'ctx_neg']
    assert prompts.ctx_pos.shape == (16, rn.text_width)
    values = torch.cat([prompts.ctx_pos.flatten(), prompts.ctx_neg.flatten()])
    assert abs(values.mean()) < 0.004 and 0.017 < values.std() < 0.023  # N(0, 0.02)
    assert not torch.equal(prompts.ctx_pos, prompts.ctx_neg)
    before = prompts.ctx_pos.detach().clone()
    prompts.init_context(rn)  # idempotent: trained values are kept
    assert torch.equal(prompts.ctx_pos, before)

    restored = LearnablePrompts(n_ctx=16)  # not initialised: loading creates the contexts
    restored.load_state_dict(prompts.state_dict())
    for name in ('ctx_pos', 'ctx_neg'):
        assert torch.equal(restored.state_dict()[name], prompts.state_dict()[name])
    with torch.no_grad():
        a, b = prompts(NAMES, rn), restored(NAMES, rn)
    torch.testing.assert_close(a['neg'], b['neg'])

    created_now = LearnablePrompts(n_ctx=5, ctx_dim=rn.text_width)
    assert created_now.ctx_neg.shape == (5, rn.text_width)
    with pytest.raises(ValueError, match='width'):
        LearnablePrompts(n_ctx=5, ctx_dim=7).init_context(rn)


def test_prompt_tokens_are_cached_per_name_list(rn, monkeypatch):
    prompts = LearnablePrompts(n_ctx=2).init_context(rn)
    calls = []
    original = OpenCLIPBackbone.tokenize
    monkeypatch.setattr(rn, 'tokenize', lambda texts: calls.append(list(texts)) or
                        original(rn, texts))
    with torch.no_grad():
        prompts(NAMES, rn)
        n_calls = len(calls)
        prompts(NAMES, rn)
        prompts(NAMES, rn, class_indices=torch.tensor([1]))
        assert len(calls) == n_calls  # same names: nothing re-tokenized
        prompts(NAMES[:2], rn)
    assert ['X X dog.', 'X X traffic light.'] in calls[n_calls:]  # new names: re-tokenized


def test_handcrafted_single_template_and_ensemble(rn):
    single = HandcraftedPrompts()
    assert single.prompt_names == ('pos', ) and not list(single.parameters())
    out = single(NAMES, rn)
    torch.testing.assert_close(out['pos'], clip_text(rn, [f'a photo of a {n}.' for n in NAMES]),
                               atol=1e-5, rtol=1e-4)

    templates = DEFAULT_ENSEMBLE_TEMPLATES[:3]
    ensemble = HandcraftedPrompts(templates=list(templates), prompt_names=('pos', 'neg'))
    feats = ensemble(NAMES, rn)
    for c, name in enumerate(NAMES):  # by hand: mean of normalised features, renormalised
        per_template = [clip_text(rn, [t.format(name)])[0] for t in templates]
        mean = sum(per_template) / len(per_template)
        expected = mean / mean.norm()
        torch.testing.assert_close(feats['pos'][c], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(feats['neg'], feats['pos'])  # a list applies to every name
    assert not feats['pos'].requires_grad
    assert 5 <= len(DEFAULT_ENSEMBLE_TEMPLATES) <= 10
    assert all(t.count('{}') == 1 for t in DEFAULT_ENSEMBLE_TEMPLATES)


def test_handcrafted_dict_templates_and_subsets(rn):
    prompts = HandcraftedPrompts(dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))
    assert prompts.prompt_names == ('pos', 'neg')
    out = prompts(NAMES, rn)
    torch.testing.assert_close(out['neg'], clip_text(rn, [f'a photo without a {n}.'
                                                          for n in NAMES]), atol=1e-5, rtol=1e-4)
    subset = prompts(NAMES, rn, class_indices=torch.tensor([2]))
    torch.testing.assert_close(subset['pos'], out['pos'][[2]])
    with pytest.raises(ValueError, match='dict keys'):
        HandcraftedPrompts(dict(pos=['{}']), prompt_names=('neg', ))
    with pytest.raises(ValueError, match="exactly one"):
        HandcraftedPrompts(['a photo'])


def test_handcrafted_features_are_cached(rn, monkeypatch):
    prompts = HandcraftedPrompts()
    calls = []
    original = OpenCLIPBackbone.encode_text
    monkeypatch.setattr(rn, 'encode_text', lambda texts: calls.append(1) or original(rn, texts))
    prompts(NAMES, rn)
    prompts(NAMES, rn)
    assert len(calls) == 1
    prompts(NAMES[:2], rn)
    assert len(calls) == 2


def test_prompt_learners_are_registered(rn):
    from mmpretrain.registry import MODELS
    learnable = MODELS.build(dict(type='LearnablePrompts', n_ctx=2))
    handcrafted = MODELS.build(dict(type='HandcraftedPrompts', templates=['a {}.']))
    assert isinstance(learnable, LearnablePrompts)
    assert isinstance(handcrafted, HandcraftedPrompts)
    assert set(learnable.init_context(rn)(NAMES[:1], rn)) == {'pos', 'neg'}
