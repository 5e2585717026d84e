"""Models the mmpretrain way: list_models / get_model over the metafiles, inference_model,
MultiLabelInferencer by name with batches, progress and out_dir, and the model table."""
import glob
import importlib.util
import json
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
import yaml
from mmengine.runner.checkpoint import save_checkpoint

from mlr_plugin.apis import (MultiLabelInferencer, get_model, inference_model, list_models,
                             model_info)
from mlr_plugin.apis.model_zoo import model_table, paper_map
from mlr_plugin.visualization import draw_topk
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
P10 = 'dualcoop_demo-rn_demo-world-p10'  # class-specific contexts, 20 classes
HANDCRAFTED = 'dualcoop-handcrafted_demo-rn_demo-world-zsl'
NAMES = ['red square', 'blue circle', 'green triangle', 'yellow star']


def metafile_names():
    """Every Models Name in configs/*/metafile.yml, read plainly."""
    names = []
    for path in glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')):
        with open(path) as f:
            names += [m['Name'] for m in yaml.safe_load(f).get('Models') or []]
    return names


def picture(seed=0, size=(128, 128)):
    """A gray image with a few coloured blocks (H, W, 3) uint8 RGB."""
    rng = np.random.RandomState(seed)
    image = np.full(size + (3,), 110, np.uint8)
    for colour in ((220, 30, 30), (30, 30, 220), (30, 200, 30)):
        y, x = rng.randint(0, size[0] - 40), rng.randint(0, size[1] - 40)
        image[y:y + 36, x:x + 36] = colour
    return image


def plain_forward(model, image, names):
    """Reference: CLIP mean/std by hand, then the head's forward on the features."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    x = (x - 255 * torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1)) / \
        (255 * torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1))
    model.set_class_names(names)
    with torch.no_grad():
        feats = model.extract_feat(x[None])
        out = model.head(feats, model.encode_classes())
    h, w = feats['grid']
    attention = out['attention'][0]
    maps = np.zeros((len(names), h, w), np.float32)
    for k in range(len(names)):  # the last h*w locations, row-major
        for r in range(h):
            for c in range(w):
                maps[k, r, c] = attention[k, attention.shape[1] - h * w + r * w + c]
    return model.predict(x[None])[0].pred_score.numpy(), maps


# ------------------------------------------------------------------ names
def test_list_models_covers_every_metafile_entry():
    expected = metafile_names()
    assert len(expected) == len(set(expected)) > 10
    assert list_models() == sorted(expected)
    assert list_models('demo') == sorted(n for n in expected if 'demo' in n)
    assert list_models('dualcoop_rn101_coco-p?0') == sorted(
        n for n in expected if re.fullmatch(r'dualcoop_rn101_coco-p\d0', n))
    assert list_models('no-such-model') == []
    for name in expected:
        assert osp.isfile(model_info(name)['Config'])


def test_unknown_name_is_a_one_line_error_with_close_matches():
    with pytest.raises(ValueError) as error:
        get_model('dualcop_demo-rn_demo-world-p10')
    message = str(error.value)
    assert '\n' not in message
    assert "unknown model name 'dualcop_demo-rn_demo-world-p10'" in message
    assert f"did you mean '{P10}'" in message
    with pytest.raises(ValueError, match='no close match'):
        MultiLabelInferencer('zzzz', class_names=['x'])


def test_model_table_lists_every_model_once():
    table = model_table()
    lines = table.splitlines()
    assert lines[0] == '| Name | Method | Dataset | Setting | Config | Paper mAP |'
    rows = [line.split(' | ') for line in lines[2:]]
    assert sorted(row[0][2:] for row in rows) == sorted(metafile_names())
    for row in rows:
        assert len(row) == 6
        config = row[4].strip('`')
        assert osp.isfile(osp.join(REPO, config)), config
    by_name = {row[0][2:]: row for row in rows}
    assert by_name[P10][1:4] == ['DualCoOp', 'demo world (synthetic, 20 classes)',
                                 'partial labels, 10% known']
    # the command prints the same table
    spec = importlib.util.spec_from_file_location(
        'mlr_tools_model_table', osp.join(REPO, 'tools', 'analysis', 'model_table.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([]) == table
    demo = tool.main(['--pattern', 'demo'])
    assert len(demo.splitlines()) == 2 + len(list_models('demo'))


def test_model_table_reads_paper_map_from_results(tmp_path):
    folder = tmp_path / 'configs' / 'mine'
    folder.mkdir(parents=True)
    (folder / 'a.py').write_text('')
    (folder / 'metafile.yml').write_text(yaml.safe_dump(dict(
        Collections=[dict(Name='Mine')],
        Models=[dict(Name='mine_a', **{'In Collection': 'Mine'}, Config='configs/mine/a.py',
                     Metadata={'Training Data': 'COCO 2014', 'Label Setting': 'p10 | x'},
                     Results=[dict(Task='Multi-Label', Dataset='COCO 2014',
                                   Metrics=dict(mAP=78.7))])])))
    table = model_table(root=str(tmp_path / 'configs'))
    assert table.splitlines()[2] == ('| mine_a | Mine | COCO 2014 | p10 \\| x | '
                                     '`configs/mine/a.py` | 78.7 |')
    two = dict(Results=[dict(Dataset='VOC', Metrics={'mAP': 90.1}),
                        dict(Dataset='COCO', Metrics={'mAP': 80.0, 'CF1': 70})])
    assert paper_map(two) == '90.1 (VOC), 80.0 (COCO)'
    assert paper_map({}) == '-'


# ------------------------------------------------------------------ get_model
def test_get_model_builds_the_config_with_overrides():
    model = get_model(P10)
    assert not model.training
    assert model.backbone.image_size == 128 and model.prompt_learner.num_classes == 20
    assert model.head.topk is None and model._config.model.head.spatial_scale == 7.0
    changed = get_model(P10, head=dict(topk=3), **{'prompt_learner.num_classes': 5})
    assert changed.head.topk == 3 and changed.prompt_learner.num_classes == 5
    with pytest.raises(ValueError, match='lists no Weights'):
        get_model(P10, pretrained=True)


def test_get_model_loads_a_checkpoint_with_its_class_names(tmp_path):
    source = get_model(P10)
    classes = [f'class {i}' for i in range(20)]
    with torch.no_grad():
        for name in ('ctx_pos', 'ctx_neg'):
            getattr(source.prompt_learner, name).add_(1.0)
    path = str(tmp_path / 'epoch_1.pth')
    save_checkpoint(dict(state_dict=source.state_dict(),
                         meta=dict(cfg=source._config.pretty_text,
                                   dataset_meta=dict(classes=classes))), path)
    loaded = get_model(P10, pretrained=path)
    assert loaded.class_names == classes and loaded.dataset_meta == dict(classes=classes)
    for name in ('ctx_pos', 'ctx_neg'):
        assert torch.equal(getattr(loaded.prompt_learner, name),
                           getattr(source.prompt_learner, name))

    # a class-specific model: names in another order keep their own maps and scores
    image = picture(3)
    asked = classes[5:8][::-1]
    result = inference_model(loaded, image, class_names=asked)
    scores, maps = plain_forward(loaded, image, classes)
    order = [classes.index(n) for n in asked]
    np.testing.assert_allclose(result['pred_scores'], scores[order], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result['attention'], maps[order], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ inference_model
def test_inference_model_matches_a_plain_forward():
    model = get_model(HANDCRAFTED)
    image = picture(0)
    result = inference_model(model, image, class_names=NAMES, topk=2, return_vis=True)
    assert set(result) == {'pred_scores', 'class_names', 'attention', 'vis'}
    assert result['class_names'] == NAMES and model.class_names is None  # left as it was
    scores, maps = plain_forward(model, image, NAMES)
    np.testing.assert_allclose(result['pred_scores'], scores, rtol=1e-5, atol=1e-6)
    assert result['attention'].shape == (4, 4, 4)
    np.testing.assert_allclose(result['attention'], maps, rtol=1e-5, atol=1e-7)
    expected = draw_topk(image, result['pred_scores'], result['attention'], NAMES, topk=2,
                         title='image_0')
    assert np.array_equal(result['vis'], expected)

    # by name: the same numbers; without return_vis no figure
    by_name = inference_model(HANDCRAFTED, image, class_names=NAMES)
    assert set(by_name) == {'pred_scores', 'class_names', 'attention'}
    np.testing.assert_allclose(by_name['pred_scores'], result['pred_scores'], rtol=1e-6)


def test_a_head_without_attention_scores_but_cannot_draw(monkeypatch):
    model = get_model(HANDCRAFTED)
    forward = model.head.forward

    def without_attention(feats, text):
        out = dict(forward(feats, text))
        out.pop('attention')
        return out

    monkeypatch.setattr(model.head, 'forward', without_attention)
    result = inference_model(model, picture(1), class_names=NAMES)
    assert result['attention'] is None and result['pred_scores'].shape == (4,)
    with pytest.raises(ValueError, match='no attention maps'):
        inference_model(model, picture(1), class_names=NAMES, return_vis=True)


# ------------------------------------------------------------------ the inferencer
def test_inferencer_batches_shows_progress_and_writes_out_dir(tmp_path, capsys):
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f'img{i}.png'))
        assert cv2.imwrite(paths[-1], picture(i)[..., ::-1])
    inferencer = MultiLabelInferencer(HANDCRAFTED, class_names=NAMES, device='cpu')
    one_by_one = inferencer(paths, batch_size=1, show_progress=False)
    assert capsys.readouterr().err == ''
    out_dir = tmp_path / 'preds'
    batched = inferencer(paths, batch_size=2, topk=2, return_vis=True, out_dir=str(out_dir))
    assert '5/5' in capsys.readouterr().err  # mmengine's progress bar
    for a, b in zip(one_by_one, batched):
        assert a['scores'] == pytest.approx(b['scores'], rel=1e-5, abs=1e-6)
    with open(out_dir / 'predictions.json') as f:
        written = json.load(f)
    assert [row['image'] for row in written] == paths
    for row, result in zip(written, batched):
        assert row['scores'] == result['scores'] and row['labels'] == result['labels']
        assert [tuple(t) for t in row['topk']] == result['topk']
        assert np.array_equal(cv2.imread(row['vis'])[..., ::-1], result['vis'])
    assert sorted(p.name for p in (out_dir / 'vis').iterdir()) == [
        f'img{i}.png' for i in range(5)]
    # the built model it was given keeps its own class names
    model = get_model(HANDCRAFTED)
    model.set_class_names(['x', 'y'])
    MultiLabelInferencer(model, class_names=NAMES)(paths[:1])
    assert model.class_names == ['x', 'y']
    with pytest.raises(ValueError, match='batch_size must be a positive int'):
        inferencer(paths, batch_size=0)
