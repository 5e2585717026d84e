"""Attention heatmaps: maps sit where the demo world drew the objects; drawing, the
inferencer's pictures, tools/visualize.py and tools/test.py --show-dir."""
import importlib.util
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmpretrain.registry import DATASETS

from demo_helpers import build_model, train_contexts
from mlr_plugin.visualization import (attention_to_maps, draw_class_heatmaps, draw_topk,
                                      overlay_heatmap)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
HANDCRAFTED_CONFIG = osp.join(REPO, 'configs', 'demo', 'zeroshot_handcrafted.py')


# ------------------------------------------------------------------ maps on the demo world
def covered_cells(boxes, grid, size):
    """(h, w) bool: the grid cells each COCO box [x, y, w, h] overlaps (plain loops)."""
    h, w = grid
    H, W = size
    cells = np.zeros((h, w), bool)
    for x, y, bw, bh in boxes:
        for r in range(h):
            for c in range(w):
                top, left = r * H / h, c * W / w
                bottom, right = top + H / h, left + W / w
                if min(bottom, y + bh) > max(top, y) and min(right, x + bw) > max(left, x):
                    cells[r, c] = True
    return cells


def boxes_by_image(root):
    """{file name: {class name: [boxes]}} of the test split's COCO instances."""
    with open(osp.join(root, 'annotations', 'instances_test.json')) as f:
        coco = json.load(f)
    names = {c['id']: c['name'] for c in coco['categories']}
    files = {im['id']: im['file_name'] for im in coco['images']}
    out = {}
    for ann in coco['annotations']:
        out.setdefault(files[ann['image_id']], {}).setdefault(
            names[ann['category_id']], []).append(ann['bbox'])
    return out


def test_trained_attention_sits_on_the_objects(demo_features):
    """DualCoOp contexts trained briefly (100 steps, all labels): for every test image and
    every class in it, the argmax cell of that class's attention map falls on a cell one
    of the class's boxes covers far more often than a random cell does (chance: the
    fraction of the grid the boxes cover). Controls: the map read transposed (a wrong
    reshape) drops towards chance, and in images with several classes the argmax rarely
    lands on another class's object only (the maps are class-specific).

    Measured (demo world seed 7, 500 test images, 4 x 4 grid, 1238 image-class pairs):
    hit 0.939 vs chance 0.246, transposed 0.405, another class's object only 0.062.
    The CLIP's dense features localise the class name already: random contexts give
    0.942, hand-crafted prompts 0.922; training moves the scores, not the places.
    Asserted: hit >= 0.85 and >= 3 x chance, transposed <= hit - 0.3, other <= 0.15."""
    train, test = demo_features['train'], demo_features['test']
    classes = list(train['classes'])
    model = build_model(dict(type='LearnablePrompts', prompt_names=('pos', 'neg'), n_ctx=16,
                             class_specific=True, num_classes=len(classes)), classes)
    train_contexts(model, train['feats'], train['labels'], steps=100, lr=0.03)
    with torch.no_grad():
        attention = model.head(test['feats'], model.encode_classes())['attention']
    grid = model.backbone.feat_grid

    dataset = DATASETS.build(dict(
        type='CocoMultiLabel', data_root=demo_features['root'],
        ann_file='annotations/instances_test.json', data_prefix=dict(img_path='test'),
        pipeline=[]))
    boxes = boxes_by_image(demo_features['root'])
    size = tuple(model.backbone._input_hw)
    hits, chance, transposed, other_only = [], [], [], []
    for i in range(len(dataset)):
        name = osp.basename(dataset.get_data_info(i)['img_path'])
        maps = attention_to_maps(attention[i].numpy(), grid)
        present = boxes.get(name, {})
        for cls, cls_boxes in present.items():
            cells = covered_cells(cls_boxes, grid, size)
            heat = maps[classes.index(cls)]
            r, c = np.unravel_index(np.argmax(heat), grid)
            hits.append(cells[r, c])
            chance.append(cells.mean())
            rt, ct = np.unravel_index(np.argmax(heat.T), grid)
            transposed.append(cells[rt, ct])
            others = [b for other, bs in present.items() if other != cls for b in bs]
            if others:
                other_only.append(covered_cells(others, grid, size)[r, c] and not cells[r, c])
    hit_rate, chance_rate = float(np.mean(hits)), float(np.mean(chance))
    print(f'attention argmax on the object: {hit_rate:.3f} vs chance {chance_rate:.3f}, '
          f'transposed {np.mean(transposed):.3f}, on another class only '
          f'{np.mean(other_only):.3f} ({len(hits)} image-class pairs)')
    assert len(hits) > 500 and len(other_only) > 300
    assert hit_rate >= 0.85
    assert hit_rate >= 3.0 * chance_rate
    assert np.mean(transposed) <= hit_rate - 0.3
    assert np.mean(other_only) <= 0.15


def test_covered_cells_by_hand():
    # 128 px image, 4 x 4 grid of 32 px cells; box x 30..70, y 64..96 touches columns
    # 0 (30..32), 1 and 2 (64..70) of row 2 only (96 is the next row's edge)
    cells = covered_cells([[30, 64, 40, 32]], (4, 4), (128, 128))
    expected = np.zeros((4, 4), bool)
    expected[2, 0:3] = True
    assert (cells == expected).all()


# ------------------------------------------------------------------ maps and drawing
def test_attention_to_maps_drops_prefix_tokens_and_keeps_row_major_order():
    C, P, h, w = 3, 2, 2, 3
    attention = np.arange(C * (P + h * w), dtype=np.float32).reshape(C, P + h * w)
    maps = attention_to_maps(attention, (h, w))
    for k in range(C):
        for r in range(h):
            for c in range(w):
                assert maps[k, r, c] == attention[k, P + r * w + c]
    with pytest.raises(ValueError, match='grid 4x4'):
        attention_to_maps(attention, (4, 4))


def test_overlay_puts_a_cell_on_its_block_of_the_image():
    """A one-hot map at grid cell (r, c) colours hottest the image block that cell
    covers (the backbone's stride), whatever the image's size."""
    image = np.full((96, 160, 3), 128, np.uint8)
    for r, c in [(0, 0), (1, 3), (2, 4)]:
        heat = np.zeros((3, 5), np.float32)
        heat[r, c] = 1.0
        out = overlay_heatmap(image, heat, alpha=1.0, cmap='gray')
        y, x = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
        assert r * 32 <= y < (r + 1) * 32 and c * 32 <= x < (c + 1) * 32
    # a flat map has no location: nothing is hot
    flat = overlay_heatmap(image, np.ones((3, 5)), alpha=1.0, cmap='gray')
    assert flat.max() == 0


def test_draw_class_heatmaps_lays_out_panels_and_checks_inputs():
    image = np.zeros((64, 64, 3), np.uint8)
    maps = np.random.RandomState(0).rand(5, 2, 2)
    names = [f'class {i}' for i in range(5)]
    one_row = draw_class_heatmaps(image, maps[:3], names[:3], [0.9, 0.5, 0.1], ncols=4)
    two_rows = draw_class_heatmaps(image, maps, names, [0.9, 0.8, 0.5, 0.3, 0.1], ncols=3)
    assert one_row.dtype == np.uint8 and one_row.ndim == 3 and one_row.shape[2] == 3
    assert one_row.shape[1] == two_rows.shape[1] * 4 // 3  # 4 vs 3 panels a row
    assert two_rows.shape[0] > 1.8 * one_row.shape[0]  # 6 panels in 3 columns
    with pytest.raises(ValueError, match='one entry per class'):
        draw_class_heatmaps(image, maps, names[:2], [0.1, 0.2])
    with pytest.raises(ValueError, match='uint8 RGB'):
        draw_class_heatmaps(image.astype(np.float32), maps, names, [0.1] * 5)
    with pytest.raises(ValueError, match='ncols'):
        draw_class_heatmaps(image, maps, names, [0.1] * 5, ncols=0)


def test_draw_topk_picks_the_best_classes():
    image = np.zeros((64, 64, 3), np.uint8)
    maps = np.random.RandomState(1).rand(4, 2, 2)
    scores = np.array([0.2, 0.9, 0.5, 0.7])
    names = ['a', 'b', 'c', 'd']
    got = draw_topk(image, scores, maps, names, topk=2)
    expected = draw_class_heatmaps(image, maps[[1, 3]], ['b', 'd'], [0.9, 0.7], ncols=3)
    assert np.array_equal(got, expected)
    with pytest.raises(ValueError, match='no attention maps'):
        draw_topk(image, scores, None, names, topk=2)


# ------------------------------------------------------------------ tools
def _load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'mlr_tools_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_visualize_tool_writes_one_figure_per_image(demo_features, tmp_path, capsys):
    root = demo_features['root']
    classes = list(demo_features['test']['classes'])
    images = [osp.join(root, 'test', f'test_00000{i}.jpg') for i in range(3)]
    out = tmp_path / 'vis'
    written = _load_tool('visualize').main(
        [HANDCRAFTED_CONFIG, *images, '--classes', *classes,
         '--topk', '3', '--out', str(out), '--device', 'cpu'])
    assert written == [str(out / f'test_00000{i}.png') for i in range(3)]
    printed = capsys.readouterr().out
    from mlr_plugin.apis import MultiLabelInferencer
    inferencer = MultiLabelInferencer(HANDCRAFTED_CONFIG,
                                      class_names=classes, device='cpu')
    expected = inferencer(images, topk=3, return_vis=True)
    for path, png, result in zip(images, written, expected):
        assert path in printed
        # the tool's PNG is the inferencer's picture, pixel for pixel
        assert np.array_equal(cv2.imread(png)[..., ::-1], result['vis'])
    assert sorted(p.name for p in out.iterdir()) == [f'test_00000{i}.png' for i in range(3)]


def test_test_tool_show_dir_writes_a_figure_per_test_image(demo_features, tmp_path):
    root = demo_features['root']
    show = tmp_path / 'show'
    _load_tool('test').main([
        HANDCRAFTED_CONFIG, '--show-dir', str(show),
        '--work-dir', str(tmp_path / 'work'), '--amp', 'off', '--cfg-options',
        f'test_dataloader.dataset.data_root={root}', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', 'test_dataloader.batch_size=100',
        'test_dataloader.dataset.indices=6'])
    figures = sorted(p.name for p in show.iterdir())
    assert figures == [f'test_00000{i}.png' for i in range(6)]
    picture = cv2.imread(str(show / 'test_000000.png'))
    assert picture.shape[0] > 128 and picture.shape[1] > 5 * 128  # image + 4 panels
