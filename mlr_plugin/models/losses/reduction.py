"""Reductions over the *global* batch, so N processes train like one.

DDP averages gradients over processes. A loss summed over the local batch would then
give 1/N of the single-process gradient, and a mean over the local batch the mean of
per-process means. These helpers return a per-process loss whose DDP-averaged gradient
equals the gradient of the same reduction over the global batch (the union of the
processes' batches). Outside a distributed run they are the plain sum / mean.
"""
import torch
import torch.distributed as dist


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def global_batch_sum(local_sum: torch.Tensor) -> torch.Tensor:
    """``world_size * local_sum``: DDP's average of it is the global sum's gradient."""
    return local_sum * world_size()


def global_batch_mean(local_sum: torch.Tensor, local_count: torch.Tensor) -> torch.Tensor:
    """``world_size * local_sum / global_count`` (0 when nothing is counted anywhere)."""
    num = world_size()
    count = local_count.detach().to(local_sum.dtype)
    if num > 1:
        count = count.clone()
        dist.all_reduce(count)  # every process must call this: a collective per step
    return local_sum * num / count.clamp(min=1)
