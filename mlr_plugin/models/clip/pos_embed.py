"""Resize CLIP's grid positional embeddings to another input size."""
from typing import Tuple

import torch
import torch.nn.functional as F


def resize_grid_pos_embed(pos_embed: torch.Tensor, old_grid: Tuple[int, int],
                          new_grid: Tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """Bicubically resize a ``(prefix + h*w, C)`` positional embedding to ``new_grid``.

    The prefix rows (CLIP's class / mean-token row) are kept as they are; the grid rows
    (row-major ``h x w``) are interpolated with ``align_corners=False`` and no
    antialiasing (the DualCoOp reference resize). At the same grid size the input is
    returned unchanged.

    Args:
        pos_embed: ``(num_prefix_tokens + oh*ow, C)``.
        old_grid: ``(oh, ow)``.
        new_grid: ``(nh, nw)``.
    Returns:
        ``(num_prefix_tokens + nh*nw, C)`` in the input dtype.
    """
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    expected = num_prefix_tokens + old_grid[0] * old_grid[1]
    if pos_embed.shape[0] != expected:
        raise ValueError(f'positional embedding has {pos_embed.shape[0]} rows, expected '
                         f'{expected} for grid {old_grid} + {num_prefix_tokens} prefix rows')
    if old_grid == new_grid:
        return pos_embed
    prefix, grid = pos_embed[:num_prefix_tokens], pos_embed[num_prefix_tokens:]
    channels = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    if grid.dtype in (torch.float16, torch.bfloat16):
        grid = grid.float()  # bicubic is not implemented for every half type on CPU
    grid = F.interpolate(grid, size=new_grid, mode='bicubic', align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], channels)
    return torch.cat([prefix, grid.to(pos_embed.dtype)], dim=0)
