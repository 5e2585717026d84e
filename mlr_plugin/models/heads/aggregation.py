"""Helpers every head shares: fp32 similarity maps between locations and class prompts.

A method's own pooling (DualCoOp's class-specific region aggregation, DualCoOp++'s
evidence attention and Winner-Take-All, ...) lives in that method's head file; only what
several heads use sits here. Shapes: ``B`` images, ``C`` classes, ``L`` locations,
``D`` embedding width; similarity maps are cosines laid out as (B, C, L).

Softmaxes over large ``scale * cos`` values are computed in fp32: similarities are
upcast to fp32 right after the matmul, which is cheap and keeps bf16 autocast safe.
"""
import torch

from ..utils import at_least_fp32


def check_maps(**maps: torch.Tensor) -> None:
    """Every map is (B, C, L) and all have the same shape."""
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
    return at_least_fp32(torch.einsum('bld,cd->bcl', dense, text.to(dense.dtype)))


def spatial_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over locations (last dim) in fp32. (B, C, L) -> (B, C, L)."""
    return torch.softmax(at_least_fp32(scores), dim=-1)
