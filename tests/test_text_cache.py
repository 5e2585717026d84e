"""The classifier's text-feature cache: the text tower runs once per evaluation, reruns
after anything it depends on changes, and fixed prompts encode once per run."""
import copy

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mlr_plugin.models.prompts import LearnablePrompts

NAMES = ['cat', 'dog', 'traffic light', 'potted plant', 'bus']
BACKBONE = dict(type='OpenCLIPBackbone', model_name='mlr-tiny-rn', pretrained=None,
                image_size=64)
LEARNABLE = dict(type='LearnablePrompts', prompt_names=('pos', 'neg'), n_ctx=4)
HANDCRAFTED = dict(type='HandcraftedPrompts',
                   templates=dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))


def build(prompt_learner=LEARNABLE, **kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(type='CLIPPromptClassifier', backbone=dict(BACKBONE),
                             prompt_learner=prompt_learner, head=dict(type='DualCoOpHead'),
                             class_names=NAMES, **kwargs))


def count_text_tower(model):
    """Count the text-tower passes (every prompt learner goes through this method)."""
    calls = []
    original = model.backbone.encode_prompt_embeddings

    def counted(*args, **kwargs):
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)
    model.backbone.encode_prompt_embeddings = counted
    return calls


def batches(num, size=2):
    gen = torch.Generator().manual_seed(1)
    gt = torch.tensor([[1., 0., -1., 0., 1.], [0., 1., 0., 0., 0.]])
    return [(torch.rand(size, 3, 64, 64, generator=gen) * 255,
             [DataSample().set_gt_score(row.clone()) for row in gt[:size]])
            for _ in range(num)]


def val_loop(model, data):
    model.eval()
    out = []
    for inputs, samples in data:
        out += model.val_step(dict(inputs=inputs, data_samples=copy.deepcopy(samples)))
    return torch.stack([s.pred_score for s in out])


def uncached_scores(model, data):
    """The path without the cache: the prompt learner called for every batch."""
    model.eval()
    scores = []
    with torch.no_grad():
        for inputs, _ in data:
            feats = model.extract_feat(model.data_preprocessor(
                dict(inputs=inputs), False)['inputs'])
            text = model.prompt_learner(model.class_names, model.backbone)
            scores.append(model.head.predict_scores(model.head(feats, text)))
    return torch.cat(scores)


def sgd_step(model, data):
    model.train()
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    inputs, samples = data[0]
    loss = sum(model.loss(inputs, samples).values())
    optim.zero_grad()
    loss.backward()
    optim.step()


def test_val_loop_encodes_text_once_and_matches_uncached():
    model = build()
    calls = count_text_tower(model)
    data = batches(4)
    scores = val_loop(model, data)
    assert len(calls) == 1  # 4 batches, one text-tower pass
    assert calls[0] == 2 * len(NAMES)  # pos + neg for every class
    expected = uncached_scores(model, data)
    assert torch.equal(scores, expected)
    assert len(calls) == 1 + 4  # the uncached path: once per batch
    assert torch.equal(val_loop(model, data), scores)
    assert len(calls) == 1 + 4  # nothing changed since: the next evaluation reuses it


def test_optimizer_step_invalidates_and_train_step_does_not_use_cache():
    model = build()
    calls = count_text_tower(model)
    data = batches(2)
    before = val_loop(model, data)
    assert len(calls) == 1
    sgd_step(model, data)  # trainable contexts: the loss encodes with grad
    assert len(calls) == 2
    after = val_loop(model, data)
    assert len(calls) == 3  # contexts changed: re-encoded once for the new eval
    assert not torch.equal(before, after)
    assert torch.equal(after, uncached_scores(model, data))


def test_in_place_edit_load_state_dict_and_new_names_invalidate():
    model = build()
    calls = count_text_tower(model)
    data = batches(1)
    first = val_loop(model, data)
    with torch.no_grad():
        model.prompt_learner.ctx_pos.mul_(3.0)  # no optimizer, no train(): version bump
    edited = val_loop(model, data)
    assert len(calls) == 2 and not torch.equal(first, edited)

    other = build()
    other.load_state_dict(model.state_dict())
    other_calls = count_text_tower(other)
    assert torch.equal(val_loop(other, data), edited) and len(other_calls) == 1
    other.load_state_dict(build().state_dict())  # back to the initial contexts
    assert torch.equal(val_loop(other, data), first) and len(other_calls) == 2

    model.set_class_names(NAMES[:3])  # new class list: new features
    model.eval()
    assert model.predict(data[0][0])[0].pred_score.shape == (3, ) and len(calls) == 3
    model.set_class_names(NAMES)
    assert torch.equal(val_loop(model, data), edited) and len(calls) == 4


def test_data_swap_invalidates_and_copies_start_empty():
    model = build()
    data = batches(1)
    scores = val_loop(model, data)
    twin = copy.deepcopy(model)  # e.g. an EMA / teacher copy: its own parameters
    assert twin._text_cache._entry is None
    with torch.no_grad():
        twin.prompt_learner.ctx_pos.add_(1.0)
    assert not torch.equal(val_loop(twin, data), scores)
    assert torch.equal(val_loop(model, data), scores) and model._text_cache.encodes == 1
    model.prompt_learner.ctx_neg.data = torch.zeros_like(model.prompt_learner.ctx_neg)
    val_loop(model, data)
    assert model._text_cache.encodes == 2


@pytest.mark.parametrize('prompt_learner', ['handcrafted', 'frozen_learnable'])
def test_fixed_prompts_encode_once_across_train_and_val(prompt_learner):
    if prompt_learner == 'handcrafted':
        model = build(HANDCRAFTED)
    else:
        model = build()
        model.prompt_learner.requires_grad_(False)
    # a trainable head parameter so the step has something to optimise
    model.head.register_parameter('bias', torch.nn.Parameter(torch.zeros(())))
    calls = count_text_tower(model)
    data = batches(2)
    passes = []
    for _ in range(2):
        model.train()
        for inputs, samples in data:
            model.loss(inputs, samples)
            passes.append(len(calls))
        val_loop(model, data)
        passes.append(len(calls))
    # the first step encodes (one pass per prompt name for hand-crafted templates, one
    # for both prompts of a learner), nothing after it
    assert passes[0] in (1, 2) and passes == [passes[0]] * len(passes)
    assert model._text_cache.encodes == 1


def test_sampled_train_classes_from_cache_match_prompt_learner():
    model = build(HANDCRAFTED, num_train_classes=2)
    model.train()
    index = torch.tensor([1, 3])
    cached = model.encode_classes(index)
    direct = model.prompt_learner(NAMES, model.backbone, class_indices=index)
    for name in cached:
        assert torch.equal(cached[name], direct[name].float())


def test_grad_enabled_eval_keeps_gradients():
    """Gradients asked for in eval mode (e.g. a saliency check) bypass the cache."""
    model = build()
    model.eval()
    text = model.encode_classes()
    assert text['pos'].requires_grad
    text['pos'].sum().backward()
    assert model.prompt_learner.ctx_pos.grad is not None


def test_text_encoding_in_class_chunks_matches_one_pass():
    torch.manual_seed(0)
    model = build()
    backbone = model.backbone
    one_pass = LearnablePrompts(n_ctx=4, encode_chunk_size=None)
    chunked = LearnablePrompts(n_ctx=4, encode_chunk_size=2)
    one_pass.init_context(backbone)
    chunked.load_state_dict(one_pass.state_dict())
    calls = count_text_tower(model)
    index = torch.tensor([4, 0, 2])
    for class_indices in (None, index):
        a = one_pass(NAMES, backbone, class_indices=class_indices)
        b = chunked(NAMES, backbone, class_indices=class_indices)
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-6, atol=1e-6)
        (a['pos'].sum() + a['neg'].sum()).backward()
        (b['pos'].sum() + b['neg'].sum()).backward()
    torch.testing.assert_close(chunked.ctx_pos.grad, one_pass.ctx_pos.grad,
                               rtol=1e-5, atol=1e-6)
    # one pass per chunk of 2 classes: 5 classes -> 3 passes, 3 selected -> 2 passes
    assert calls == [2 * 5, 4, 4, 2, 2 * 3, 4, 2]
    with pytest.raises(ValueError, match='encode_chunk_size'):
        LearnablePrompts(encode_chunk_size=0)
