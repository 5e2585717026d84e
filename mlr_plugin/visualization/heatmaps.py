"""Per-class attention maps drawn over the image: where each class was found.

:func:`draw_class_heatmaps` draws (K, h, w) maps (``attention.attention_to_maps``), one
panel per class, over the image; :func:`draw_topk` picks the best-scoring classes.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

ALPHA = 0.5  # weight of the colour map over the image
CMAP = 'jet'


def upsample_map(heat: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(h, w) map -> (H, W), bilinear with cell centres aligned (each grid cell covers
    its ``H/h x W/w`` block of the image, as the backbone's stride does)."""
    import cv2
    H, W = size
    return cv2.resize(np.asarray(heat, dtype=np.float32), (W, H),
                      interpolation=cv2.INTER_LINEAR)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = ALPHA,
                    cmap: str = CMAP) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with ``heat`` (h, w), scaled to its own 0..1 range
    (the location matters, not the absolute weight), coloured and blended on top."""
    from matplotlib import colormaps
    heat = upsample_map(heat, image.shape[:2])
    lo, hi = float(heat.min()), float(heat.max())
    heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colour = colormaps[cmap](heat)[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


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
        panel_px: size of one panel in pixels; captions stay legible for small images.

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

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(image, 'image')] + [(overlay_heatmap(image, m), f'{n} {s:.2f}')
                                   for m, n, s in zip(maps, names, scores)]
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    dpi = 100
    # a panel keeps the image's aspect ratio; 0.35 in per row of caption text
    aspect = image.shape[0] / image.shape[1]
    panel_w = panel_px / dpi
    panel_h = panel_w * aspect + 0.35
    head = 0.4 if title else 0.0
    # Figure + Agg canvas, not pyplot: no global state, safe to call from any thread
    fig = Figure(figsize=(ncols * panel_w, nrows * panel_h + head), dpi=dpi)
    FigureCanvasAgg(fig)
    for i in range(nrows * ncols):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.axis('off')
        if i < len(panels):
            picture, caption = panels[i]
            ax.imshow(picture, interpolation='bilinear')
            ax.set_title(caption, fontsize=13, pad=4)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01,
                        top=1.0 - (head + 0.35) / (nrows * panel_h + head) * 0.9,
                        wspace=0.04, hspace=0.35 / panel_w + 0.02)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


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
