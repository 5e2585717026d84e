"""Per-class attention maps drawn over the image: where each class was found.

:func:`draw_class_heatmaps` draws (K, h, w) maps (``attention.attention_to_maps``), one
panel per class, over the image; :func:`draw_topk` picks the best-scoring classes.
Panels are composed with OpenCV and captioned with Pillow (a few ms a figure, so
``tools/test.py --show-dir`` can draw a whole test set).
"""
import functools
from typing import Optional, Sequence, Tuple

import numpy as np

ALPHA = 0.5  # weight of the colour map over the image
CMAP = 'jet'
GAP = 8  # pixels between panels and around the figure
CAPTION_PX = 30  # height of the caption strip above each panel
FONT_PX = 18


def upsample_map(heat: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(h, w) map -> (H, W), bilinear with cell centres aligned (each grid cell covers
    its ``H/h x W/w`` block of the image, as the backbone's stride does)."""
    import cv2
    H, W = size
    return cv2.resize(np.asarray(heat, dtype=np.float32), (W, H),
                      interpolation=cv2.INTER_LINEAR)


def colourise(heat: np.ndarray, cmap: str = CMAP) -> np.ndarray:
    """(H, W) values in 0..1 -> (H, W, 3) uint8 RGB through an OpenCV colour map
    (``'jet'``, ``'turbo'``, ``'viridis'``, ``'inferno'``) or ``'gray'``."""
    import cv2
    levels = (np.clip(heat, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if cmap == 'gray':
        return np.repeat(levels[..., None], 3, axis=2)
    maps = dict(jet=cv2.COLORMAP_JET, turbo=cv2.COLORMAP_TURBO,
                viridis=cv2.COLORMAP_VIRIDIS, inferno=cv2.COLORMAP_INFERNO)
    if cmap not in maps:
        raise ValueError(f'cmap must be one of {sorted(maps) + ["gray"]}, got {cmap!r}')
    return cv2.applyColorMap(levels, maps[cmap])[..., ::-1]  # OpenCV gives BGR


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = ALPHA,
                    cmap: str = CMAP) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with ``heat`` (h, w), scaled to its own 0..1 range
    (the location matters, not the absolute weight), coloured and blended on top."""
    import cv2
    heat = upsample_map(heat, image.shape[:2])
    lo, hi = float(heat.min()), float(heat.max())
    heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colour = np.ascontiguousarray(colourise(heat, cmap))
    # (1 - alpha) * image + alpha * colour, rounded and saturated to uint8
    return cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, colour, alpha, 0.0)


@functools.lru_cache(maxsize=16)
def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: bitmap font
        return ImageFont.load_default()


def _centred_text(draw, box: Tuple[int, int, int, int], text: str) -> None:
    """``text`` centred in ``box`` (x0, y0, x1, y1); too wide, it shrinks to fit."""
    x0, y0, x1, y1 = box
    size = FONT_PX
    font = _font(size)
    while draw.textlength(text, font=font) > x1 - x0 - 4 and size > 9:
        size -= 1
        font = _font(size)
    width = draw.textlength(text, font=font)
    draw.text(((x0 + x1 - width) / 2, (y0 + y1) / 2), text, fill=(0, 0, 0), font=font,
              anchor='lm')


def draw_class_heatmaps(image: np.ndarray, maps: np.ndarray, names: Sequence[str],
                        scores: Sequence[float], ncols: int = 4,
                        title: Optional[str] = None, panel_px: int = 256) -> np.ndarray:
    """One figure: the image, then each class's map over it, captioned ``name 0.87``.

    Args:
        image: (H, W, 3) uint8 RGB.
        maps: (K, h, w) float, one map per class (any grid size: upsampled to the image).
        names, scores: K class names and their scores (the captions).
        ncols: panels per row.
        title: optional line above the panels (e.g. the file name).
        panel_px: width of one panel in pixels (the image is scaled to it, keeping its
            aspect ratio), so captions stay legible next to small images.

    Returns:
        (H', W', 3) uint8 RGB figure.
    """
    image = np.asarray(image)
    maps = np.asarray(maps, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image must be (H, W, 3) uint8 RGB, got {image.dtype} '
                         f'{image.shape}')
    if maps.ndim != 3:
        raise ValueError(f'maps must be (K, h, w), got shape {maps.shape}')
    names, scores = list(names), [float(s) for s in scores]
    if not len(maps) == len(names) == len(scores):
        raise ValueError(f'maps, names and scores must have one entry per class, got '
                         f'{len(maps)}, {len(names)} and {len(scores)}')
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f'ncols must be a positive int, got {ncols!r}')

    import cv2
    from PIL import Image, ImageDraw

    pw = int(panel_px)
    ph = max(1, round(pw * image.shape[0] / image.shape[1]))
    # the maps are upsampled straight to the panel: sharper than scaling an overlay
    base = cv2.resize(image, (pw, ph), interpolation=cv2.INTER_LINEAR)
    panels = [(base, 'image')] + [(overlay_heatmap(base, m), f'{n} {s:.2f}')
                                  for m, n, s in zip(maps, names, scores)]
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    head = CAPTION_PX + GAP if title else 0
    cell_w, cell_h = pw + GAP, ph + CAPTION_PX + GAP
    canvas = np.full((head + GAP + nrows * cell_h, GAP + ncols * cell_w, 3), 255, np.uint8)
    boxes = []
    for i, (picture, caption) in enumerate(panels):
        x = GAP + (i % ncols) * cell_w
        y = head + GAP + (i // ncols) * cell_h
        canvas[y + CAPTION_PX:y + CAPTION_PX + ph, x:x + pw] = picture
        boxes.append(((x, y, x + pw, y + CAPTION_PX), caption))
    figure = Image.fromarray(canvas)
    draw = ImageDraw.Draw(figure)
    if title:
        _centred_text(draw, (GAP, GAP, canvas.shape[1] - GAP, GAP + CAPTION_PX), title)
    for box, caption in boxes:
        _centred_text(draw, box, caption)
    return np.asarray(figure).copy()


def draw_topk(image: np.ndarray, scores: np.ndarray, maps: np.ndarray,
              names: Sequence[str], topk: int, title: Optional[str] = None,
              ncols: Optional[int] = None) -> np.ndarray:
    """The figure of the ``topk`` best-scoring classes (ties: lower index first) of one
    image: ``scores`` (C,), ``maps`` (C, h, w), ``names`` C; ``ncols`` defaults to one
    row of up to 6 panels."""
    scores = np.asarray(scores, dtype=np.float64)
    if maps is None:
        raise ValueError("this head returns no attention maps to draw (only heads whose "
                         "forward returns 'attention' can be visualised)")
    if not len(scores) == len(maps) == len(names):
        raise ValueError(f'scores, maps and names must have one entry per class, got '
                         f'{len(scores)}, {len(maps)} and {len(names)}')
    order = np.argsort(-scores, kind='stable')[:topk]
    return draw_class_heatmaps(image, np.asarray(maps)[order], [names[i] for i in order],
                               scores[order], ncols=ncols or min(len(order) + 1, 6),
                               title=title)
