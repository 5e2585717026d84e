"""The checkpoint rule (mlr_plugin/models/checkpoint.py): what is saved across training
stages, strict loading, and the frozen-weight check."""
import pytest
import torch
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mlr_plugin.models.checkpoint import (CheckpointMismatchError, read_record,
                                          require_complete)

NAMES = ['cat', 'dog', 'bus']
GT = torch.tensor([[1., 0., -1.], [0., 1., 0.], [-1., 0., 1.]])
HANDCRAFTED = dict(type='HandcraftedPrompts',
                   templates=dict(pos=['a photo of a {}.'], neg=['a photo without a {}.']))


def vit_model(stage, seed=0, **backbone):
    """Stage 1 tunes the last 2 ViT blocks under fixed prompts; stage 2 freezes the tower
    again and learns class-specific prompt contexts (MKT-like)."""
    backbone = dict(dict(type='OpenCLIPBackbone', model_name='mlr-tiny-vit', pretrained=None,
                         image_size=64), **backbone)
    if stage == 1:
        backbone['trainable_vision_blocks'] = 2
        prompts = HANDCRAFTED
    else:
        prompts = dict(type='LearnablePrompts', n_ctx=4, class_specific=True,
                       num_classes=len(NAMES))
    torch.manual_seed(seed)
    return MODELS.build(dict(type='CLIPPromptClassifier', backbone=backbone,
                             prompt_learner=prompts, head=dict(type='DualCoOpHead'),
                             class_names=NAMES))


def rn_model(seed=0, num_classes=len(NAMES), head='DualCoOpHead', **backbone):
    prompt_names = ('evidence', 'pos', 'neg') if head == 'DualCoOpPlusPlusHead' else ('pos',
                                                                                     'neg')
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='CLIPPromptClassifier',
        backbone=dict(dict(type='OpenCLIPBackbone', model_name='mlr-tiny-rn', pretrained=None,
                           image_size=64), **backbone),
        prompt_learner=dict(type='LearnablePrompts', prompt_names=prompt_names, n_ctx=4,
                            class_specific=True, num_classes=num_classes),
        head=dict(type=head), class_names=[f'c{i}' for i in range(num_classes)]))


def images(num=3, seed=1):
    return torch.randn(num, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def train_step(model, lr=1.0):
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr)
    losses = model.loss(images(), [DataSample().set_gt_score(row) for row in GT])
    sum(losses.values()).backward()
    optimizer.step()
    optimizer.zero_grad()


def scores(model, seed=5):
    model.eval()
    return torch.stack([s.pred_score for s in model.predict(images(2, seed=seed))])


def block_names(model):
    return {n for n in model.state_dict() if 'resblocks' in n or 'ln_post' in n
            or n.endswith('visual.proj')}


def test_two_stage_checkpoint_keeps_stage_one_weights_and_reloads_bit_identically(tmp_path):
    stage1 = vit_model(stage=1)
    train_step(stage1)
    tuned = {n: t.clone() for n, t in stage1.state_dict().items() if n != '_extra_state'}
    assert tuned and all('visual' in n for n in tuned)  # only the tower's tail trained
    save_checkpoint(dict(state_dict=stage1.state_dict()), str(tmp_path / 'stage1.pth'))

    # stage 2 starts from stage 1 (load_from: non-strict, contexts are new)
    stage2 = vit_model(stage=2)
    assert not any(p.requires_grad for p in stage2.backbone.parameters())
    load_checkpoint(stage2, str(tmp_path / 'stage1.pth'), map_location='cpu')
    assert stage2.last_load_report['initialised'] == ['prompt_learner.ctx_neg',
                                                      'prompt_learner.ctx_pos']
    for name, value in tuned.items():
        assert torch.equal(dict(stage2.named_parameters())[name], value)
    with pytest.raises(CheckpointMismatchError, match='earlier training stage'):
        require_complete(stage2, 'stage1.pth')  # what tools/test.py and infer check
    train_step(stage2)
    saved = stage2.state_dict()
    # the frozen-again blocks stay in the checkpoint: "frozen" is not "pretrained"
    assert set(tuned) <= set(saved)
    assert set(read_record(saved['_extra_state'])['trained']) == set(tuned) | {
        'prompt_learner.ctx_pos', 'prompt_learner.ctx_neg'}
    save_checkpoint(dict(state_dict=saved), str(tmp_path / 'stage2.pth'))

    fresh = vit_model(stage=2)
    assert not torch.equal(scores(fresh), scores(stage2))
    load_checkpoint(fresh, str(tmp_path / 'stage2.pth'), map_location='cpu', strict=True)
    assert fresh.last_load_report['initialised'] == []
    require_complete(fresh, 'stage2.pth')
    assert torch.equal(scores(fresh), scores(stage2))
    assert torch.equal(scores(fresh, seed=9), scores(stage2, seed=9))


def test_checkpoint_on_another_backbone_fails_in_one_line(tmp_path):
    source = rn_model(seed=0)
    train_step(source)
    path = str(tmp_path / 'ckpt.pth')
    save_checkpoint(dict(state_dict=source.state_dict()), path)

    cases = {
        'other weights': (rn_model(seed=1), 'same shape, other values'),
        'other image size': (rn_model(seed=0, image_size=96), 'shape'),
        'other architecture': (vit_model(stage=2), ''),
    }
    for case, (target, detail) in cases.items():
        with pytest.raises(ValueError) as error:
            load_checkpoint(target, path, map_location='cpu', strict=True)
        message = str(error.value)
        assert '\n' not in message and detail in message, case
    # the same weights load
    load_checkpoint(rn_model(seed=0), path, map_location='cpu', strict=True)


def test_wrong_class_count_names_both_shapes(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    save_checkpoint(dict(state_dict=rn_model(num_classes=4).state_dict()), path)
    with pytest.raises(ValueError, match=r'shape \(4, 4, 32\) but the model has \(3, 4, 32\)'):
        load_checkpoint(rn_model(num_classes=3), path, map_location='cpu')  # non-strict too


def test_checkpoint_of_another_method_is_refused(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    save_checkpoint(dict(state_dict=rn_model().state_dict()), path)
    with pytest.raises(ValueError, match='lacks trained entries .*ctx_evidence'):
        load_checkpoint(rn_model(head='DualCoOpPlusPlusHead'), path, map_location='cpu')
    save_checkpoint(dict(state_dict=rn_model(head='DualCoOpPlusPlusHead').state_dict()), path)
    with pytest.raises(ValueError, match='do not exist'):
        load_checkpoint(rn_model(), path, map_location='cpu')


def test_record_is_plain_data_and_loads_with_weights_only(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(rn_model().state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert state['_extra_state'].dtype == torch.uint8  # mmengine broadcasts tensors
    record = read_record(state['_extra_state'])
    assert record['format'] == 1 and record['trained'] == ['prompt_learner.ctx_neg',
                                                           'prompt_learner.ctx_pos']
    digest, shape, dtype = record['frozen']['backbone.clip.visual.conv1.weight']
    assert isinstance(digest, str) and dtype == 'float32' and len(shape) == 4
    assert not any(n.startswith('prompt_learner') for n in record['frozen'])
    rn_model().load_state_dict(state, strict=True)


def test_digest_follows_in_place_changes():
    model = rn_model()
    name = 'backbone.clip.visual.conv1.weight'
    before = read_record(model.state_dict()['_extra_state'])['frozen'][name]
    with torch.no_grad():
        model.backbone.clip.visual.conv1.weight.add_(1.0)
    after = read_record(model.state_dict()['_extra_state'])['frozen'][name]
    assert before[0] != after[0]


def test_tools_test_refuses_a_wrong_class_count_in_one_line(tmp_path):
    """tools/test.py with a 20-class checkpoint on a 15-class model: used to warn, exit 0
    and print an mAP for untrained prompts; now one line naming both shapes."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    from test_tools import coco_options

    from mlr_plugin.datasets.demo_world import generate_demo_world
    repo = Path(__file__).parent.parent
    root = tmp_path / 'world'
    generate_demo_world(root, seed=1, num_train=4, num_val=4, num_test=4, image_size=64)
    config = str(repo / 'configs/dualcoop/coco_p30.py')
    opts = coco_options(root)
    spec = importlib.util.spec_from_file_location('tool_train', repo / 'tools/train.py')
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    train.main([config, '--work-dir', str(tmp_path / 'w20'), '--cfg-options', *opts,
                'model.prompt_learner.num_classes=20', 'train_cfg.max_epochs=1',
                'train_cfg.val_interval=5'])
    proc = subprocess.run(
        [sys.executable, str(repo / 'tools/test.py'), config, str(tmp_path / 'w20/epoch_1.pth'),
         '--work-dir', str(tmp_path / 't'), '--cfg-options', *opts,
         'model.prompt_learner.num_classes=15'],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: checkpoint entry prompt_learner.ctx_') and \
        '(20, 16, 32) but the model has (15, 16, 32)' in last, proc.stderr[-2000:]
