"""MultiLabelInferencer and tools/infer.py on a tiny random CLIP, fully offline."""
import importlib.util
import json
import os.path as osp
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import save_checkpoint
from mmpretrain.registry import MODELS

from mlr_plugin.apis import MultiLabelInferencer
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
NAMES = ['cat', 'dog', 'traffic light', 'bus']
CKPT_NAMES = ['red circle', 'blue square', 'green triangle']
MODEL = dict(type='CLIPPromptClassifier',
             backbone=dict(type='OpenCLIPBackbone', model_name='mlr-tiny-rn', pretrained=None,
                           image_size=64),
             # shared contexts: any list of names can be scored
             prompt_learner=dict(type='LearnablePrompts', prompt_names=('pos', 'neg'), n_ctx=4),
             head=dict(type='DualCoOpHead'))
PIPELINE = [dict(type='LoadImageCV2', to_rgb=True), dict(type='Resize', scale=(64, 64)),
            dict(type='PackInputs')]
CONFIG_TEXT = f"""default_scope = 'mmpretrain'
model = {MODEL!r}
test_dataloader = dict(dataset=dict(pipeline={PIPELINE!r}))
"""


@pytest.fixture
def no_default_scope(monkeypatch):
    """No mmengine default scope, as in a fresh process (other tests create one)."""
    monkeypatch.setattr(DefaultScope, '_instance_dict', OrderedDict())


@pytest.fixture
def files(tmp_path):
    """A config file, two JPEGs and one lossless PNG (sizes != 64 so Resize works)."""
    rng = np.random.RandomState(0)
    paths = dict(config=str(tmp_path / 'tiny_cfg.py'))
    with open(paths['config'], 'w') as f:
        f.write(CONFIG_TEXT)
    for name, (h, w) in [('a.jpg', (48, 80)), ('b.jpg', (96, 72)), ('c.png', (56, 40))]:
        paths[name] = str(tmp_path / name)
        assert cv2.imwrite(paths[name], (rng.rand(h, w, 3) * 255).astype(np.uint8))
    return paths


def build_source(seed=0):
    """The 'trained' model: seeded backbone, contexts moved away from their init."""
    torch.manual_seed(seed)
    model = MODELS.build(MODEL)
    with torch.no_grad():
        for name in ('ctx_pos', 'ctx_neg'):
            ctx = getattr(model.prompt_learner, name)
            ctx.add_(torch.randn(ctx.shape, generator=torch.Generator().manual_seed(9)) * 0.5)
    return model.eval()


def save_source(model, path, classes=CKPT_NAMES):
    """A checkpoint as tools/train.py writes it: trainable weights + config + names."""
    cfg = Config(dict(default_scope='mmpretrain', model=MODEL,
                      test_dataloader=dict(dataset=dict(pipeline=PIPELINE))))
    save_checkpoint(dict(state_dict=model.state_dict(),
                         meta=dict(cfg=cfg.pretty_text, dataset_meta=dict(classes=classes))),
                    path)


def plain_scores(model, path, names):
    """Reference: cv2 read -> RGB -> bilinear 64x64 -> CLIP mean/std -> model.predict."""
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()
    mean = 255 * torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1)
    std = 255 * torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)
    x = (x - mean) / std
    model.set_class_names(names)
    return model.predict(x[None])[0].pred_score


def check_result(result, names, threshold, topk):
    scores = result['scores']
    assert list(scores) == list(names)
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    ranked = sorted(names, key=lambda n: -scores[n])
    assert result['labels'] == [n for n in ranked if scores[n] > threshold]
    assert [n for n, _ in result['topk']] == ranked[:topk]
    assert all(s == scores[n] for n, s in result['topk'])


def test_config_inferencer_scores_every_name(files):
    torch.manual_seed(0)
    inferencer = MultiLabelInferencer(files['config'], class_names=NAMES, device='cpu')
    assert inferencer.class_names == NAMES
    images = [files['a.jpg'], files['b.jpg'], files['c.png']]
    results = inferencer(images, topk=2, batch_size=2)  # two batches
    assert len(results) == 3
    for result in results:
        check_result(result, NAMES, threshold=0.5, topk=2)
    # a threshold inside the score range splits the labels
    values = sorted(results[0]['scores'].values())
    middle = (values[1] + values[2]) / 2
    single = inferencer(files['a.jpg'], threshold=middle, topk=10)
    assert len(single) == 1
    check_result(single[0], NAMES, threshold=middle, topk=10)
    # batching does not change scores (beyond float rounding of batched convolutions)
    assert single[0]['scores'] == pytest.approx(results[0]['scores'], rel=1e-5, abs=1e-6)
    assert len(single[0]['labels']) == 2 and len(single[0]['topk']) == len(NAMES)
    # the inferencer's scores are the model's on plainly preprocessed pixels
    expected = plain_scores(inferencer.model, files['b.jpg'], NAMES)
    got = torch.tensor([results[1]['scores'][n] for n in NAMES])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # other names per call
    other = inferencer(files['c.png'], class_names=['kite', 'umbrella'])[0]
    assert list(other['scores']) == ['kite', 'umbrella']


def test_array_input_matches_file_input(files):
    torch.manual_seed(0)
    inferencer = MultiLabelInferencer(files['config'], class_names=NAMES, device='cpu')
    rgb = cv2.imread(files['c.png'])[..., ::-1]  # lossless PNG: same pixels as the file
    from_file, from_array = inferencer([files['c.png'], rgb])
    assert from_array['scores'] == from_file['scores']
    assert from_array['labels'] == from_file['labels']
    with pytest.raises(TypeError, match='RGB uint8 arrays'):
        inferencer([rgb[..., 0]])


def test_checkpoint_alone_restores_model_and_names(files, tmp_path, no_default_scope):
    source = build_source(seed=3)
    path = str(tmp_path / 'epoch_1.pth')
    save_source(source, path)
    expected = plain_scores(source, files['a.jpg'], CKPT_NAMES)

    torch.manual_seed(3)  # the same random "pretrained" backbone as the source
    inferencer = MultiLabelInferencer(path, device='cpu')
    assert inferencer.class_names == CKPT_NAMES
    result = inferencer(files['a.jpg'])[0]
    check_result(result, CKPT_NAMES, threshold=0.5, topk=5)
    got = torch.tensor([result['scores'][n] for n in CKPT_NAMES])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for name in ('ctx_pos', 'ctx_neg'):
        assert torch.equal(getattr(inferencer.model.prompt_learner, name),
                           getattr(source.prompt_learner, name))

    # config + checkpoint: the checkpoint's names; explicit names win over them
    torch.manual_seed(3)
    pair = MultiLabelInferencer(files['config'], checkpoint=path, device='cpu')
    assert pair.class_names == CKPT_NAMES
    assert pair(files['a.jpg'])[0]['scores'] == result['scores']
    torch.manual_seed(3)
    named = MultiLabelInferencer(path, class_names=['kite'], device='cpu')
    assert list(named(files['a.jpg'])[0]['scores']) == ['kite']


def test_errors_name_what_is_wrong(files, tmp_path):
    torch.manual_seed(0)
    inferencer = MultiLabelInferencer(files['config'], class_names=NAMES, device='cpu')
    missing = str(tmp_path / 'no_such_image.jpg')
    with pytest.raises(FileNotFoundError, match='no_such_image.jpg'):
        inferencer([files['a.jpg'], missing])
    with pytest.raises(ValueError, match='no class names'):
        MultiLabelInferencer(files['config'], device='cpu')  # config without names
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        MultiLabelInferencer(str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError, match='nope_cfg.py'):
        MultiLabelInferencer(str(tmp_path / 'nope_cfg.py'))
    bare = str(tmp_path / 'bare.pth')  # weights only, no config inside
    save_checkpoint(dict(state_dict=build_source().state_dict()), bare)
    with pytest.raises(ValueError, match='holds no config'):
        MultiLabelInferencer(bare)


def load_infer_tool():
    spec = importlib.util.spec_from_file_location('mlr_tools_infer',
                                                  osp.join(REPO, 'tools', 'infer.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_infer_tool_prints_and_writes_json(files, tmp_path, capsys):
    tool = load_infer_tool()
    source = build_source(seed=5)
    ckpt = str(tmp_path / 'best.pth')
    save_source(source, ckpt)
    out = str(tmp_path / 'preds' / 'out.json')
    images = [files['c.png'], files['b.jpg']]

    torch.manual_seed(5)
    returned = tool.main([ckpt, *images, '--topk', '2', '--out', out, '--device', 'cpu'])
    printed = capsys.readouterr().out
    for path in images:
        assert path in printed
    assert f'wrote {out}' in printed
    with open(out) as f:
        written = json.load(f)
    assert [row['image'] for row in written] == images
    for row, result in zip(written, returned):
        assert list(row['scores']) == CKPT_NAMES and row['scores'] == result['scores']
        assert len(row['topk']) == 2 and row['labels'] == result['labels']
    expected = plain_scores(source, files['b.jpg'], CKPT_NAMES)
    torch.testing.assert_close(torch.tensor([written[1]['scores'][n] for n in CKPT_NAMES]),
                               expected, rtol=1e-5, atol=1e-6)

    # a config plus names from a file
    names_file = str(tmp_path / 'names.txt')
    with open(names_file, 'w') as f:
        f.write('kite\n\numbrella\n')
    torch.manual_seed(0)
    results = tool.main([files['config'], files['a.jpg'], '--classes-file', names_file,
                         '--threshold', '0.0'])
    assert list(results[0]['scores']) == ['kite', 'umbrella']
    assert sorted(results[0]['labels']) == ['kite', 'umbrella']


# ------------------------------------------------------------------ class names
CLASS_SPECIFIC = dict(MODEL, prompt_learner=dict(
    type='LearnablePrompts', prompt_names=('pos', 'neg'), n_ctx=4, class_specific=True,
    num_classes=len(CKPT_NAMES)))


def save_class_specific(path, seed=7):
    """A trained class-specific model (one context per class) and its checkpoint."""
    torch.manual_seed(seed)
    model = MODELS.build(CLASS_SPECIFIC)
    with torch.no_grad():
        for name in ('ctx_pos', 'ctx_neg'):
            ctx = getattr(model.prompt_learner, name)
            ctx.add_(torch.randn(ctx.shape, generator=torch.Generator().manual_seed(4)))
    cfg = Config(dict(default_scope='mmpretrain', model=CLASS_SPECIFIC,
                      test_dataloader=dict(dataset=dict(pipeline=PIPELINE))))
    save_checkpoint(dict(state_dict=model.state_dict(),
                         meta=dict(cfg=cfg.pretty_text,
                                   dataset_meta=dict(classes=CKPT_NAMES))), path)
    return model.eval()


def test_class_specific_model_matches_names_to_its_trained_classes(files, tmp_path):
    """Names in another order (or a subset) score each class with its own context: the
    model scores in the trained order, results come in the order asked for."""
    path = str(tmp_path / 'class_specific.pth')
    source = save_class_specific(path)
    trained = dict(zip(CKPT_NAMES, plain_scores(source, files['a.jpg'], CKPT_NAMES).tolist()))
    assert len(set(trained.values())) == 3  # distinct scores: a swap would show

    torch.manual_seed(7)
    inferencer = MultiLabelInferencer(path, device='cpu')
    reordered = CKPT_NAMES[::-1]
    result = inferencer(files['a.jpg'], class_names=reordered)[0]
    assert list(result['scores']) == reordered
    for name in reordered:
        assert result['scores'][name] == pytest.approx(trained[name], rel=1e-5, abs=1e-6)
    check_result(result, reordered, threshold=0.5, topk=5)
    subset = inferencer(files['a.jpg'], class_names=['green triangle'])[0]
    assert subset['scores']['green triangle'] == pytest.approx(trained['green triangle'],
                                                                rel=1e-5, abs=1e-6)
    torch.manual_seed(7)
    given = MultiLabelInferencer(path, class_names=reordered, device='cpu')
    assert given(files['a.jpg'])[0]['scores'] == pytest.approx(result['scores'])


def test_class_specific_model_rejects_names_it_was_not_trained_on(files, tmp_path):
    path = str(tmp_path / 'class_specific.pth')
    save_class_specific(path)
    torch.manual_seed(7)
    inferencer = MultiLabelInferencer(path, device='cpu')
    with pytest.raises(ValueError, match="'blue sqaure' \\(did you mean 'blue square'\\?\\)"):
        inferencer(files['a.jpg'], class_names=['red circle', 'blue sqaure',
                                                'green triangle'])
    with pytest.raises(ValueError, match="'purple hexagon' \\(no close match\\)"):
        inferencer(files['a.jpg'], class_names=['purple hexagon'])
    torch.manual_seed(7)
    with pytest.raises(ValueError, match='trained on'):  # at construction as well
        MultiLabelInferencer(path, class_names=['red circel'], device='cpu')


@pytest.mark.parametrize('names, message', [
    (['red circle', ''], r'class_names\[1\] is an empty name'),
    (['red circle', '  '], r'class_names\[1\] is an empty name'),
    (['red circle', 'red circle'], "'red circle' more than once"),
    ([], 'class_names is empty'),
])
def test_every_model_rejects_empty_and_repeated_names(files, tmp_path, names, message):
    path = str(tmp_path / 'class_specific.pth')
    save_class_specific(path)
    torch.manual_seed(7)
    class_specific = MultiLabelInferencer(path, device='cpu')
    torch.manual_seed(0)
    shared = MultiLabelInferencer(files['config'], class_names=NAMES, device='cpu')
    for inferencer in (class_specific, shared):
        with pytest.raises(ValueError, match=message):
            inferencer(files['a.jpg'], class_names=names)
    with pytest.raises(ValueError, match=message):
        MultiLabelInferencer(files['config'], class_names=names, device='cpu')
    # shared contexts score any new name
    assert list(shared(files['a.jpg'], class_names=['purple hexagon'])[0]['scores']) == \
        ['purple hexagon']
