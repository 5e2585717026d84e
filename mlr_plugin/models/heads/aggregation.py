"""Region aggregation: turn per-location similarities into per-class logits.

Pure functions shared by the heads (METHODS.md sections 1 and 2). Shapes:
``B`` images, ``C`` classes, ``L`` locations, ``D`` embedding width. All similarity
maps are cosines laid out as (B, C, L).

Softmaxes over large ``scale * cos`` values are computed in fp32: similarities are
upcast to fp32 right after the matmul, which is cheap and keeps bf16 autocast safe.
"""
from typing import Optional, Tuple

import torch


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 (autocast) to fp32; keep fp32/fp64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_maps(**maps: torch.Tensor) -> None:
    shape = None
    for name, value in maps.items():
        if value.dim() != 3:
            raise ValueError(f'{name} must be (B, C, L), got shape {tuple(value.shape)}')
        if shape is not None and value.shape != shape:
            raise ValueError(f'{name} shape {tuple(value.shape)} does not match '
                             f'{tuple(shape)}')
        shape = value.shape


def dense_text_similarity(dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine of every location with every class prompt, in fp32.

    Args:
        dense: (B, L, D) L2-normalised location features.
        text: (C, D) L2-normalised text features.

    Returns:
        (B, C, L) similarities, at least fp32.
    """
    if dense.dim() != 3 or text.dim() != 2 or dense.shape[-1] != text.shape[-1]:
        raise ValueError(f'expected dense (B, L, D) and text (C, D) with the same D, got '
                         f'{tuple(dense.shape)} and {tuple(text.shape)}')
    # One batched matmul; upcast so later softmaxes never run in bf16.
    return _at_least_fp32(torch.einsum('bld,cd->bcl', dense, text.to(dense.dtype)))


def spatial_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over locations (last dim) in fp32. (B, C, L) -> (B, C, L)."""
    return torch.softmax(_at_least_fp32(scores), dim=-1)


def class_specific_region_aggregation(sim_pos: torch.Tensor, sim_neg: torch.Tensor,
                                      spatial_scale: float, logit_scale: float,
                                      return_weights: bool = False):
    """DualCoOp's class-specific region aggregation.

    ``s± = spatial_scale * sim±``, ``w = softmax_j(s+)``,
    ``l± = logit_scale * sum_j w * s±`` (the positive map picks the regions for both).

    Args:
        sim_pos, sim_neg: (B, C, L) cosines with the positive / negative prompts.
        return_weights: also return ``w`` (B, C, L), e.g. for heatmaps.

    Returns:
        ``(pos_logit, neg_logit)`` each (B, C), plus ``w`` when ``return_weights``.
    """
    _check_maps(sim_pos=sim_pos, sim_neg=sim_neg)
    score_pos = spatial_scale * _at_least_fp32(sim_pos)
    score_neg = spatial_scale * _at_least_fp32(sim_neg)
    weights = spatial_softmax(score_pos)
    pos_logit = logit_scale * (weights * score_pos).sum(dim=-1)
    neg_logit = logit_scale * (weights * score_neg).sum(dim=-1)
    if return_weights:
        return pos_logit, neg_logit, weights
    return pos_logit, neg_logit


def winner_take_all(sim_pos: torch.Tensor, gamma: float) -> torch.Tensor:
    """DualCoOp++'s Winner-Take-All weights, competing across classes per location.

    ``g_j = gamma * max_c sim_pos[c, j]``, ``w = softmax_c(g_j * sim_pos)``,
    ``w~ = w / max_c w``: the winner keeps 1, the others shrink towards 0.

    Args:
        sim_pos: (B, C, L) cosines with the positive prompts.
        gamma: sharpness (200 in DualCoOp++).

    Returns:
        (B, C, L) weights in [0, 1].
    """
    _check_maps(sim_pos=sim_pos)
    sim_pos = _at_least_fp32(sim_pos)
    scores = gamma * sim_pos.amax(dim=1, keepdim=True) * sim_pos
    # softmax(x)_c / max_c softmax(x)_c == exp(x_c - max_c x): same value, no division,
    # and the winner gets exactly 1.
    return torch.exp(scores - scores.amax(dim=1, keepdim=True))


def evidence_attention(sim_evidence: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """DualCoOp++'s evidence-guided spatial attention ``pi = softmax_j(T * a)``.

    Args:
        sim_evidence: (B, C, L) cosines ``a`` with the evidential prompts.
        temperature: scalar ``T`` (a tensor, so it can be learnable).

    Returns:
        (B, C, L) attention, summing to 1 over locations.
    """
    _check_maps(sim_evidence=sim_evidence)
    return spatial_softmax(temperature * _at_least_fp32(sim_evidence))


def evidence_guided_aggregation(attention: torch.Tensor, pos_map: torch.Tensor,
                                neg_map: torch.Tensor,
                                wta: Optional[torch.Tensor] = None
                                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pool location maps with evidence attention.

    ``l+ = sum_j pi * w~ * P``, ``l- = sum_j pi * N`` (``w~ = 1`` when ``wta`` is None).

    Args:
        attention: (B, C, L) ``pi``.
        pos_map, neg_map: (B, C, L) ``P = k cos(x, t+)``, ``N = k cos(x, t-)``.
        wta: optional (B, C, L) winner-take-all weights ``w~``.

    Returns:
        ``(pos_logit, neg_logit)`` each (B, C).
    """
    maps = dict(attention=attention, pos_map=pos_map, neg_map=neg_map)
    if wta is not None:
        maps['wta'] = wta
    _check_maps(**maps)
    pos_weights = attention if wta is None else attention * wta
    pos_logit = (pos_weights * pos_map).sum(dim=-1)
    neg_logit = (attention * neg_map).sum(dim=-1)
    return pos_logit, neg_logit
