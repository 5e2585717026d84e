"""Open-vocabulary web demo: an image and any class names in, ranked scores and one
heatmap per top class out (a Gradio page on this machine).

    pip install -e ".[demo]"
    python tools/demo/app.py                                  # the shipped demo CLIP
    python tools/demo/app.py work_dirs/dualcoop_p10/epoch_4.pth --port 7861
    python tools/demo/app.py configs/demo/zeroshot_handcrafted.py

Then open http://127.0.0.1:7860 (``--host 0.0.0.0`` serves other machines too).

Without a model argument the page scores with the shipped demo CLIP's own zero-shot
classifier, as CLIP does it: the cosine of the image embedding with the text embedding
of "a photo of a {}." for every name typed, as a softmax over those names (x the CLIP's
logit scale); nothing is trained, so any name can be typed. Each name's heatmap is the
same cosine at every location of the feature grid (the attention pool's value path: the
dense features the DualCoOp family pools). Why this scorer: a page ranks the names for
one image, and on the demo world's val split (first 300 images, measured once) the image
embedding puts a true class first on 84.7% of the images (label-ranking AP 77.2), the
best location per name on 50.3% (64.2), while the hand-crafted positive / negative prompt
pair of ``configs/demo/zeroshot_handcrafted.py`` is at chance (the tiny CLIP never saw
"without" in a caption; README, Demo world).

A checkpoint from ``tools/train.py`` (or a config) scores with its own head: the scores
are the head's per-class probabilities, the heatmaps its attention maps (DualCoOp's
region weights, ...). Shared-context prompts score any name; class-specific ones only
the classes they were trained on.

The handler, :func:`predict`, is a plain function of (image, names text); the page only
wires it to widgets.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from _bootstrap import cli  # noqa: E402  (also puts the repository on sys.path)

EXAMPLES_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'examples')
DEMO_WEIGHTS = 'mlr_plugin://demo/mlr-demo-rn.safetensors'
TEMPLATE = 'a photo of a {}.'
TOP_MAPS = 5  # heatmaps drawn: the best-scoring names


def parse_names(text: str) -> List[str]:
    """'red circle, blue star' -> ['red circle', 'blue star'] (spaces trimmed, empty
    entries between commas ignored); a one-line ValueError for no name or a repeat."""
    from mlr_plugin.apis.inference import check_class_names
    if not isinstance(text, str):
        raise ValueError(f'class names must be text, got {type(text).__name__}')
    names = [name.strip() for name in text.split(',') if name.strip()]
    if not names:
        raise ValueError('type at least one class name (comma-separated, e.g. '
                         '"red circle, blue star")')
    return check_class_names(names)


class ClipZeroShotScorer:
    """The demo CLIP's own zero-shot classifier (see the module docstring): scores (C,)
    softmax over the names of ``logit_scale x cos(image embedding, text)``; maps
    (C, h, w) the cosine of every grid location's dense feature with each text."""

    def __init__(self, model_name: str = 'mlr-demo-rn', pretrained: str = DEMO_WEIGHTS,
                 image_size: int = 128, template: str = TEMPLATE):
        import torch

        from mlr_plugin.models.clip import OpenCLIPBackbone
        from mlr_plugin.models.prompts import HandcraftedPrompts
        # the dense tokens of tools/demo/tiny_clip_eval.py: the attention pool's value
        # path at every location, no mean token
        self.backbone = OpenCLIPBackbone(model_name, pretrained=pretrained,
                                         image_size=image_size, with_mean_token=False,
                                         with_pos_embed=True).eval()
        self.prompts = HandcraftedPrompts(template)
        self.logit_scale = float(self.backbone.clip.logit_scale.exp())
        self.input_hw = tuple(self.backbone._input_hw)
        self.default_names = None
        self.description = (f'the shipped demo CLIP\'s zero-shot classifier ("{template}"), '
                            'nothing trained; scores: softmax over the names given')
        self._torch = torch

    def __call__(self, image: np.ndarray, names: Sequence[str]
                 ) -> Tuple[np.ndarray, np.ndarray]:
        import torch.nn.functional as F

        from mlr_plugin.models.heads.aggregation import dense_text_similarity
        torch = self._torch
        x = torch.from_numpy(resize_to(image, self.input_hw)).permute(2, 0, 1).float()
        mean = torch.tensor(self.backbone.image_mean).view(3, 1, 1)
        std = torch.tensor(self.backbone.image_std).view(3, 1, 1)
        x = ((x / 255.0 - mean) / std).unsqueeze(0)
        with torch.no_grad():
            feats = self.backbone(x)
            text = self.prompts(list(names), self.backbone)['pos']  # (C, D), unit norm
            image = F.normalize(feats['global_feat'].float(), dim=-1)[0]
            scores = torch.softmax(self.logit_scale * (text @ image), dim=0)
            cos = dense_text_similarity(F.normalize(feats['dense'].float(), dim=-1),
                                        text)[0]  # (C, L)
        h, w = feats['grid']
        return scores.numpy(), cos.reshape(len(names), h, w).numpy()


class ModelScorer:
    """A checkpoint from tools/train.py or a config, through
    :func:`mlr_plugin.apis.inference_model`: its head's scores and attention maps."""

    def __init__(self, model: str, default_names: Optional[Sequence[str]] = None):
        from mlr_plugin.apis import MultiLabelInferencer
        # a checkpoint carries its classes; a bare config gets the demo's
        self.inferencer = MultiLabelInferencer(
            model, class_names=None if model.endswith(('.pth', '.pt')) else default_names)
        self.default_names = list(self.inferencer.class_names)
        h, w = self.inferencer.model.backbone._input_hw
        self.input_hw = (h, w)
        self.description = (f'{osp.basename(model)}: the head\'s per-class probabilities '
                            'and attention maps')

    def __call__(self, image: np.ndarray, names: Sequence[str]
                 ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        from mlr_plugin.apis import inference_model
        out = inference_model(self.inferencer, resize_to(image, self.input_hw),
                              class_names=list(names))
        return out['pred_scores'], out['attention']


def resize_to(image: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """``image`` as (h, w, 3) uint8 RGB: grey or RGBA turned RGB, resized when needed
    (area averaging down, bilinear up)."""
    import cv2
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f'expected an RGB image, got an array of shape {image.shape}')
    image = np.ascontiguousarray(image[..., :3])
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    h, w = hw
    if image.shape[:2] == (h, w):
        return image
    shrink = image.shape[0] > h or image.shape[1] > w
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink
                      else cv2.INTER_LINEAR)


def predict(image: Optional[np.ndarray], names_text: str, scorer=None,
            top_maps: int = TOP_MAPS) -> Tuple[Dict[str, float], np.ndarray]:
    """The page's handler: (RGB image, comma-separated names) -> ({name: score},
    heatmap figure (H, W, 3) uint8 of the ``top_maps`` best names).

    ``scorer`` defaults to the shipped CLIP's zero-shot scorer (built once)."""
    from mlr_plugin.visualization import draw_class_heatmaps
    if image is None:
        raise ValueError('upload an image (or pick an example) first')
    names = parse_names(names_text)
    scorer = scorer if scorer is not None else default_scorer()
    scores, maps = scorer(image, names)
    order = np.argsort(-np.asarray(scores), kind='stable')[:top_maps]
    shown = resize_to(image, scorer.input_hw)
    if maps is None:
        raise ValueError('this model\'s head returns no attention maps to draw')
    figure = draw_class_heatmaps(shown, maps[order], [names[i] for i in order],
                                 [float(scores[i]) for i in order], ncols=3)
    return {name: float(score) for name, score in zip(names, scores)}, figure


_DEFAULT_SCORER = []


def default_scorer() -> ClipZeroShotScorer:
    if not _DEFAULT_SCORER:
        _DEFAULT_SCORER.append(ClipZeroShotScorer())
    return _DEFAULT_SCORER[0]


# The example images: demo-world scenes drawn by draw_demo_image from these
# RandomState seeds (a seed no split uses), picked to show one object, two, and three of
# which the CLIP finds two. The CLIP puts a true class first on 84.7% of val images, so
# most but not all scenes come out this well.
EXAMPLES = (
    ('red_ring.png', (2025, 0, 24)),
    ('red_square_yellow_cross.png', (2025, 0, 21)),
    ('green_square_red_cross_blue_star.png', (2025, 0, 58)),
)


def draw_example(seed: Sequence[int]) -> Tuple[np.ndarray, List[str]]:
    """(128 x 128 RGB image, its class names) of one example seed."""
    from mlr_plugin.datasets.demo_world import DEMO_CLASSES, draw_demo_image
    image, objects = draw_demo_image(np.random.RandomState(list(seed)))
    return image, [DEMO_CLASSES[obj['category']] for obj in objects]


def write_examples(out_dir: str = EXAMPLES_DIR) -> List[str]:
    """Draw the example images again into ``out_dir`` (PNG, lossless)."""
    from mlr_plugin.apis.inference import write_png_atomic
    paths = []
    for name, seed in EXAMPLES:
        paths.append(osp.join(out_dir, name))
        write_png_atomic(paths[-1], draw_example(seed)[0])
    return paths


def example_images() -> List[str]:
    """The shipped example images that are there."""
    paths = [osp.join(EXAMPLES_DIR, name) for name, _ in EXAMPLES]
    return [path for path in paths if osp.isfile(path)]


def build_app(scorer, default_names: Sequence[str]):
    """The Gradio page around :func:`predict` (gradio imported here only)."""
    import gradio as gr

    def handler(image, names_text):
        try:
            return predict(image, names_text, scorer)
        except ValueError as error:  # shown on the page, one line
            raise gr.Error(str(error)) from None

    names_text = ', '.join(default_names)
    with gr.Blocks(title='mlr_plugin: open-vocabulary multi-label demo') as app:
        gr.Markdown('## mlr_plugin: open-vocabulary multi-label recognition\n'
                    f'Model: {scorer.description}. Type any class names, comma-separated; '
                    f'the heatmaps show where the {TOP_MAPS} best-scoring names were '
                    'found (red: strongest).')
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type='numpy', image_mode='RGB', label='image',
                                 elem_id='image-input', height=300)
                names = gr.Textbox(value=names_text, lines=3, label='class names',
                                   elem_id='names-input')
                button = gr.Button('Score', variant='primary', elem_id='submit')
            with gr.Column(scale=2):
                scores = gr.Label(num_top_classes=10, label='scores, best first',
                                  elem_id='scores-output')
                heatmaps = gr.Image(type='numpy', label='heatmaps', elem_id='heatmap-output',
                                    interactive=False)
        examples = example_images()
        if examples:
            gr.Examples(examples=[[path, names_text] for path in examples],
                        inputs=[image, names], label='demo-world examples')
        button.click(handler, inputs=[image, names], outputs=[scores, heatmaps])
        names.submit(handler, inputs=[image, names], outputs=[scores, heatmaps])
    return app


def make_scorer(model: Optional[str]):
    from mlr_plugin.datasets.demo_world import DEMO_CLASSES
    if model is None:
        return default_scorer(), list(DEMO_CLASSES)
    scorer = ModelScorer(model, default_names=DEMO_CLASSES)
    return scorer, scorer.default_names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', nargs='?', default=None,
                        help='checkpoint (.pth) from tools/train.py or a config (.py); '
                        'default: the shipped demo CLIP\'s zero-shot scorer')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on (default 127.0.0.1: this machine only)')
    parser.add_argument('--port', type=int, default=7860)
    cli.add_debug_arg(parser)
    args = parser.parse_args(argv)
    if args.model is not None:
        if args.model.endswith('.py'):
            cli.check_config(args.model)
        else:
            cli.check_file(args.model, 'checkpoint')
    if not 0 < args.port < 65536:
        raise ValueError(f'--port must be in 1..65535, got {args.port}')
    return args


def main(argv=None, block: bool = True):
    """Start the page; ``block=False`` returns the running app (tests close it)."""
    args = parse_args(argv)
    if importlib.util.find_spec('gradio') is None:
        raise ImportError('the web demo needs gradio: pip install -e ".[demo]" (or pip '
                          'install gradio)')
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # nothing leaves the machine
    scorer, default_names = make_scorer(args.model)
    app = build_app(scorer, default_names)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=args.host, server_port=args.port, share=False,
               prevent_thread_lock=True, show_error=True, quiet=True)
    if block:
        print(f'web demo running on http://{args.host}:{args.port} (Ctrl-C stops it)',
              flush=True)
        app.block_thread()  # until Ctrl-C, then closes the server
    return app


if __name__ == '__main__':
    cli.run_cli(main)
