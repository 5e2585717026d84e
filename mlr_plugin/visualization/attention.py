"""Per-class attention of a model: the head's ``attention`` output as maps over the image.

The heads that pool regions (DualCoOp, DualCoOp++, ...) return ``attention`` (B, C, L)
from ``forward``: per class, a weight for every location, prefix tokens first (pooled
tokens with no place in the image), then the backbone's feature grid row-major.
"""
from typing import Optional, Tuple

import numpy as np
import torch


def attention_to_maps(attention: np.ndarray, grid: Tuple[int, int]) -> np.ndarray:
    """(C, L) attention of one image -> (C, h, w) maps over the feature grid.

    The last ``h * w`` locations are the grid (row-major, as ``OpenCLIPBackbone`` emits
    them); any locations before them are prefix tokens and are dropped.
    """
    attention = np.asarray(attention)
    h, w = (int(v) for v in grid)
    if attention.ndim != 2 or attention.shape[1] < h * w:
        raise ValueError(f'attention must be (C, L) with L >= grid {h}x{w} = {h * w} '
                         f'locations, got shape {attention.shape}')
    return attention[:, attention.shape[1] - h * w:].reshape(-1, h, w)


@torch.no_grad()
def scores_and_attention(model, inputs: torch.Tensor
                         ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Tuple[int, int]]:
    """(B, C) scores, (B, C, L) attention (None when the head has none) and the feature
    grid (h, w) of a ``CLIPPromptClassifier`` on preprocessed ``inputs``.

    The head's forward runs once: the scores are ``head.predict_scores`` of the same
    outputs the attention comes from, as ``head.predict`` computes them.
    """
    feats = model.extract_feat(inputs)
    outputs = model.head(feats, model.encode_classes())
    scores = model.head.predict_scores(outputs).float()
    attention = outputs.get('attention')
    return scores, None if attention is None else attention.float(), tuple(feats['grid'])
