"""The demo world generator (COCO format, deterministic) and the shipped tiny CLIP."""
import hashlib
import json
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

import mlr_plugin
from mlr_plugin.datasets import demo_world
from mlr_plugin.datasets.demo_world import (DEMO_CLASSES, DEMO_SEEN, DEMO_UNSEEN,
                                            generate_demo_world, join_objects, main)

DEMO_WEIGHTS = Path(mlr_plugin.__file__).parent / 'demo' / 'mlr-demo-rn.safetensors'
CLASS_PATTERN = re.compile('|'.join(re.escape(name) for name in DEMO_CLASSES))


def _tree(root: Path) -> dict:
    """Relative path -> bytes of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


def _image_classes(instances: dict) -> dict:
    """image id -> list of class names of its annotations (with repeats, if any)."""
    names = {c['id']: c['name'] for c in instances['categories']}
    out = {img['id']: [] for img in instances['images']}
    for ann in instances['annotations']:
        out[ann['image_id']].append(names[ann['category_id']])
    return out


@pytest.fixture(scope='module')
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo') / 'world'
    return generate_demo_world(root, seed=3, num_train=8, num_val=3, num_test=2,
                               image_size=64)


def test_classes_and_zero_shot_split():
    assert len(DEMO_CLASSES) >= 16 and len(set(DEMO_CLASSES)) == len(DEMO_CLASSES)
    assert all(re.fullmatch(r'[a-z]+ [a-z]+', name) for name in DEMO_CLASSES)
    assert not set(DEMO_SEEN) & set(DEMO_UNSEEN)
    assert set(DEMO_SEEN) | set(DEMO_UNSEEN) == set(DEMO_CLASSES)
    assert (len(DEMO_SEEN), len(DEMO_UNSEEN)) == (15, 5)
    seen_words = {word for name in DEMO_SEEN for word in name.split()}
    for name in DEMO_UNSEEN:  # zero-shot composes known colours and shapes
        colour, shape = name.split()
        assert colour in seen_words and shape in seen_words, name


def test_join_objects_hand_examples():
    assert join_objects(['red circle']) == 'a red circle'
    assert join_objects(['red circle', 'blue star']) == 'a red circle and a blue star'
    assert join_objects(['red circle', 'blue star', 'green cross']) == \
        'a red circle, a blue star and a green cross'


def test_generator_is_deterministic(tiny_world, tmp_path):
    again = generate_demo_world(tmp_path / 'again', seed=3, num_train=8, num_val=3,
                                num_test=2, image_size=64)
    first, second = _tree(tiny_world), _tree(again)
    assert len(first) == 6 + 13 + 1  # 6 JSON files + 13 JPEGs + manifest.json
    assert first == second
    other = _tree(generate_demo_world(tmp_path / 'other', seed=4, num_train=8, num_val=3,
                                      num_test=2, image_size=64))
    assert other['train/train_000000.jpg'] != first['train/train_000000.jpg']


def test_small_world_is_a_prefix_of_a_bigger_one(tiny_world, tmp_path):
    # Image i depends on (seed, split, i) only, not on the split sizes.
    small = generate_demo_world(tmp_path / 'small', seed=3, num_train=2, num_val=1,
                                num_test=0, image_size=64)
    for rel in ('train/train_000000.jpg', 'train/train_000001.jpg', 'val/val_000000.jpg'):
        assert (small / rel).read_bytes() == (tiny_world / rel).read_bytes()


def test_valid_coco_instances(tiny_world):
    from pycocotools.coco import COCO
    for split, num in (('train', 8), ('val', 3), ('test', 2)):
        coco = COCO(str(tiny_world / 'annotations' / f'instances_{split}.json'))
        cats = coco.loadCats(coco.getCatIds())
        assert [c['name'] for c in sorted(cats, key=lambda c: c['id'])] == list(DEMO_CLASSES)
        assert len(coco.getImgIds()) == num
        for img in coco.loadImgs(coco.getImgIds()):
            pixels = cv2.imread(str(tiny_world / split / img['file_name']))
            assert pixels.shape == (img['height'], img['width'], 3) == (64, 64, 3)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
            cat_ids = [a['category_id'] for a in anns]
            assert 1 <= len(cat_ids) <= 4 and len(set(cat_ids)) == len(cat_ids)
            for ann in anns:
                x, y, w, h = ann['bbox']
                assert ann['iscrowd'] == 0 and ann['area'] > 0
                assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64
                assert ann['area'] <= w * h  # visible pixels fit in their box
                # The box is the extent of the visible region's outline (independent
                # of how the box was computed: from the contour points here).
                pts = np.concatenate([np.reshape(p, (-1, 2)) for p in ann['segmentation']])
                assert (pts[:, 0].min(), pts[:, 1].min()) == (x, y)
                assert (pts[:, 0].max() + 1, pts[:, 1].max() + 1) == (x + w, y + h)
                mask = coco.annToMask(ann)
                assert mask.shape == (64, 64) and mask.sum() > 0
    # Image ids are unique across splits, as in COCO.
    ids = [img['id'] for split in ('train', 'val', 'test') for img in json.loads(
        (tiny_world / 'annotations' / f'instances_{split}.json').read_text())['images']]
    assert len(set(ids)) == len(ids)


def test_captions_name_exactly_the_image_classes(tiny_world):
    from pycocotools.coco import COCO
    for split in ('train', 'val', 'test'):
        instances = json.loads(
            (tiny_world / 'annotations' / f'instances_{split}.json').read_text())
        classes = _image_classes(instances)
        caps = COCO(str(tiny_world / 'annotations' / f'captions_{split}.json'))
        assert sorted(caps.getImgIds()) == sorted(classes)
        for image_id, names in classes.items():
            captions = [a['caption'] for a in caps.loadAnns(caps.getAnnIds(imgIds=image_id))]
            assert len(captions) == demo_world.CAPTIONS_PER_IMAGE
            for caption in captions:
                mentioned = CLASS_PATTERN.findall(caption)
                assert sorted(mentioned) == sorted(names), (caption, names)


def test_bad_arguments_and_existing_output(tmp_path):
    with pytest.raises(ValueError, match='num_train'):
        generate_demo_world(tmp_path / 'a', num_train=-1)
    with pytest.raises(ValueError, match='image_size'):
        generate_demo_world(tmp_path / 'a', image_size=16)
    out = generate_demo_world(tmp_path / 'w', seed=0, num_train=1, num_val=0, num_test=0,
                              image_size=32)
    before = (out / 'train' / 'train_000000.jpg').read_bytes()
    # the same world again: nothing to do (re-runs are no-ops, see the CLI test)
    assert generate_demo_world(out, num_train=1, num_val=0, num_test=0,
                               image_size=32) == out
    assert (out / 'train' / 'train_000000.jpg').read_bytes() == before
    generate_demo_world(out, seed=1, num_train=1, num_val=0, num_test=0, image_size=32,
                        overwrite=True)
    assert (out / 'train' / 'train_000000.jpg').read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['w']  # no temp folders left


def test_failed_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_draw(rng, image_size, style):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError('disk full')
        return draw(rng, image_size, style)

    draw = demo_world.draw_demo_image
    monkeypatch.setattr(demo_world, 'draw_demo_image', failing_draw)
    with pytest.raises(RuntimeError, match='disk full'):
        generate_demo_world(tmp_path / 'w', num_train=5, num_val=0, num_test=0,
                            image_size=32)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    main(['--out', str(tmp_path / 'cli'), '--seed', '0', '--num-train', '2', '--num-val',
          '1', '--num-test', '1', '--image-size', '32'])
    assert 'demo world written' in capsys.readouterr().out
    assert len(list((tmp_path / 'cli' / 'train').glob('*.jpg'))) == 2


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}


def test_cli_rerun_is_a_no_op_and_regenerates_what_differs(tmp_path, capsys):
    """The README's first command may run twice: the second time it checks the manifest
    and the file count and writes nothing; a changed size or a lost image regenerates."""
    out = tmp_path / 'world'
    args = ['--out', str(out), '--seed', '2', '--num-train', '3', '--num-val', '1',
            '--num-test', '1', '--image-size', '32']
    main(args)
    assert 'demo world written' in capsys.readouterr().out
    manifest = json.loads((out / 'manifest.json').read_text())
    assert (manifest['seed'], manifest['num_train'], manifest['num_val'],
            manifest['num_test'], manifest['image_size']) == (2, 3, 1, 1, 32)
    assert manifest['file_count'] == 6 + 5  # everything but the manifest itself
    before = _mtimes(out)

    start = time.perf_counter()
    main(args)  # before: FileExistsError
    elapsed = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert printed.count('\n') == 1
    assert 'already complete' in printed and 'nothing to do' in printed
    assert elapsed < 1.0 and _mtimes(out) == before  # nothing rewritten

    main([*args[:-1], '48'])  # another image size: a different world
    assert 'different' in capsys.readouterr().out
    assert cv2.imread(str(out / 'train' / 'train_000000.jpg')).shape == (48, 48, 3)
    assert json.loads((out / 'manifest.json').read_text())['image_size'] == 48

    lost = out / 'val' / 'val_000000.jpg'
    lost.unlink()
    main([*args[:-1], '48'])
    assert 'incomplete' in capsys.readouterr().out and lost.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # no temp left


def test_an_unrelated_folder_is_never_replaced(tmp_path):
    folder = tmp_path / 'mine'
    folder.mkdir()
    (folder / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='is not a demo world'):
        generate_demo_world(folder, seed=0, num_train=1, num_val=0, num_test=0,
                            image_size=32)
    assert (folder / 'notes.txt').read_text() == 'keep me'


def test_a_kill_while_generating_leaves_no_world_that_looks_complete(tmp_path, monkeypatch):
    """Killed (here: an error) before the manifest is written: no out_dir at all; an old
    world being replaced stays as it was."""
    out = tmp_path / 'world'
    small = dict(seed=0, num_train=2, num_val=0, num_test=0, image_size=32)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_world, 'write_json_atomic', killed)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_world(out, **small)
    assert not out.exists() and not list(tmp_path.iterdir())
    monkeypatch.undo()
    generate_demo_world(out, **small)
    before = _tree(out)
    monkeypatch.setattr(demo_world, 'write_json_atomic', killed)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_world(out, **dict(small, num_train=3))
    assert _tree(out) == before


# ------------------------------------------------------------------ the shipped tiny CLIP
def test_shipped_weights_and_card():
    from safetensors.torch import load_file
    assert DEMO_WEIGHTS.is_file(), (
        f'{DEMO_WEIGHTS} is missing: run python tools/demo/train_tiny_clip.py')
    state = load_file(str(DEMO_WEIGHTS))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    card = json.loads(DEMO_WEIGHTS.with_suffix('.json').read_text())
    assert card['sha256'] == hashlib.sha256(DEMO_WEIGHTS.read_bytes()).hexdigest()
    assert card['model'] == 'mlr-demo-rn'


def test_shipped_clip_ranks_matching_text_far_above_chance(tmp_path):
    """40 fresh images (a seed the CLIP never saw), thresholds:

    - image->text top-1 among the 40 images' captions >= 5x chance (5/40); a hit is a
      top caption that names exactly the image's classes;
    - mean per-class zero-shot AP ("a photo of a {c}.") >= mean positive rate + 0.2.
    """
    import open_clip
    assert DEMO_WEIGHTS.is_file(), (
        f'{DEMO_WEIGHTS} is missing: run python tools/demo/train_tiny_clip.py')
    model = open_clip.create_model('mlr-demo-rn', pretrained=str(DEMO_WEIGHTS)).eval()
    tokenizer = open_clip.get_tokenizer('mlr-demo-rn')

    root = generate_demo_world(tmp_path / 'fresh', seed=12345, num_train=40, num_val=0,
                               num_test=0, image_size=128)
    instances = json.loads((root / 'annotations' / 'instances_train.json').read_text())
    classes = _image_classes(instances)
    captions = json.loads((root / 'annotations' / 'captions_train.json').read_text())
    first_caption = {}
    for ann in sorted(captions['annotations'], key=lambda a: a['id']):
        first_caption.setdefault(ann['image_id'], ann['caption'])
    ids = [img['id'] for img in instances['images']]
    pixels = np.stack([cv2.imread(str(root / 'train' / img['file_name']))[:, :, ::-1]
                       for img in instances['images']])
    x = torch.from_numpy(pixels.copy()).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        img = model.encode_image((x - mean) / std, normalize=True)
        cap = model.encode_text(tokenizer([first_caption[i] for i in ids]), normalize=True)
        cls = model.encode_text(tokenizer([f'a photo of a {c}.' for c in DEMO_CLASSES]),
                                normalize=True)

    top = (img @ cap.T).argmax(dim=1).tolist()
    hits = [sorted(classes[ids[j]]) == sorted(classes[ids[i]]) for i, j in enumerate(top)]
    chance = 1 / len(ids)
    assert np.mean(hits) >= 5 * chance, f'image->text top-1 {np.mean(hits):.3f}'

    labels = np.array([[c in classes[i] for c in DEMO_CLASSES] for i in ids], float)
    scores = (img @ cls.T).numpy()
    present = labels.sum(0) > 0
    aps = [average_precision_score(labels[:, c], scores[:, c]) for c in np.flatnonzero(present)]
    positive_rate = labels[:, present].mean(0).mean()
    assert np.mean(aps) >= positive_rate + 0.2, (np.mean(aps), positive_rate)


# ------------------------------------------------ the training / evaluation helpers
def _load_tool(name):
    """Import tools/demo/<name>.py (tools/ is not a package)."""
    import importlib.util
    import sys
    tool_dir = Path(__file__).resolve().parents[1] / 'tools' / 'demo'
    sys.path.insert(0, str(tool_dir))
    try:
        spec = importlib.util.spec_from_file_location(f'_demo_{name}', tool_dir / f'{name}.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(tool_dir))
    return module


def test_multi_positive_loss_is_clip_loss_with_one_positive_each():
    import torch.nn.functional as F
    train = _load_tool('train_tiny_clip')
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    scale = torch.tensor(2.0)
    logits = scale.exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    target = torch.arange(5)
    expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    got = train.multi_positive_clip_loss(img, txt, torch.eye(5, dtype=torch.bool), scale)
    assert torch.allclose(got, expected, atol=1e-6)


def test_multi_positive_loss_against_a_python_loop():
    import math
    train = _load_tool('train_tiny_clip')
    img = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])  # 3 texts, unit norm
    positive = torch.tensor([[True, False, True], [False, True, True]])  # text 2 matches both
    logit_scale = torch.tensor(math.log(3.0))
    sim = [[3.0 * sum(a * b for a, b in zip(i, t)) for t in txt.tolist()] for i in img.tolist()]
    i2t = 0.0
    for i in range(2):
        pos = [t for t in range(3) if positive[i, t]]
        log_z = math.log(sum(math.exp(s) for s in sim[i]))
        i2t += -sum(sim[i][t] - log_z for t in pos) / len(pos)
    t2i = 0.0
    for t in range(3):
        pos = [i for i in range(2) if positive[i, t]]
        log_z = math.log(sum(math.exp(sim[i][t]) for i in range(2)))
        t2i += -sum(sim[i][t] - log_z for i in pos) / len(pos)
    expected = 0.5 * (i2t / 2 + t2i / 3)
    got = train.multi_positive_clip_loss(img, txt, positive, logit_scale)
    assert abs(got.item() - expected) < 1e-5
    with pytest.raises(ValueError, match='positive'):
        train.multi_positive_clip_loss(img, txt, torch.zeros(2, 3, dtype=torch.bool),
                                       logit_scale)


def test_sample_web_caption_names_the_salient_object_and_hard_negatives():
    train = _load_tool('train_tiny_clip')
    rng = np.random.RandomState(0)
    names = ['red circle', 'blue star', 'green ring']  # most salient first
    mentions = {n: 0 for n in names}
    for _ in range(400):
        text, named, negative, neg_named = train.sample_web_caption(names, rng, 0.35)
        assert sorted(CLASS_PATTERN.findall(text)) == sorted(named)
        assert 'red circle' in named and set(named) <= set(names)
        for n in named:
            mentions[n] += 1
        assert sorted(CLASS_PATTERN.findall(negative)) == sorted(neg_named)
        (old,), (new,) = set(named) - set(neg_named), set(neg_named) - set(named)
        assert new not in names  # the negative names a class the image lacks
        old_colour, old_shape = old.split()
        new_colour, new_shape = new.split()
        assert (old_colour == new_colour) != (old_shape == new_shape)  # one attribute moves
    assert mentions['red circle'] == 400
    # each other object is named with p = 0.35: 140 expected, binomial sd ~9.5
    assert 110 < mentions['blue star'] < 170 and 110 < mentions['green ring'] < 170


def test_same_caption_positives_by_hand():
    train = _load_tool('train_tiny_clip')
    own = [['red circle'], ['blue star', 'red circle'], ['red circle']]
    texts = own + [['green circle'], ['red circle', 'blue star']]  # + 2 hard negatives
    expected = torch.tensor([[1, 0, 1, 0, 0],
                             [0, 1, 0, 0, 1],  # the same set in another order
                             [1, 0, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(train.same_caption_positives(own, texts), expected)


def test_encode_text_prefix_equals_open_clip():
    import open_clip
    train = _load_tool('train_tiny_clip')
    torch.manual_seed(0)
    model = open_clip.create_model('mlr-tiny-rn', pretrained=None).eval()
    tokens = open_clip.get_tokenizer('mlr-tiny-rn')(['a red circle.',
                                                     'a blue star and a green ring on grey.'])
    with torch.no_grad():
        assert torch.allclose(train.encode_text_prefix(model, tokens),
                              model.encode_text(tokens), atol=1e-5)


def test_dense_features_against_a_per_location_loop():
    import open_clip
    evaluation = _load_tool('tiny_clip_eval')
    torch.manual_seed(0)
    model = open_clip.create_model('mlr-tiny-rn', pretrained=None).eval()
    visual = model.visual
    x = torch.randn(2, 3, 64, 64)
    # the tool's dense features: the package backbone holding a copy of model's weights
    dense = evaluation.backbone_from_open_clip(model, 'mlr-tiny-rn')(x)['dense']
    with torch.no_grad():
        feat = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))
        _, _, h, w = feat.shape
        pool = visual.attnpool
        for n in range(2):
            for y in range(h):
                for xx in range(w):
                    token = feat[n, :, y, xx] + pool.positional_embedding[1 + y * w + xx]
                    expected = pool.c_proj(pool.v_proj(token))
                    assert torch.allclose(dense[n, y * w + xx], expected, atol=1e-5)
    assert dense.shape == (2, h * w, model.visual.output_dim)


def test_retrieval_recall_and_map_by_hand():
    evaluation = _load_tool('tiny_clip_eval')
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.6, 0.5, 0.2]])
    assert evaluation.retrieval_recall(sim, 1) == pytest.approx(100 / 3)  # row 0 only
    assert evaluation.retrieval_recall(sim, 2) == pytest.approx(200 / 3)  # rows 0, 1
    labels = np.array([[1, 0], [0, 0], [1, 1]], float)
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.1, 0.2]])
    # class 0: positives ranked 1st and 3rd -> AP = (1/1 + 2/3) / 2; class 1: ranked 2nd
    # -> AP = 1/2.
    expected = 100 * ((1 + 2 / 3) / 2 + 0.5) / 2
    assert evaluation.mean_average_precision(scores, labels) == pytest.approx(expected)


def test_augment_keeps_hue_and_range():
    train = _load_tool('train_tiny_clip')
    images = torch.zeros(4, 3, 16, 16)
    images[:, 0], images[:, 1], images[:, 2] = 0.6, 0.3, 0.15  # one flat colour
    out = train.augment(images, np.random.RandomState(0), max_shift=2)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    ratio = out[:, 0] / out[:, 1]  # brightness scales channels together: ratios stay
    assert torch.allclose(ratio, torch.full_like(ratio, 2.0), atol=1e-5)


def test_lr_schedule_by_hand():
    train = _load_tool('train_tiny_clip')
    # 10 steps, 2 of linear warm-up, then cosine from 1.0 down to 0 over 8 steps
    assert [train.lr_at(s, 10, 2, 1.0) for s in (0, 1)] == [0.5, 1.0]
    assert train.lr_at(2, 10, 2, 1.0) == pytest.approx(1.0)
    assert train.lr_at(6, 10, 2, 1.0) == pytest.approx(0.5)  # half-way: cos(pi/2) = 0
    assert train.lr_at(10, 10, 2, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_load_demo_split_labels_and_areas_against_the_json(tmp_path):
    evaluation = _load_tool('tiny_clip_eval')
    root = generate_demo_world(tmp_path / 'w', seed=3, num_train=6, num_val=0, num_test=0,
                               image_size=64)
    split = evaluation.load_demo_split(root, 'train')
    instances = json.loads((root / 'annotations' / 'instances_train.json').read_text())
    assert split['images'].shape == (6, 64, 64, 3)
    for i, img in enumerate(instances['images']):
        for c in range(len(DEMO_CLASSES)):
            anns = [a for a in instances['annotations']
                    if a['image_id'] == img['id'] and a['category_id'] == c + 1]
            assert split['labels'][i, c] == (1.0 if anns else 0.0)
            assert split['areas'][i, c] == pytest.approx(sum(a['area'] for a in anns))


def test_train_tiny_clip_end_to_end_is_reproducible(tmp_path):
    """The pretraining script on a 64-image corpus, twice with the same seed: the same
    weights up to float rounding (CPU kernels may sum in a different order)."""
    from safetensors.torch import load_file
    train = _load_tool('train_tiny_clip')
    corpus = generate_demo_world(tmp_path / 'corpus', seed=1, num_train=64, num_val=0,
                                 num_test=0)
    world = generate_demo_world(tmp_path / 'world', seed=0, num_train=1, num_val=16,
                                num_test=0)
    weights = []
    for run in ('a', 'b'):
        out = tmp_path / run / 'clip.safetensors'
        out.parent.mkdir()
        argv = ['--corpus', str(corpus), '--data', str(world), '--out', str(out),
                '--epochs', '1', '--batch-size', '32', '--threads', '1']
        train.main(argv)
        card = json.loads(out.with_suffix('.json').read_text())
        assert card['sha256'] == hashlib.sha256(out.read_bytes()).hexdigest()
        assert card['corpus']['images'] == 64 and card['training']['steps'] == 2
        assert card['evaluation']['images'] == 16
        assert card['command'].endswith(' '.join(argv))
        weights.append(load_file(str(out)))
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        assert torch.allclose(value.float(), weights[1][key].float(), atol=2e-3), key


def test_feature_distillation_loss_against_a_plain_loop():
    """1 - cos on the global embedding + w * mean over patches of 1 - cos to the teacher's
    dense grid, bilinearly resized (align_corners=False) from 2 x 2 to 4 x 4 by hand."""
    import math
    train = _load_tool('train_tiny_clip')
    g = torch.Generator().manual_seed(0)
    s_dense, s_glob = torch.randn(2, 16, 3, generator=g), torch.randn(2, 3, generator=g)
    t_dense, t_glob = torch.randn(2, 4, 3, generator=g), torch.randn(2, 3, generator=g)
    got = train.feature_distillation_loss(s_dense, s_glob, t_dense, t_glob, (2, 2), 0.5)

    def source(i):  # output pixel i of 4 -> (low, high, weight of high) on the 2-pixel axis
        x = min(max((i + 0.5) / 2 - 0.5, 0.0), 1.0)
        return 0, 1, x

    def cos(a, b):
        return float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))
    total = 0.0
    for b in range(2):
        glob = 1 - cos(s_glob[b], t_glob[b])
        dense = 0.0
        for y in range(4):
            for x in range(4):
                y0, y1, wy = source(y)
                x0, x1, wx = source(x)
                grid = t_dense[b].reshape(2, 2, 3)
                up = ((1 - wy) * ((1 - wx) * grid[y0, x0] + wx * grid[y0, x1]) +
                      wy * ((1 - wx) * grid[y1, x0] + wx * grid[y1, x1]))
                dense += 1 - cos(s_dense[b, y * 4 + x], up)
        total += glob + 0.5 * dense / 16
    assert got.item() == pytest.approx(total / 2, abs=1e-5)
    # cosine only: scaling either side changes nothing
    again = train.feature_distillation_loss(3 * s_dense, 2 * s_glob, t_dense, 5 * t_glob,
                                            (2, 2), 0.5)
    assert again.item() == pytest.approx(got.item(), abs=1e-5)


def test_vit_image_features_equal_open_clip_and_the_backbone():
    """The trainable forward the distillation uses: its global output is
    ``encode_image`` and its patch features are OpenCLIPBackbone's ``dense``."""
    import open_clip

    import mlr_plugin  # noqa: F401  (registers the demo model configs)
    from mlr_plugin.models.clip import OpenCLIPBackbone
    train = _load_tool('train_tiny_clip')
    torch.manual_seed(0)
    model = open_clip.create_model('mlr-demo-vit', pretrained=None).eval()
    x = torch.randn(2, 3, 128, 128)
    backbone = OpenCLIPBackbone('mlr-demo-vit', pretrained=None)
    backbone.clip.load_state_dict(model.state_dict())
    with torch.no_grad():
        dense, glob = train.vit_image_features(model, x)
        ref = backbone.eval()(x)
        assert torch.allclose(glob, model.encode_image(x), atol=1e-5)
    assert torch.allclose(dense, ref['dense'], atol=1e-5)
    assert torch.allclose(glob, ref['global_feat'], atol=1e-5)


def test_distill_from_trains_the_vit_towards_the_teacher(tmp_path):
    """--distill-from: the text tower is the teacher's and frozen, the logit scale is the
    teacher's, the card names the teacher; 4 steps lower the distillation loss. A
    ResNet student or weights without a model name are one-line errors."""
    from safetensors.torch import load_file, save_file
    train = _load_tool('train_tiny_clip')
    rn = Path(mlr_plugin_root()) / 'demo' / 'mlr-demo-rn.safetensors'
    corpus = generate_demo_world(tmp_path / 'corpus', seed=1, num_train=64, num_val=0,
                                 num_test=0)
    world = generate_demo_world(tmp_path / 'world', seed=0, num_train=1, num_val=16,
                                num_test=0)
    out = tmp_path / 'vit.safetensors'
    common = ['--corpus', str(corpus), '--data', str(world), '--threads', '1',
              '--batch-size', '32']
    train.main(common + ['--model', 'mlr-demo-vit', '--out', str(out), '--epochs', '2',
                         '--distill-from', str(rn)])
    card = json.loads(out.with_suffix('.json').read_text())
    assert card['training']['distilled_from']['sha256'] == \
        hashlib.sha256(rn.read_bytes()).hexdigest()
    assert card['training']['locked_text_tower']['source'] == rn.name
    student, teacher = load_file(str(out)), load_file(str(rn))
    assert torch.equal(student['logit_scale'], teacher['logit_scale'])
    for key in ('token_embedding.weight', 'text_projection', 'ln_final.weight'):
        assert torch.equal(student[key], teacher[key]), key
    with pytest.raises(ValueError, match='trains a ViT image tower'):
        train.main(common + ['--out', str(tmp_path / 'rn.safetensors'), '--epochs', '1',
                             '--distill-from', str(rn)])
    bare = tmp_path / 'bare.safetensors'
    save_file(teacher, str(bare))  # no metadata
    with pytest.raises(ValueError, match='no "model" entry'):
        train.load_distill_teacher(bare)


def test_distill_from_lowers_the_feature_loss():
    """Four AdamW steps of the distillation objective on one batch lower it."""
    import open_clip
    train = _load_tool('train_tiny_clip')
    rn = Path(mlr_plugin_root()) / 'demo' / 'mlr-demo-rn.safetensors'
    teacher = train.load_distill_teacher(rn)
    torch.manual_seed(0)
    model = open_clip.create_model('mlr-demo-vit', pretrained=None)
    x = torch.randn(8, 3, 128, 128)
    with torch.no_grad():
        target = teacher(x)
    optim = torch.optim.AdamW([p for n, p in model.named_parameters()
                               if n.startswith('visual.')], lr=2e-3)
    losses = []
    for _ in range(5):
        loss = train.feature_distillation_loss(*train.vit_image_features(model, x),
                                               target['dense'].float(),
                                               target['global_feat'].float(), target['grid'])
        losses.append(loss.item())
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert losses[-1] < losses[0] - 0.05, losses


def mlr_plugin_root():
    import mlr_plugin
    return Path(mlr_plugin.__file__).parent
