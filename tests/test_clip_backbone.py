"""OpenCLIPBackbone: dense features, resizing, freezing, text encoding, weight loading."""
import math
import os
import time

import pytest
import torch

from mlr_plugin.models.clip import OpenCLIPBackbone, resize_grid_pos_embed
from mlr_plugin.models.clip.pretrained import resolve_package_path, resolve_pretrained

TINY_RN, TINY_VIT = 'mlr-tiny-rn', 'mlr-tiny-vit'


def build(model_name, **kwargs):
    torch.manual_seed(0)
    return OpenCLIPBackbone(model_name=model_name, **kwargs)


@pytest.fixture(scope='module')
def rn():
    return build(TINY_RN)


@pytest.fixture(scope='module')
def vit():
    return build(TINY_VIT)


def images(size=64, batch=2, seed=1):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def layer4(backbone, x):
    visual = backbone.clip.visual
    return visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))


# ------------------------------------------------------------------ ResNet dense
@pytest.mark.parametrize('with_mean_token', [True, False])
@pytest.mark.parametrize('with_pos_embed', [True, False])
def test_resnet_dense_matches_per_location_loop(rn, with_mean_token, with_pos_embed):
    rn.with_mean_token, rn.with_pos_embed = with_mean_token, with_pos_embed
    try:
        x = images()
        out = rn(x)
    finally:
        rn.with_mean_token, rn.with_pos_embed = True, True
    pool = rn.clip.visual.attnpool
    w_v, b_v = pool.v_proj.weight, pool.v_proj.bias
    w_c, b_c = pool.c_proj.weight, pool.c_proj.bias
    pos = pool.positional_embedding
    with torch.no_grad():
        feat = layer4(rn, x)  # (B, W, h, w)
    batch, _, h, w = feat.shape
    # the features contract: the grid row-major in 'dense', the mean token apart
    assert out['dense'].shape == (batch, h * w, rn.embed_dim) and out['grid'] == (h, w)
    assert ('prefix_tokens' in out) == with_mean_token
    tokens = torch.cat([out['prefix_tokens'], out['dense']], 1) if with_mean_token \
        else out['dense']
    for b in range(batch):
        vectors = []  # (input vector, pos-embed row) in token order
        if with_mean_token:
            vectors.append((feat[b].mean(dim=(1, 2)), pos[0]))
        for i in range(h):
            for j in range(w):
                vectors.append((feat[b, :, i, j], pos[1 + i * w + j]))
        for token, (vec, pos_row) in enumerate(vectors):
            if with_pos_embed:
                vec = vec + pos_row
            v = w_v @ vec + b_v
            expected = w_c @ v + b_c
            torch.testing.assert_close(tokens[b, token], expected, atol=1e-5, rtol=1e-4)


def test_resnet_global_feat_is_clip_image_embedding(rn):
    x = images()
    with torch.no_grad():
        expected = rn.clip.encode_image(x)
    torch.testing.assert_close(rn(x)['global_feat'], expected)


# ------------------------------------------------------------------ ViT dense
def test_vit_dense_is_ln_post_tokens_times_proj(vit):
    x = images()
    out = vit(x)
    visual = vit.clip.visual
    with torch.no_grad():
        # open_clip's own intermediate path: last block output, ln_post, patch tokens
        inter = visual.forward_intermediates(x, indices=1, normalize_intermediates=True,
                                             intermediates_only=True, output_fmt='NLC')
        expected = inter['image_intermediates'][-1] @ visual.proj
        # and by hand from the modules
        tok = visual.conv1(x).flatten(2).transpose(1, 2)
        tok = torch.cat([visual.class_embedding.expand(2, 1, -1), tok], 1)
        tok = visual.ln_pre(tok + visual.positional_embedding)
        for block in visual.transformer.resblocks:
            tok = block(tok)
        by_hand = visual.ln_post(tok) @ visual.proj
        global_expected = vit.clip.encode_image(x)
    assert out['dense'].shape == (2, (64 // 16) ** 2, vit.embed_dim)
    torch.testing.assert_close(out['dense'], expected)
    torch.testing.assert_close(out['dense'], by_hand[:, 1:])
    torch.testing.assert_close(out['global_feat'], by_hand[:, 0])
    torch.testing.assert_close(out['global_feat'], global_expected)


# ------------------------------------------------------------------ image size
def bicubic_reference(grid, new_h, new_w, a=-0.75):
    """Plain-python separable bicubic (align_corners=False, edge clamp), (h, w) -> (nh, nw)."""

    def kernel(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        if t < 2:
            return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
        return 0.0

    def resize_1d(values, new_len):
        old_len = len(values)
        out = []
        for i in range(new_len):
            src = (i + 0.5) * old_len / new_len - 0.5
            x0 = math.floor(src)
            frac = src - x0
            total = 0.0
            for k in range(-1, 3):
                idx = min(max(x0 + k, 0), old_len - 1)
                total += values[idx] * kernel(frac - k)
            out.append(total)
        return out

    rows = [resize_1d(row, new_w) for row in grid]  # along width
    cols = [resize_1d([rows[r][c] for r in range(len(rows))], new_h) for c in range(new_w)]
    return [[cols[c][r] for c in range(new_w)] for r in range(new_h)]


@pytest.mark.parametrize('old_grid,new_grid', [((2, 2), (3, 3)), ((3, 3), (5, 4)),
                                               ((4, 4), (2, 2))])
def test_resize_grid_pos_embed_is_bicubic(old_grid, new_grid):
    torch.manual_seed(0)
    channels = 3
    pos = torch.randn(1 + old_grid[0] * old_grid[1], channels, dtype=torch.float64)
    out = resize_grid_pos_embed(pos, old_grid, new_grid)
    assert out.shape == (1 + new_grid[0] * new_grid[1], channels)
    assert torch.equal(out[0], pos[0])  # class / mean row kept
    for c in range(channels):
        grid = pos[1:, c].reshape(old_grid).tolist()
        expected = torch.tensor(bicubic_reference(grid, *new_grid), dtype=torch.float64)
        torch.testing.assert_close(out[1:, c].reshape(new_grid), expected, atol=1e-5, rtol=0)


def test_resize_at_native_size_is_identity():
    pos = torch.randn(1 + 7 * 7, 4)
    assert torch.equal(resize_grid_pos_embed(pos, (7, 7), (7, 7)), pos)
    with pytest.raises(ValueError, match='rows'):
        resize_grid_pos_embed(pos, (6, 6), (7, 7))


@pytest.mark.parametrize('model_name,tokens', [(TINY_RN, 3 * 3), (TINY_VIT, 6 * 6)])
def test_image_size_override(model_name, tokens):
    native = build(model_name)
    big = build(model_name, image_size=96)
    same = build(model_name, image_size=64)
    out = big(images(96))
    assert out['dense'].shape == (2, tokens, big.embed_dim)
    assert out['global_feat'].shape == (2, big.embed_dim)
    assert big.image_size == 96
    x = images(64)
    torch.testing.assert_close(same(x)['dense'], native(x)['dense'], rtol=0, atol=0)
    # the resized embedding is the bicubic resize of the native one, built at init
    if model_name == TINY_RN:
        old = native.clip.visual.attnpool.positional_embedding
        new = big.clip.visual.attnpool.positional_embedding
        grids = ((2, 2), (3, 3))
    else:
        old = native.clip.visual.positional_embedding
        new = big.clip.visual.positional_embedding
        grids = ((4, 4), (6, 6))
    torch.testing.assert_close(new, resize_grid_pos_embed(old, *grids))
    with pytest.raises(ValueError, match='image_size'):
        big(images(64))


def test_image_size_must_fit_the_stride():
    with pytest.raises(ValueError, match='multiple of 32'):
        build(TINY_RN, image_size=80)


def test_resnet_without_mean_token_has_hw_tokens():
    backbone = build(TINY_RN, image_size=96, with_mean_token=False, with_pos_embed=False)
    out = backbone(images(96))
    assert out['dense'].shape == (2, 9, backbone.embed_dim) and 'prefix_tokens' not in out


# ------------------------------------------------------------------ frozen
@pytest.mark.parametrize('name', [TINY_RN, TINY_VIT])
def test_frozen_tower_builds_no_graph(name, rn, vit):
    backbone = rn if name == TINY_RN else vit
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert backbone.training and not backbone.clip.training
    assert all(not m.training for m in backbone.clip.modules())
    stats = {k: v.clone() for k, v in backbone.state_dict().items() if 'running' in k}
    x = images().requires_grad_(True)
    out = backbone(x)
    for value in out.values():
        if torch.is_tensor(value):
            assert not value.requires_grad and value.grad_fn is None
    for key, value in stats.items():  # BatchNorm statistics did not move in train mode
        assert torch.equal(backbone.state_dict()[key], value)


def test_trainable_vit_blocks_get_gradients():
    backbone = build(TINY_VIT, trainable_vision_blocks=1)
    visual = backbone.clip.visual
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    expected = {f'clip.visual.{n}' for n, _ in visual.transformer.resblocks[-1].named_parameters(
        prefix='transformer.resblocks.1')}
    expected |= {'clip.visual.ln_post.weight', 'clip.visual.ln_post.bias', 'clip.visual.proj'}
    assert trainable == expected
    out = backbone(images())
    assert out['dense'].requires_grad
    (out['dense'].sum() + out['global_feat'].sum()).backward()
    assert visual.proj.grad is not None and visual.transformer.resblocks[-1].mlp.c_fc.weight.grad \
        is not None
    assert visual.transformer.resblocks[0].mlp.c_fc.weight.grad is None
    assert visual.conv1.weight.grad is None
    with pytest.raises(NotImplementedError, match='ViT'):
        build(TINY_RN, trainable_vision_blocks=1)


# ------------------------------------------------------------------ mixed precision
@pytest.mark.parametrize('name', [TINY_RN, TINY_VIT])
def test_runs_under_autocast(name, rn, vit):
    backbone = rn if name == TINY_RN else vit
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = backbone(images())
        text = backbone.encode_text(['a dog'])
    full = backbone(images())
    assert torch.isfinite(out['dense'].float()).all() and text.shape == (1, backbone.embed_dim)
    cos = torch.nn.functional.cosine_similarity(out['dense'].float(), full['dense'], dim=-1)
    assert cos.min() > 0.97


# ------------------------------------------------------------------ text
def test_tokenize_and_encode_text_match_open_clip(rn):
    texts = ['a photo of a dog.', 'traffic light', 'x']
    tokens = rn.tokenize(texts)
    assert tokens.dtype == torch.long and tokens.shape == (3, rn.context_length)
    assert rn.embed_tokens(tokens).shape == (3, rn.context_length, rn.text_width)
    with torch.no_grad():
        expected = rn.clip.encode_text(tokens)
    torch.testing.assert_close(rn.encode_text(texts), expected, atol=1e-5, rtol=1e-4)


def test_encode_prompt_embeddings_truncation_and_gradients(vit):
    tokens = vit.tokenize(['a photo of a dog.', 'a very small red traffic light on a road'])
    embeds = vit.embed_tokens(tokens).clone().requires_grad_(True)
    lengths = []
    hook = vit.clip.transformer.resblocks[0].register_forward_pre_hook(
        lambda module, args: lengths.append(args[0].shape[1]))
    try:
        full = vit.encode_prompt_embeddings(embeds, tokens, truncate=False)
        short = vit.encode_prompt_embeddings(embeds, tokens)
    finally:
        hook.remove()
    assert lengths == [vit.context_length, int(tokens.argmax(-1).max()) + 1]
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-4)
    short.sum().backward()
    assert embeds.grad is not None and embeds.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in vit.parameters())
    with pytest.raises(ValueError, match='embeds'):
        vit.encode_prompt_embeddings(embeds[:, :10], tokens)


# ------------------------------------------------------------------ weights
def test_missing_local_file_fails_fast(tmp_path):
    start = time.time()
    with pytest.raises(FileNotFoundError, match='missing.pt'):
        OpenCLIPBackbone(TINY_RN, pretrained=str(tmp_path / 'missing.pt'))
    with pytest.raises(FileNotFoundError, match='nothing.safetensors'):
        OpenCLIPBackbone(TINY_RN, pretrained='mlr_plugin://demo/nothing.safetensors')
    assert time.time() - start < 5


def test_uncached_openai_tag_fails_fast_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    start = time.time()
    with pytest.raises(FileNotFoundError) as info:
        OpenCLIPBackbone('RN50', pretrained='openai', cache_dir=str(tmp_path))
    assert time.time() - start < 5
    message = str(info.value)
    assert 'RN50.pt' in message and str(tmp_path) in message and 'RN50/openai' in message
    assert '\n' not in message


def test_bad_names_are_value_errors():
    with pytest.raises(ValueError, match='RN101'):
        OpenCLIPBackbone('RN10l')
    with pytest.raises(ValueError, match='known tags'):
        OpenCLIPBackbone('RN50', pretrained='no_such_tag')


def test_cached_tags_resolve_without_network(tmp_path):
    url_file = tmp_path / 'RN50.pt'  # open_clip's plain-url cache location
    url_file.write_bytes(b'x')
    path, cfg = resolve_pretrained('RN50', 'openai', cache_dir=str(tmp_path))
    assert path == str(url_file) and cfg['quick_gelu']
    # HF hub cache layout is preferred when present
    repo = tmp_path / 'models--timm--resnet50_clip.openai'
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text('abc123')
    snapshot = repo / 'snapshots' / 'abc123'
    snapshot.mkdir(parents=True)
    (snapshot / 'open_clip_pytorch_model.bin').write_bytes(b'x')
    path, _ = resolve_pretrained('RN50', 'openai', cache_dir=str(tmp_path))
    assert path == str(snapshot / 'open_clip_pytorch_model.bin')


def test_package_scheme_resolves_inside_the_package():
    import mlr_plugin
    package_dir = os.path.dirname(os.path.abspath(mlr_plugin.__file__))
    assert resolve_package_path('mlr_plugin://demo/x.safetensors') == os.path.join(
        package_dir, 'demo', 'x.safetensors')
    assert resolve_package_path('/abs/file.pt') == '/abs/file.pt'


def _same_outputs(a, b):
    x = images()
    out_a, out_b = a(x), b(x)
    for key in out_a:
        torch.testing.assert_close(out_a[key], out_b[key])
    torch.testing.assert_close(a.encode_text(['a dog']), b.encode_text(['a dog']))


def test_local_state_dict_file_reproduces_outputs(rn, tmp_path):
    path = tmp_path / 'tiny_rn.pt'
    torch.save(rn.clip.state_dict(), path)
    torch.manual_seed(123)  # a different random init underneath
    loaded = OpenCLIPBackbone(TINY_RN, pretrained=str(path))
    _same_outputs(rn, loaded)


def test_fp16_safetensors_is_cast_to_model_dtype(vit, tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / 'tiny_vit.safetensors'
    half = {k: v.half().contiguous() for k, v in vit.clip.state_dict().items()}
    save_file(half, str(path))
    loaded = OpenCLIPBackbone(TINY_VIT, pretrained=str(path))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    reference = build(TINY_VIT)
    reference.clip.load_state_dict(half)  # the same fp16-rounded weights
    _same_outputs(reference, loaded)


def test_openai_torchscript_archive_loads_with_quick_gelu(tmp_path):
    import open_clip
    from open_clip.transformer import QuickGELU
    torch.manual_seed(3)
    source = open_clip.create_model(TINY_RN, force_quick_gelu=True).eval()
    path = tmp_path / 'tiny_openai.pt'
    torch.jit.script(source).save(str(path))
    loaded = OpenCLIPBackbone(TINY_RN, pretrained=str(path))
    assert isinstance(loaded.clip.transformer.resblocks[0].mlp.gelu, QuickGELU)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)['global_feat'], source.encode_image(x))
        tokens = loaded.tokenize(['a dog'])
        torch.testing.assert_close(loaded.encode_text(['a dog']), source.encode_text(tokens),
                                   atol=1e-5, rtol=1e-4)


def test_registered_in_mmpretrain_models():
    from mmpretrain.registry import MODELS
    backbone = MODELS.build(dict(type='OpenCLIPBackbone', model_name=TINY_RN))
    assert isinstance(backbone, OpenCLIPBackbone) and backbone.is_resnet


# ------------------------------------------------------------------ features contract
@pytest.mark.parametrize('name,size,mean_token,grid', [
    (TINY_RN, 64, True, (2, 2)), (TINY_RN, 96, False, (3, 3)), (TINY_RN, 128, True, (4, 4)),
    (TINY_VIT, 64, False, (4, 4)), (TINY_VIT, 96, False, (6, 6))])
def test_grid_is_the_dense_layout(name, size, mean_token, grid):
    """``grid`` (h, w) describes ``dense`` exactly, whatever the backbone's switches:
    ``dense[:, i * w + j]`` is location (i, j); pooled tokens travel apart."""
    kwargs = dict(with_mean_token=mean_token) if name == TINY_RN else {}
    backbone = build(name, image_size=size, **kwargs)
    out = backbone(images(size))
    h, w = grid
    assert out['grid'] == grid and out['dense'].shape[1] == h * w
    assert ('prefix_tokens' in out) == mean_token
    if name == TINY_RN:  # location (i, j) is layer4's pixel (i, j), row-major
        with torch.no_grad():
            feat = layer4(backbone, images(size))
        assert feat.shape[-2:] == grid


def test_teacher_is_the_frozen_original_tower():
    """``with_teacher``: the teacher's global feature is the untouched tower's, before
    and after the student's tail has trained, and it never gets a gradient."""
    student = build(TINY_VIT, trainable_vision_blocks=1, with_teacher=True)
    reference = build(TINY_VIT)
    x = images()
    out = student(x)
    torch.testing.assert_close(out['teacher_global_feat'], reference(x)['global_feat'])
    torch.testing.assert_close(out['global_feat'], out['teacher_global_feat'])
    assert not out['teacher_global_feat'].requires_grad
    assert not any(p.requires_grad for p in student.teacher_tail.parameters())
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1.0)
    out['global_feat'].pow(2).sum().backward()
    optimizer.step()
    after = student(x)
    assert not torch.allclose(after['global_feat'], out['global_feat'])
    torch.testing.assert_close(after['teacher_global_feat'], reference(x)['global_feat'])
    with pytest.raises(ValueError, match='trainable_vision_blocks'):
        build(TINY_VIT, with_teacher=True)
