"""CLIPPromptClassifier: what trains, checkpoint policy, zero-shot names, class subsets,
predictions, the hand-crafted baseline, and the ClassNamesHook."""
import copy
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.runner import BaseLoop
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mlr_plugin.engine.hooks import ClassNamesHook

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
NAMES = ['cat', 'dog', 'traffic light', 'potted plant', 'bus']
TINY_BACKBONE = dict(type='OpenCLIPBackbone', model_name='mlr-tiny-rn', pretrained=None,
                     image_size=64)
# (B, C) labels in {1, 0, -1}: every class has a known label somewhere, -1 = unknown
GT = torch.tensor([[1., 0., -1., 0., 1.],
                   [0., 1., -1., -1., 0.],
                   [-1., 0., 1., 0., -1.]])


def dualcoop_cfg(num_classes=len(NAMES), class_specific=True, n_ctx=4, names=NAMES, **kwargs):
    return dict(type='CLIPPromptClassifier', backbone=dict(TINY_BACKBONE),
                prompt_learner=dict(type='LearnablePrompts', prompt_names=('pos', 'neg'),
                                    n_ctx=n_ctx, class_specific=class_specific,
                                    num_classes=num_classes),
                head=dict(type='DualCoOpHead'), class_names=names, **kwargs)


def dualcoop_pp_cfg(num_classes=len(NAMES)):
    """The DualCoOp++ base config's head / prompt settings on the tiny backbone."""
    model = copy.deepcopy(
        Config.fromfile(osp.join(REPO, 'configs/_base_/models/dualcoop_pp_rn101.py')).model
        .to_dict())
    model['backbone'].update(model_name='mlr-tiny-rn', pretrained=None, image_size=64)
    model['prompt_learner']['num_classes'] = num_classes
    model['class_names'] = NAMES[:num_classes]
    return model


def build(cfg, seed=0):
    torch.manual_seed(seed)  # same seed -> same random backbone and contexts
    return MODELS.build(cfg)


def images(num=len(GT), seed=1):
    return torch.randn(num, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def samples(gt=GT):
    return [DataSample().set_gt_score(row.clone()) for row in gt]


def snapshot(model):
    """Every parameter and buffer (persistent or not) of the whole model, cloned."""
    entries = dict(model.named_parameters())
    entries.update(model.named_buffers())
    return {name: value.detach().clone() for name, value in entries.items()}


def train_step(model, inputs, data_samples, lr=1.0):
    """model.loss -> sum -> backward -> step, through mmengine's OptimWrapper.

    The optimizer gets ALL parameters on purpose: freezing must come from
    ``requires_grad``, not from what the optimizer was given.
    """
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-2)
    wrapper = OptimWrapper(optimizer=optimizer)
    losses = model.loss(inputs, data_samples)
    wrapper.update_params(sum(losses.values()))
    return losses


def scores(model, inputs):
    model.eval()
    return torch.stack([s.pred_score for s in model.predict(inputs)])


# ---------------------------------------------------------------- 1. what trains
@pytest.mark.parametrize('method', ['dualcoop', 'dualcoop_pp'])
def test_train_step_changes_only_the_trainable_entries(method):
    if method == 'dualcoop':
        model = build(dualcoop_cfg())
        expected = {'prompt_learner.ctx_pos', 'prompt_learner.ctx_neg'}
    else:
        model = build(dualcoop_pp_cfg())
        expected = {'prompt_learner.ctx_evidence', 'prompt_learner.ctx_pos',
                    'prompt_learner.ctx_neg', 'head.log_temperature'}
    # the tiny ResNet has BatchNorm: its running stats must be among the checked buffers
    buffers = dict(model.named_buffers())
    assert any(name.endswith('running_mean') and name.startswith('backbone.') for name in buffers)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected

    before = snapshot(model)
    losses = train_step(model, images(), samples())
    assert all(torch.isfinite(v) for v in losses.values())
    after = snapshot(model)
    assert before.keys() == after.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == expected
    assert model.training and not model.backbone.clip.training  # frozen BN stays in eval


def test_image_forward_builds_no_graph():
    model = build(dualcoop_cfg()).train()
    with torch.enable_grad():
        feats = model.extract_feat(images(2))
        raw = model.backbone(images(2))
    for value in [*feats.values(), *raw.values()]:
        if not torch.is_tensor(value):
            continue  # the grid (h, w)
        assert not value.requires_grad and value.grad_fn is None
    # the text side does build a graph, reaching the contexts only
    text = model.encode_classes()
    assert text['pos'].requires_grad
    text['pos'].sum().backward()
    assert model.prompt_learner.ctx_pos.grad is not None
    assert all(p.grad is None for p in model.backbone.parameters())


# ---------------------------------------------------------------- 2. checkpoints
def tensor_keys(state_dict):
    """The saved weights, without the checkpoint record (``_extra_state``, a few kB)."""
    return [k for k in state_dict if k != '_extra_state']


def state_bytes(state_dict):
    return sum(state_dict[k].numel() * state_dict[k].element_size()
               for k in tensor_keys(state_dict))


def all_tokens(feats):
    """Every location the DualCoOp head pools over: prefix (mean) token, then the grid."""
    prefix = feats.get('prefix_tokens')
    return feats['dense'] if prefix is None else torch.cat([prefix, feats['dense']], dim=1)


def test_state_dict_holds_only_trainable_entries():
    model = build(dualcoop_cfg())
    assert tensor_keys(model.state_dict()) == ['prompt_learner.ctx_pos', 'prompt_learner.ctx_neg']
    pp = build(dualcoop_pp_cfg())
    assert set(tensor_keys(pp.state_dict())) == {
        'prompt_learner.ctx_evidence', 'prompt_learner.ctx_pos', 'prompt_learner.ctx_neg',
        'head.log_temperature'}


def test_checkpoint_size_formula():
    # COCO-like: 80 classes, class-specific, n_ctx 16, two prompts, fp32
    model = build(dualcoop_cfg(num_classes=80, n_ctx=16, names=[f'c{i}' for i in range(80)]))
    width = model.backbone.text_width
    assert width == 32
    state = model.state_dict()
    assert state['prompt_learner.ctx_pos'].shape == (80, 16, width)
    assert state_bytes(state) == 80 * 16 * width * 2 * 4  # the formula, on the tiny model
    # the same learner at RN101's text width 512 (contexts made directly, no CLIP needed)
    wide = MODELS.build(dict(type='LearnablePrompts', prompt_names=('pos', 'neg'), n_ctx=16,
                             class_specific=True, num_classes=80, ctx_dim=512))
    rn101_bytes = state_bytes(wide.state_dict())
    assert rn101_bytes == 80 * 16 * 512 * 2 * 4 == 5_242_880  # ~5.2 MB, not ~500 MB


def test_state_dict_round_trip_is_bit_identical(tmp_path):
    source = build(dualcoop_cfg(), seed=3)
    train_step(source, images(), samples())  # contexts now differ from the init
    expected = scores(source, images(2, seed=7))
    path = str(tmp_path / 'ctx.pth')
    torch.save(source.state_dict(), path)

    fresh = build(dualcoop_cfg(), seed=3)  # same backbone, untrained contexts
    assert not torch.equal(scores(fresh, images(2, seed=7)), expected)
    result = fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(scores(fresh, images(2, seed=7)), expected)
    # frozen weights were kept (filled from the model itself), not zeroed or dropped
    for name, value in source.backbone.state_dict(keep_vars=True).items():
        assert torch.equal(fresh.backbone.state_dict()[name], value)


def test_mmengine_checkpoint_round_trip(tmp_path):
    source = build(dualcoop_pp_cfg(), seed=4)
    train_step(source, images(), samples())
    expected = scores(source, images(2, seed=8))
    path = str(tmp_path / 'epoch_1.pth')
    save_checkpoint(dict(state_dict=source.state_dict(),
                         meta=dict(dataset_meta=dict(classes=NAMES))), path)

    fresh = build(dualcoop_pp_cfg(), seed=4)
    before = fresh.head.log_temperature.detach().clone()
    checkpoint = load_checkpoint(fresh, path, map_location='cpu', strict=True)
    assert checkpoint['meta']['dataset_meta']['classes'] == NAMES
    assert not torch.equal(before, fresh.head.log_temperature)  # it trained and was loaded
    assert torch.equal(scores(fresh, images(2, seed=8)), expected)


def test_load_rejects_a_checkpoint_with_wrong_keys():
    model = build(dualcoop_cfg())
    state = model.state_dict()
    state['prompt_learner.ctx_typo'] = state.pop('prompt_learner.ctx_neg')
    with pytest.raises(ValueError, match='ctx_typo'):
        model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------- 3. zero-shot names
def test_shared_contexts_score_unseen_class_names():
    model = build(dualcoop_cfg(class_specific=False))
    train_step(model, images(), samples(), lr=0.05)
    unseen = ['red fire hydrant', 'umbrella', 'kite']
    model.set_class_names(unseen)
    x = images(2, seed=5)
    first = scores(model, x)
    assert first.shape == (2, len(unseen)) and torch.isfinite(first).all()

    def margins():  # l+ - l-: the score before the sigmoid, never saturated
        with torch.no_grad():
            out = model(x, mode='tensor')
        return out['pos_logit'] - out['neg_logit']

    first_margin = margins()
    assert first_margin.shape == (2, len(unseen))
    model.set_class_names(['giraffe', 'skateboard', 'kite'])
    second_margin = margins()
    assert not torch.allclose(first_margin[:, :2], second_margin[:, :2])
    # DualCoOp scores each class on its own: the shared name keeps its score
    torch.testing.assert_close(first_margin[:, 2], second_margin[:, 2])
    model.set_class_names(['kite'])
    torch.testing.assert_close(margins()[:, 0], first_margin[:, 2])
    torch.testing.assert_close(scores(model, x)[:, 0], first[:, 2])


def test_class_specific_contexts_reject_another_number_of_names():
    model = build(dualcoop_cfg())
    # caught when the names are set, not at the first forward pass
    with pytest.raises(ValueError, match='built for 5 classes but got 2 class names'):
        model.set_class_names(['umbrella', 'kite'])
    # and by the prompt learner itself, for names given another way
    model.class_names = ['umbrella', 'kite']
    with pytest.raises(ValueError, match='num_classes=5'):
        model.predict(images(1))
    with pytest.raises(ValueError, match='empty'):
        model.set_class_names([])


def test_missing_class_names_is_a_clear_error():
    model = build(dualcoop_cfg(names=None))
    with pytest.raises(RuntimeError, match='no class names'):
        model.predict(images(1))


def test_gt_width_must_match_class_names():
    model = build(dualcoop_cfg())
    with pytest.raises(ValueError, match='gt_score has 3 classes'):
        model.loss(images(2), samples(GT[:2, :3]))


# ---------------------------------------------------------------- 4. class subsets
def test_sample_train_classes_keeps_positives():
    num_classes = 8
    model = build(dualcoop_cfg(num_classes=num_classes, names=[f'c{i}' for i in range(8)],
                               num_train_classes=3))
    generator = torch.Generator().manual_seed(0)
    for trial in range(60):
        gt = torch.randint(-1, 2, (4, num_classes), generator=generator).float()
        if trial % 3 == 0:
            gt[gt == 1] = 0  # some batches without any positive
        positives = [c for c in range(num_classes) if any(gt[b, c] == 1 for b in range(4))]
        index = model.sample_train_classes(gt)
        values = index.tolist()
        assert values == sorted(set(values))
        assert set(positives) <= set(values)
        assert len(values) == max(3, len(positives))
        assert all(0 <= v < num_classes for v in values)
    # budget >= number of classes: no subset
    model.num_train_classes = num_classes
    assert model.sample_train_classes(GT.new_zeros(2, num_classes)) is None
    model.num_train_classes = None
    assert model.sample_train_classes(GT.new_zeros(2, num_classes)) is None
    with pytest.raises(ValueError, match='num_train_classes'):
        build(dualcoop_cfg(num_train_classes=0))


@pytest.mark.parametrize('class_specific', [True, False])
def test_loss_on_a_class_subset_matches_the_selected_columns(class_specific):
    model = build(dualcoop_cfg(class_specific=class_specific, num_train_classes=2)).train()
    gt = torch.tensor([[0., 1., -1., 0., 0.],
                       [0., 0., 0., -1., 0.]])  # one positive class: budget 2
    x = images(2)
    index = model.sample_train_classes(gt)
    assert len(index) == 2 and 1 in index.tolist()
    model.class_sampling_step.zero_()  # the loss draws the same subset
    loss = model.loss(x, samples(gt))['loss_asl']

    # independent route: score ALL classes, then keep the chosen columns
    with torch.no_grad():
        outputs = model.head(model.extract_feat(x), model.encode_classes())
        manual = model.head.loss_module(outputs['pos_logit'][:, index],
                                        outputs['neg_logit'][:, index], gt[:, index])
        full = model.head.loss_module(outputs['pos_logit'], outputs['neg_logit'], gt)
    torch.testing.assert_close(loss.detach(), manual, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(manual, full)
    loss.backward()
    grad = model.prompt_learner.ctx_pos.grad
    if class_specific:  # only the chosen classes' contexts get a gradient
        unused = [c for c in range(5) if c not in index.tolist()]
        assert grad[unused].abs().sum() == 0 and grad[index].abs().sum() > 0
    else:
        assert grad.abs().sum() > 0


# ---------------------------------------------------------------- 5. ClassNamesHook
class _TrainLoop(BaseLoop):

    def run(self):
        pass


def loader(classes):
    metainfo = {} if classes is None else {'classes': tuple(classes)}
    return SimpleNamespace(dataset=SimpleNamespace(metainfo=metainfo))


def fake_runner(model, with_train_loop):
    runner = SimpleNamespace(model=model, train_dataloader=loader(['train a', 'train b']),
                             val_dataloader=loader(['val a', 'val b', 'val c']),
                             test_dataloader=loader(['test a']), _train_loop=None)
    if with_train_loop:
        runner._train_loop = _TrainLoop(runner, runner.train_dataloader)
    return runner


def test_class_names_hook_sets_names_per_loop():
    model = build(dualcoop_cfg(class_specific=False, names=None))
    hook = ClassNamesHook()
    runner = fake_runner(model, with_train_loop=True)
    hook.before_train_epoch(runner)
    assert model.class_names == ['train a', 'train b']
    hook.before_val_epoch(runner)
    assert model.class_names == ['val a', 'val b', 'val c']
    assert scores(model, images(1)).shape == (1, 3)  # names reach the prompts
    hook.after_val_epoch(runner, metrics={})
    assert model.class_names == ['train a', 'train b']
    hook.before_test_epoch(runner)
    assert model.class_names == ['test a']


def test_class_names_hook_without_train_loop_keeps_val_names():
    model = build(dualcoop_cfg(class_specific=False, names=None))
    hook = ClassNamesHook()
    runner = fake_runner(model, with_train_loop=False)
    hook.before_val_epoch(runner)
    hook.after_val_epoch(runner)
    assert model.class_names == ['val a', 'val b', 'val c']
    runner._train_loop = dict(type='EpochBasedTrainLoop')  # configured, never built
    hook.after_val_epoch(runner)
    assert model.class_names == ['val a', 'val b', 'val c']


def test_class_names_hook_needs_classes():
    model = build(dualcoop_cfg(class_specific=False, names=None))
    runner = fake_runner(model, with_train_loop=False)
    runner.test_dataloader = loader(None)
    with pytest.raises(ValueError, match="no class names.*'classes'"):
        ClassNamesHook().before_test_epoch(runner)
    runner.test_dataloader = SimpleNamespace(dataset=object())  # no metainfo at all
    with pytest.raises(ValueError, match='object has no class names'):
        ClassNamesHook().before_test_epoch(runner)


# ---------------------------------------------------------------- 6. predict
def plain_dualcoop_scores(dense, pos, neg, spatial_scale=20.0, logit_scale=5.0):
    """sigmoid(l+ - l-) with python loops over images and classes."""
    out = torch.zeros(dense.shape[0], pos.shape[0], dtype=torch.float64)
    for b in range(dense.shape[0]):
        for c in range(pos.shape[0]):
            s_pos = spatial_scale * (dense[b].double() @ pos[c].double())
            s_neg = spatial_scale * (dense[b].double() @ neg[c].double())
            w = torch.exp(s_pos - s_pos.max())
            w = w / w.sum()
            l_pos = logit_scale * float((w * s_pos).sum())
            l_neg = logit_scale * float((w * s_neg).sum())
            out[b, c] = 1.0 / (1.0 + torch.exp(torch.tensor(l_neg - l_pos)))
    return out


def test_predict_returns_head_scores_and_labels():
    model = build(dualcoop_cfg()).eval()
    x = images(3, seed=9)
    given = samples()
    result = model.predict(x, given)
    assert result is given and torch.equal(result[0].gt_score, GT[0])  # same samples, filled
    with torch.no_grad():
        feats = model.extract_feat(x)
        text = model.encode_classes()
        expected = model.head.predict_scores(model.head(feats, text))
    got = torch.stack([s.pred_score for s in result])
    assert got.shape == (3, len(NAMES))
    assert torch.equal(got, expected)
    assert ((got >= 0) & (got <= 1)).all()
    for sample in result:
        assert sample.pred_label.tolist() == [
            c for c in range(len(NAMES)) if float(sample.pred_score[c]) > 0.5]
    # features are unit vectors and the head formula matches a plain loop
    torch.testing.assert_close(feats['dense'].norm(dim=-1), torch.ones(3, feats['dense'].shape[1]))
    torch.testing.assert_close(text['pos'].norm(dim=-1), torch.ones(len(NAMES)))
    plain = plain_dualcoop_scores(all_tokens(feats), text['pos'], text['neg'])
    torch.testing.assert_close(got.double(), plain, rtol=1e-4, atol=1e-5)
    # predict without data samples makes new ones
    fresh = model.predict(x)
    assert len(fresh) == 3 and torch.equal(fresh[1].pred_score, got[1])
    assert torch.equal(model(x, mode='predict')[2].pred_score, got[2])
    with pytest.raises(RuntimeError, match='Invalid mode'):
        model(x, mode='features')


# ---------------------------------------------------------------- 7. zero-shot baseline
def test_handcrafted_baseline_has_nothing_to_train():
    templates = dict(pos=['a photo of a {}.', 'a picture of a {}.'],
                     neg=['a photo without a {}.'])
    model = build(dict(type='CLIPPromptClassifier', backbone=dict(TINY_BACKBONE),
                       prompt_learner=dict(type='HandcraftedPrompts', templates=templates),
                       head=dict(type='DualCoOpHead'), class_names=NAMES))
    assert not any(p.requires_grad for p in model.parameters())
    assert len(tensor_keys(model.state_dict())) == 0
    assert not model.load_state_dict({}, strict=True).missing_keys
    x = images(2)
    got = scores(model, x)
    assert got.shape == (2, len(NAMES)) and torch.isfinite(got).all()

    # independent text features: per-template CLIP features, mean, renormalised
    backbone = model.backbone

    def ensemble(group):
        feats = [F.normalize(backbone.encode_text([t.format(n) for n in NAMES]), dim=-1)
                 for t in group]
        return F.normalize(torch.stack(feats).mean(0), dim=-1)

    dense = F.normalize(all_tokens(backbone(x)), dim=-1)
    plain = plain_dualcoop_scores(dense, ensemble(templates['pos']), ensemble(templates['neg']))
    torch.testing.assert_close(got.double(), plain, rtol=1e-4, atol=1e-5)
    # any names, any number of them
    model.set_class_names(['kite', 'umbrella'])
    assert scores(model, x).shape == (2, 2)


# ---------------------------------------------------------------- 8. normalisation
def test_data_preprocessor_defaults_to_the_backbones_mean_and_std():
    """One source of image normalisation: the weights' own mean/std (x 255), unless the
    config gives its own."""
    model = build(dualcoop_cfg())
    expected_mean = torch.tensor([255 * m for m in model.backbone.image_mean]).view(-1, 1, 1)
    expected_std = torch.tensor([255 * s for s in model.backbone.image_std]).view(-1, 1, 1)
    torch.testing.assert_close(model.data_preprocessor.mean, expected_mean)
    torch.testing.assert_close(model.data_preprocessor.std, expected_std)
    fake = SimpleNamespace(image_mean=(0.5, 0.25, 0.125), image_std=(0.2, 0.2, 0.2))
    cfg = type(model)._preprocessor_cfg(None, fake)
    assert cfg['mean'] == [127.5, 63.75, 31.875] and cfg['std'] == [51.0, 51.0, 51.0]
    own = type(model)._preprocessor_cfg(dict(mean=[1, 2, 3], std=[4, 5, 6]), fake)
    assert own['mean'] == [1, 2, 3] and own['type'] == 'ClsDataPreprocessor'
