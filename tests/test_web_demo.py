"""The open-vocabulary web demo (tools/demo/app.py): its handler as a plain function
(always), and the page driven in headless Chromium (when gradio, playwright and Debian's
chromium are installed; skipped with the reason otherwise)."""
import importlib.util
import os
import shutil
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlr_plugin.datasets.demo_world import DEMO_CLASSES

REPO = Path(__file__).parent.parent
EXAMPLES = REPO / 'tools' / 'demo' / 'examples'
CLEAR_EXAMPLE = EXAMPLES / 'red_ring.png'  # one large red ring
BROWSER_NAMES = 'blue square, red ring, green star, yellow circle'
PAGE_TIMEOUT_MS = 60_000


def _load_app():
    spec = importlib.util.spec_from_file_location('tool_demo_app',
                                                  REPO / 'tools' / 'demo' / 'app.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = _load_app()


def _read_rgb(path):
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


@pytest.fixture(scope='module')
def clip_scorer():
    return app.default_scorer()


# ------------------------------------------------------------------ handler, no browser
def test_parse_names():
    assert app.parse_names('red circle, blue star') == ['red circle', 'blue star']
    assert app.parse_names(' , a ,, b c ,') == ['a', 'b c']
    with pytest.raises(ValueError, match='type at least one class name'):
        app.parse_names(' ,  , ')
    with pytest.raises(ValueError, match="lists 'a' more than once"):
        app.parse_names('a, b, a')


def test_predict_scores_are_clips_zero_shot_softmax_and_maps_its_dense_cosines(
        clip_scorer):
    image = _read_rgb(CLEAR_EXAMPLE)
    names = list(DEMO_CLASSES)
    scores, figure = app.predict(image, ', '.join(names), clip_scorer)
    assert list(scores) == names
    assert max(scores, key=scores.get) == 'red ring'
    assert figure.dtype == np.uint8 and figure.ndim == 3 and figure.shape[2] == 3
    assert figure.shape[0] > 300 and figure.shape[1] > 300 and figure.std() > 10

    # independently: open_clip's own encoders, then a plain loop over classes / locations
    backbone = clip_scorer.backbone
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    x = ((x - torch.tensor(backbone.image_mean).view(3, 1, 1))
         / torch.tensor(backbone.image_std).view(3, 1, 1))[None]
    with torch.no_grad():
        image_emb = F.normalize(backbone.clip.encode_image(x).float(), dim=-1)[0]
        texts = F.normalize(backbone.clip.encode_text(
            backbone.tokenizer([f'a photo of a {n}.' for n in names])).float(), dim=-1)
        dense = backbone(x)['dense'][0].float()
    logits = [float(backbone.clip.logit_scale.exp()) * float(texts[c] @ image_emb)
              for c in range(len(names))]
    expected = np.exp(np.array(logits) - max(logits))
    expected /= expected.sum()
    np.testing.assert_allclose([scores[n] for n in names], expected, rtol=1e-4, atol=1e-6)

    _, maps = clip_scorer(image, names)
    h, w = backbone.feat_grid
    assert maps.shape == (len(names), h, w)
    for c in range(len(names)):
        for loc in range(h * w):
            cos = float(dense[loc] @ texts[c]) / float(dense[loc].norm())
            assert maps[c, loc // w, loc % w] == pytest.approx(cos, abs=1e-4)


def test_predict_resizes_any_upload_and_rejects_bad_input(clip_scorer):
    image = _read_rgb(CLEAR_EXAMPLE)
    big = cv2.resize(image, (300, 200), interpolation=cv2.INTER_LINEAR)
    rgba = np.concatenate([big, np.full(big.shape[:2] + (1,), 255, np.uint8)], axis=2)
    scores, _ = app.predict(rgba, 'red ring, blue star', clip_scorer)
    assert set(scores) == {'red ring', 'blue star'}
    with pytest.raises(ValueError, match='upload an image'):
        app.predict(None, 'red ring', clip_scorer)
    with pytest.raises(ValueError, match='type at least one class name'):
        app.predict(image, ' , ', clip_scorer)


def test_a_config_model_scores_with_its_head_through_inference_model():
    from mlr_plugin.apis import MultiLabelInferencer
    config = str(REPO / 'configs/demo/zeroshot_handcrafted.py')
    scorer = app.ModelScorer(config, default_names=DEMO_CLASSES)
    assert scorer.default_names == list(DEMO_CLASSES)
    image = _read_rgb(EXAMPLES / 'red_square_yellow_cross.png')
    names = ['yellow cross', 'red square', 'green ring']
    scores, figure = app.predict(image, ', '.join(names), scorer)
    # the same checkpoint-free model, scored by the inferencer directly
    direct = MultiLabelInferencer(config, class_names=names)(image)[0]['scores']
    assert list(scores) == names
    for name in names:
        assert scores[name] == pytest.approx(direct[name], abs=1e-6)
    assert figure.dtype == np.uint8 and figure.shape[0] > 200


def test_example_images_are_the_seeded_drawings_they_are_named_after():
    assert [Path(p).name for p in app.example_images()] == [n for n, _ in app.EXAMPLES]
    for name, seed in app.EXAMPLES:
        drawn, classes = app.draw_example(seed)
        np.testing.assert_array_equal(_read_rgb(EXAMPLES / name), drawn)
        assert name == '_'.join(classes).replace(' ', '_') + '.png'


def test_command_line_checks_before_starting(tmp_path):
    args = app.parse_args([])
    assert (args.model, args.host, args.port) == (None, '127.0.0.1', 7860)
    with pytest.raises(ValueError, match='--port must be in 1..65535'):
        app.parse_args(['--port', '70000'])
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        app.parse_args([str(tmp_path / 'nothing.pth')])


# ---------------------------------------------------------------------- the real page
def _chromium():
    for path in ('/usr/bin/chromium', shutil.which('chromium'), shutil.which('chromium-browser')):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _browser_skip_reason():
    missing = [name for name in ('gradio', 'playwright')
               if importlib.util.find_spec(name) is None]
    if missing:
        return f'{" and ".join(missing)} not installed (pip install -e ".[tests]")'
    if _chromium() is None:
        return 'no chromium browser (apt-get install chromium)'
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def drive_page(url: str, image: str, names: str, screenshot: str = None) -> dict:
    """Upload ``image``, type ``names``, press Score; returns what the page shows:
    the top label, {name: confidence text}, and the heatmap's pixel size."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            page = browser.new_page(viewport={'width': 1280, 'height': 900})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(url)
            page.set_input_files('#image-input input[type=file]', image)
            page.locator('#names-input textarea').fill(names)
            page.click('#submit')
            top = page.wait_for_selector('#scores-output [data-testid="label-output-value"]')
            page.wait_for_function(
                "() => { const img = document.querySelector('#heatmap-output img');"
                " return img && img.complete && img.naturalWidth > 0; }")
            confidences = {
                row.locator('dt').inner_text(): row.locator('dd').inner_text()
                for row in page.locator('#scores-output .confidence-set').all()}
            size = page.evaluate("() => { const img = document.querySelector("
                                 "'#heatmap-output img'); return [img.naturalWidth,"
                                 " img.naturalHeight]; }")
            if screenshot:
                page.screenshot(path=screenshot, full_page=True)
            return dict(top=top.inner_text(), confidences=confidences, heatmap_size=size)
        finally:
            browser.close()


def test_page_in_headless_chromium_ranks_a_clear_image_and_shows_heatmaps(tmp_path):
    reason = _browser_skip_reason()
    if reason:
        print(f'SKIPPED browser test: {reason}')
        pytest.skip(reason)
    port = _free_port()
    server = app.main(['--port', str(port), '--host', '127.0.0.1'], block=False)
    try:
        shown = drive_page(f'http://127.0.0.1:{port}', str(CLEAR_EXAMPLE), BROWSER_NAMES,
                           screenshot=str(tmp_path / 'page.png'))
    finally:
        server.close()
    assert shown['top'] == 'red ring'
    assert set(shown['confidences']) == set(app.parse_names(BROWSER_NAMES))
    assert all(text.endswith('%') for text in shown['confidences'].values())
    width, height = shown['heatmap_size']
    assert width > 300 and height > 300
    assert (tmp_path / 'page.png').stat().st_size > 10_000
    with socket.socket() as sock:  # the server is gone: its port is free again
        sock.bind(('127.0.0.1', port))


def test_a_trained_checkpoint_offers_its_classes_and_refuses_unknown_names(tmp_path):
    """A checkpoint from tools/train.py (DualCoOp, class-specific contexts; 2 iterations)
    fills the names box with its classes and scores them; a name it was not trained on
    is a one-line error naming close matches."""
    from mlr_plugin.datasets.demo_world import generate_demo_world
    world = generate_demo_world(tmp_path / 'world', seed=2, num_train=8, num_val=2,
                                num_test=2)
    spec = importlib.util.spec_from_file_location('tool_train_for_demo',
                                                  REPO / 'tools' / 'train.py')
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    options = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.dataset.data_root={world}', f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False', f'{loader}.batch_size=4']
    train.main([str(REPO / 'configs/demo/dualcoop_p10.py'), '--work-dir',
                str(tmp_path / 'work'), '--no-validate', '--cfg-options', *options,
                'train_cfg.max_epochs=1'])
    checkpoint = str(tmp_path / 'work' / 'epoch_1.pth')
    scorer, names = app.make_scorer(checkpoint)
    assert names == list(DEMO_CLASSES)
    scores, figure = app.predict(_read_rgb(CLEAR_EXAMPLE), 'red ring, blue star', scorer)
    assert list(scores) == ['red ring', 'blue star']
    assert all(0.0 <= s <= 1.0 for s in scores.values()) and figure.shape[0] > 200
    with pytest.raises(ValueError, match=r"'red rings' \(did you mean 'red ring'"):
        app.predict(_read_rgb(CLEAR_EXAMPLE), 'red rings', scorer)
