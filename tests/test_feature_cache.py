"""Feature cache (docs/feature_cache.md): the classifier on cached features, the cache
files (round trip, resume after a kill, views), staleness errors, and training from the
cache against training from images.

Tolerance: cached features are fp16, i.e. each value is rounded to 11 significant bits
(relative error <= 2**-11 ~ 4.9e-4). Losses and scores from cached features are compared
with those from images at rtol 2e-3 / atol 2e-3 (measured differences are ~1e-4).
"""
import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmpretrain.registry import DATASETS, MODELS

from mlr_plugin.datasets.demo_world import generate_demo_world
from mlr_plugin.datasets.feature_cache import (FeatureCacheReader, read_manifest,
                                               view_seed)
from mlr_plugin.datasets.seeding import SeededIndex, sample_seed, seeded_rng
from mlr_plugin.engine.feature_cache import build_feature_cache, distinct_views
from mlr_plugin.models.clip import OpenCLIPBackbone
from mlr_plugin.models.feature_cache import FeatureCachePreprocessor, backbone_fingerprint

REPO = Path(__file__).parent.parent
SIZE = 64
RTOL = ATOL = 2e-3  # fp16 storage (see the module docstring)


@functools.lru_cache(maxsize=None)
def tiny_weights(seed=0) -> str:
    """A fixed random mlr-tiny-rn saved as a weights file (cache and model must load the
    same frozen tower)."""
    path = Path(tempfile.mkdtemp(prefix='mlr_fc_clip_')) / f'mlr-tiny-rn-{seed}.pt'
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        clip = OpenCLIPBackbone('mlr-tiny-rn', pretrained=None).clip
    torch.save(clip.state_dict(), path)
    return str(path)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('fc_world') / 'world'
    generate_demo_world(root, seed=3, num_train=10, num_val=3, num_test=6, image_size=SIZE)
    return root


def demo_cfg(world, flip=True, **backbone):
    """configs/demo/dualcoop_p10.py on the tiny world with the tiny CLIP."""
    cfg = Config.fromfile(str(REPO / 'configs/demo/dualcoop_p10.py'))
    cfg.model.backbone.update(dict(model_name='mlr-tiny-rn', pretrained=tiny_weights(),
                                   image_size=SIZE), **backbone)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = str(world)
        cfg[key].update(num_workers=0, persistent_workers=False, batch_size=4)
    if not flip:
        cfg.train_dataloader.dataset.pipeline = cfg.test_dataloader.dataset.pipeline
    return cfg


def cached_dataset(cfg, root, split, **kwargs):
    images = cfg[f'{split}_dataloader'].dataset.to_dict()
    return DATASETS.build(dict(images, type='CachedFeatureDataset',
                               image_dataset=images['type'],
                               feature_cache=dict(root=str(root), split=split, **kwargs)))


def build_model(cfg, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model.to_dict())
    model.set_class_names(DATASETS.build(cfg.train_dataloader.dataset.to_dict())
                          .metainfo['classes'])
    return model


def image_batch(dataset, indices):
    return pseudo_collate([dataset[i] for i in indices])


# ------------------------------------------------------------------ classifier
def test_classifier_takes_features_instead_of_images(world):
    """Tower outputs in fp16 give the image path's features, losses and scores within
    fp16 rounding, without running the image tower; a cache of another tower is refused."""
    cfg = demo_cfg(world, flip=False)
    model = build_model(cfg)
    assert isinstance(model.data_preprocessor, FeatureCachePreprocessor)
    images = DATASETS.build(cfg.train_dataloader.dataset.to_dict())
    data = model.data_preprocessor(image_batch(images, range(6)), True)
    with torch.no_grad():
        raw = model.backbone(data['inputs'])
    record = json.dumps(dict(root='mem', backbone=backbone_fingerprint(model.backbone)))
    per_sample = [dict({k: raw[k][i].half() for k in ('dense', 'global_feat', 'prefix_tokens')},
                       feature_cache=record) for i in range(6)]
    cached = model.data_preprocessor(
        pseudo_collate([dict(inputs=f, data_samples=s)
                        for f, s in zip(per_sample, data['data_samples'])]), True)
    assert cached['inputs']['dense'].dtype == torch.float16  # upcast in the classifier
    calls = []
    model.backbone.register_forward_hook(lambda *args: calls.append(1))
    feats = model.extract_feat(cached['inputs'])
    assert not calls  # the image tower did not run
    for key in ('dense', 'global_feat', 'prefix_tokens'):
        assert feats[key].dtype == torch.float32
        expected = F.normalize(raw[key].half().float(), dim=-1)
        torch.testing.assert_close(feats[key], expected, rtol=0, atol=0)
        torch.testing.assert_close(feats[key], F.normalize(raw[key], dim=-1),
                                   rtol=RTOL, atol=ATOL)
    assert feats['grid'] == model.backbone.feat_grid
    loss_images = model.loss(data['inputs'], data['data_samples'])
    loss_cached = model.loss(cached['inputs'], cached['data_samples'])
    for key in loss_images:
        torch.testing.assert_close(loss_cached[key], loss_images[key], rtol=RTOL, atol=ATOL)
    pred_images = model.predict(data['inputs'], data['data_samples'])
    pred_cached = model.predict(cached['inputs'], cached['data_samples'])
    torch.testing.assert_close(torch.stack([p.pred_score for p in pred_cached]),
                               torch.stack([p.pred_score for p in pred_images]),
                               rtol=RTOL, atol=ATOL)

    other = build_model(demo_cfg(world, flip=False, pretrained=tiny_weights(1)))
    with pytest.raises(ValueError, match=r'feature cache mem is stale: backbone '
                       r'weights_digest was'):
        other.extract_feat(cached['inputs'])


# ------------------------------------------------------------------ the cache files
def reference_features(model, dataset, index, view, seed=0):
    """The tower's fp32 outputs for view ``view`` of image ``index``, computed directly."""
    with seeded_rng(view_seed(seed, index, view)):
        item = dataset.prepare_data(index)
    data = model.data_preprocessor(pseudo_collate([item]), False)
    with torch.no_grad():
        out = model.backbone(data['inputs'])
    return {k: v[0].numpy() for k, v in out.items() if torch.is_tensor(v)}


@pytest.fixture(scope='module')
def flip_cache(world, tmp_path_factory):
    """The demo pipeline (random flip), 3 views per training image, shards of 4."""
    root = tmp_path_factory.mktemp('fc_flip') / 'cache'
    build_feature_cache(demo_cfg(world), out=str(root), num_views=3, shard_size=4,
                        batch_size=5)
    return root


def test_round_trip_and_views(world, flip_cache, capsys):
    cfg = demo_cfg(world)
    manifest = read_manifest(str(flip_cache))
    train = manifest['splits']['train']
    assert (train['num_images'], train['num_views'], train['done_shards']) == (10, 3, [0, 1, 2])
    assert manifest['splits']['test']['num_views'] == 1
    reader = FeatureCacheReader(str(flip_cache), 'train')
    model = build_model(cfg)
    images = {split: DATASETS.build(cfg[f'{split}_dataloader'].dataset.to_dict())
              for split in ('train', 'test')}
    shapes = dict(dense=(4, 32), global_feat=(32, ), prefix_tokens=(1, 32))  # 64 px: 2x2
    for index, view in [(0, 0), (0, 1), (0, 2), (5, 1), (9, 2)]:
        cached = reader.read(index, view)
        ref = reference_features(model, images['train'], index, view)
        for key, shape in shapes.items():
            assert cached[key].dtype == np.float16 and cached[key].shape == shape
            np.testing.assert_allclose(cached[key].astype(np.float32), ref[key],
                                       rtol=2 ** -10, atol=1e-6)
    # the views are augmented: some image has a view unlike its view 0 (a flip); views
    # with the same flip are computed once, so they hold the same bytes
    differs = [not np.array_equal(reader.read(i, v)['dense'], reader.read(i, 0)['dense'])
               for i in range(10) for v in (1, 2)]
    assert 0 < sum(differs) < len(differs)
    test = FeatureCacheReader(str(flip_cache), 'test').read(4, 0)
    np.testing.assert_allclose(test['global_feat'].astype(np.float32),
                               reference_features(model, images['test'], 4, 0)['global_feat'],
                               rtol=2 ** -10, atol=1e-6)
    # the training dataset reads view sample_seed(seed, epoch, i) % views, per epoch
    dataset = cached_dataset(cfg, flip_cache, 'train')
    views_seen = set()
    for epoch in range(4):
        for index in (2, 7):
            view = sample_seed(0, epoch, index) % 3
            views_seen.add(view)
            item = dataset[SeededIndex(index, 0, epoch)]
            np.testing.assert_array_equal(item['inputs']['dense'].numpy(),
                                          reader.read(index, view)['dense'])
            assert item['data_samples'].sample_idx == index
    assert len(views_seen) > 1
    with pytest.raises(ValueError, match='sample it with EpochSeededSampler'):
        dataset[0]
    with pytest.raises(ValueError, match='num_views=4 but feature cache .* holds 3 views'):
        cached_dataset(cfg, flip_cache, 'train', num_views=4)


def test_identical_views_go_through_the_tower_once():
    a, b, c = (torch.full((3, 2, 2), v, dtype=torch.uint8) for v in (1, 2, 3))
    pairs = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    unique, where = distinct_views([a, b, a, a, c], pairs)
    # image 0: views 0 and 2 are the same; image 1's copy of `a` is its own view
    assert unique == [0, 1, 3, 4] and where.tolist() == [0, 1, 0, 2, 3]


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(Path(root).rglob('*')) if p.is_file()}


def test_resume_after_kill_gives_the_same_bytes(world, flip_cache, tmp_path, monkeypatch,
                                                capsys):
    """Killed in the middle of shard 1: shard 0 is kept, everything else is redone, and
    the result is byte-identical to the uninterrupted build (flip_cache)."""
    cfg = demo_cfg(world)
    root = tmp_path / 'cache'
    forward = OpenCLIPBackbone.forward
    calls = []

    def dying_forward(self, images):
        calls.append(len(images))
        if len(calls) == 4:  # batches of 5 views: shard 0 is batches 1-3 (12 views)
            raise KeyboardInterrupt  # no cleanup code runs, as with SIGKILL
        return forward(self, images)

    monkeypatch.setattr(OpenCLIPBackbone, 'forward', dying_forward)
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(cfg, out=str(root), num_views=3, shard_size=4, batch_size=5)
    assert read_manifest(str(root))['splits']['train']['done_shards'] == [0]
    assert list((root / 'train').glob('*.partial'))  # shard 1 was being written
    # a shard file that a kill left unrecorded in the manifest is not trusted
    (root / 'train' / 'shard_00001.dense.npy').write_bytes(b'garbage')
    calls.clear()
    monkeypatch.setattr(OpenCLIPBackbone, 'forward', forward)
    build_feature_cache(cfg, out=str(root), num_views=3, shard_size=4, batch_size=5)
    out = capsys.readouterr().out
    assert 'train (12/30 cached before): 18/18 views' in out and 'KiB in fp16' in out
    computed = int(out.split('train: 18 views (')[1].split(' distinct')[0])
    assert computed < 18  # 3 random flips of an image: at most 2 distinct views
    assert not list(root.rglob('*.partial'))
    assert _files(root) == _files(flip_cache)


# ------------------------------------------------------------------ staleness
def test_stale_cache_is_refused_naming_what_changed(world, flip_cache):
    cfg = demo_cfg(world)
    where = f'feature cache {flip_cache} \\(train\\) is stale: the'
    changes = dict(
        pipeline=dict(pipeline=[dict(type='LoadImageCV2', to_rgb=True),
                                dict(type='RandomFlip', prob=0.25, direction='horizontal'),
                                dict(type='PackInputs')]),
        **{'image list': dict(indices=list(range(9, -1, -1))),  # same images, other order
           'number of images': dict(ann_file='annotations/instances_test.json',
                                    data_prefix=dict(img_path='test'))})
    for name, change in changes.items():
        cfg = demo_cfg(world)
        cfg.train_dataloader.dataset.update(change)
        with pytest.raises(ValueError, match=f'{where} {name} changed since it was built'):
            cached_dataset(cfg, flip_cache, 'train')

    cfg = demo_cfg(world)
    dataset = cached_dataset(cfg, flip_cache, 'train')
    items = [dataset[SeededIndex(i, 0, 0)] for i in range(3)]
    build_model(cfg).extract_feat(  # the model that built it: accepted
        build_model(cfg).data_preprocessor(pseudo_collate(items))['inputs'])
    models = dict(model_name=dict(model_name='mlr-tiny-vit', pretrained=None),
                  image_size=dict(image_size=96),
                  weights_digest=dict(pretrained=tiny_weights(1)))
    for field, backbone in models.items():
        model = build_model(demo_cfg(world, **backbone))
        batch = model.data_preprocessor(pseudo_collate(items))
        with pytest.raises(ValueError, match=f'feature cache {flip_cache} is stale: backbone '
                           f'{field} was .* when it was built, the model has .*; rebuild'):
            model.extract_feat(batch['inputs'])
    with pytest.raises(KeyError, match="has no split 'extra'"):
        FeatureCacheReader(str(flip_cache), 'extra')


def test_what_cannot_be_cached_or_rebuilt_is_refused(world, flip_cache):
    with pytest.raises(ValueError, match='trainable_vision_blocks=1.*cannot be cached'):
        backbone_fingerprint(OpenCLIPBackbone('mlr-tiny-vit', trainable_vision_blocks=1))
    mixup = FeatureCachePreprocessor(batch_augments=dict(augments=dict(type='Mixup',
                                                                       alpha=0.8)))
    cfg = demo_cfg(world)
    batch = pseudo_collate([cached_dataset(cfg, flip_cache, 'test')[i] for i in range(2)])
    with pytest.raises(ValueError, match='batch_augments .* cannot apply to cached features'):
        mixup(batch, training=True)
    # another number of views for an existing cache: refused, nothing is touched
    before = _files(flip_cache)
    with pytest.raises(ValueError, match=r'\(train\) was built with other settings '
                       r'\(num_views 3 -> 2\): pass --overwrite'):
        build_feature_cache(cfg, out=str(flip_cache), num_views=2, shard_size=4)
    assert _files(flip_cache) == before
    with pytest.raises(ValueError, match='not a CachedFeatureDataset: give the cache folder '
                       'with --out'):
        _load_tool('cache_features').main([str(REPO / 'configs/demo/dualcoop_p10.py')])


# ------------------------------------------------------------------ training
def _load_tool(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_options(world, cache_root=None):
    """configs/demo/dualcoop_p10[_cached].py on the tiny world, tiny CLIP, no flip (one
    view is then exactly the image), 2 epochs of 3 steps."""
    opts = ['model.backbone.model_name=mlr-tiny-rn',
            f'model.backbone.pretrained={tiny_weights()}', f'model.backbone.image_size={SIZE}',
            'train_dataloader.dataset.pipeline.1.prob=0.0', 'train_cfg.max_epochs=2',
            'train_cfg.val_interval=2', 'default_hooks.logger.interval=1']
    for split in ('train', 'val', 'test'):
        loader = f'{split}_dataloader'
        opts += [f'{loader}.dataset.data_root={world}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False', f'{loader}.batch_size=4']
        if cache_root:
            opts.append(f'{loader}.dataset.feature_cache.root={cache_root}')
    if cache_root:
        opts.append('train_dataloader.dataset.feature_cache.num_views=1')
    return opts


def test_training_from_the_cache_equals_training_from_images(world, tmp_path, capsys):
    """tools/cache_features.py + tools/train.py on the cached demo config give the losses
    and test predictions of tools/train.py on the image config, within fp16 rounding."""
    train = _load_tool('train')
    cache = tmp_path / 'cache'
    cached_config = str(REPO / 'configs/demo/dualcoop_p10_cached.py')
    options = demo_options(world, cache)
    _load_tool('cache_features').main([cached_config, '--cfg-options', *options])
    runs = {}
    for name, config, opts in (
            ('images', str(REPO / 'configs/demo/dualcoop_p10.py'), demo_options(world)),
            ('cache', cached_config, options)):
        runner = train.main([config, '--work-dir', str(tmp_path / name), '--cfg-options',
                             *opts])
        losses = runner.message_hub.get_scalar('train/loss').data[0]
        runs[name] = runner, np.asarray(losses)
    assert len(runs['images'][1]) == 6  # 2 epochs x 3 steps
    np.testing.assert_allclose(runs['cache'][1], runs['images'][1], rtol=RTOL, atol=ATOL)
    # both validated (the cached run through the cached val split); their mAPs are not
    # compared: on 3 images with a random tiny CLIP the scores nearly tie and an fp16
    # rounding can swap two of them, which moves an AP by a whole rank. The scores:
    for runner, _ in runs.values():
        assert 'val/mAP' in runner.message_hub.log_scalars
    # test predictions of both trained models, each from its own input
    cfg = demo_cfg(world, flip=False)
    images = DATASETS.build(cfg.test_dataloader.dataset.to_dict())
    cached = cached_dataset(cfg, cache, 'test')
    scores = {}
    for name, dataset in (('images', images), ('cache', cached)):
        model = runs[name][0].model
        batch = model.data_preprocessor(image_batch(dataset, range(6)))
        scores[name] = torch.stack([p.pred_score for p in model.predict(**batch)])
    torch.testing.assert_close(scores['cache'], scores['images'], rtol=RTOL, atol=ATOL)
