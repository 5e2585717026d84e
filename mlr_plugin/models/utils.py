"""Small numeric helpers shared by heads and losses."""
import torch


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 (autocast) to fp32; keep fp32/fp64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
