"""MKT's losses (docs/methods.md section 5): a pairwise ranking loss over known
positive / negative labels and an L1 distillation of the image embedding.

Labels per (image, class) are ``1`` positive, ``0`` negative and ``-1`` unknown (any
other value counts as unknown). Reductions are over the global batch
(:mod:`.reduction`): N processes train like one process on the same global batch.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from ..utils import at_least_fp32
from .reduction import global_batch_mean


def pairwise_ranking_per_image(logit: torch.Tensor, target: torch.Tensor,
                               margin: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """MKT's ranking loss of each image (the paper's Eq. of the ranking loss).

    ``h(p, n) = max(0, margin + s_n - s_p)`` over every pair of a known positive ``p``
    and a known negative ``n`` of the image; the image's loss is
    ``sum_(p, n) h / (#{(p, n): h > 0} + eps)``: the mean hinge over the *violating*
    pairs only. With no violating pair (or no pair at all) the loss is exactly 0. The
    violation count is a constant for the gradient.

    Args:
        logit: (B, C) scores.
        target: (B, C) labels in {1, 0, -1}.
    Returns:
        (B,) losses, at least fp32.
    """
    if logit.shape != target.shape or logit.dim() != 2:
        raise ValueError(f'logit {tuple(logit.shape)} and target {tuple(target.shape)} '
                         'must both be (B, C)')
    logit = at_least_fp32(logit)
    is_pos = target == 1
    is_neg = target == 0
    # hinge[b, n, p] = margin + s_n - s_p, kept only where n is a negative and p a positive
    hinge = margin + logit.unsqueeze(2) - logit.unsqueeze(1)
    pair = is_neg.unsqueeze(2) & is_pos.unsqueeze(1)
    hinge = torch.where(pair, hinge, hinge.new_zeros(())).clamp(min=0)
    violations = (hinge > 0).sum(dim=(1, 2)).to(hinge.dtype)
    return hinge.sum(dim=(1, 2)) / (violations + eps)


@MODELS.register_module()
class PairwiseRankingLoss(nn.Module):
    """MKT's ranking loss, averaged over images (see :func:`pairwise_ranking_per_image`).

    Args:
        margin: hinge margin (1).
        eps: added to the violation count (MKT's code: 1e-8).
        skip_images_without_positive: leave images with no known positive out of the
            mean (MKT's training loop drops them from the batch before any loss). Images
            with positives but no violating pair still count (as 0).
        loss_weight: multiplies the loss.
    """

    def __init__(self, margin: float = 1.0, eps: float = 1e-8,
                 skip_images_without_positive: bool = True, loss_weight: float = 1.0):
        super().__init__()
        if eps <= 0:
            raise ValueError(f'eps must be > 0, got {eps}')
        self.margin = float(margin)
        self.eps = float(eps)
        self.skip_images_without_positive = bool(skip_images_without_positive)
        self.loss_weight = float(loss_weight)

    def forward(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_image = pairwise_ranking_per_image(logit, target, self.margin, self.eps)
        counted = ((target == 1).any(dim=1) if self.skip_images_without_positive
                   else torch.ones_like(per_image, dtype=torch.bool))
        total = torch.where(counted, per_image, per_image.new_zeros(())).sum()
        return self.loss_weight * global_batch_mean(total, counted.sum())

    def extra_repr(self) -> str:
        return (f'margin={self.margin}, eps={self.eps}, skip_images_without_positive='
                f'{self.skip_images_without_positive}, loss_weight={self.loss_weight}')


@MODELS.register_module()
class EmbeddingL1Loss(nn.Module):
    """Knowledge distillation of an embedding: mean absolute difference between the
    student's and the (detached) teacher's vectors over all kept images and dimensions
    (MKT: ``F.l1_loss(student_cls_embedding, teacher_cls_embedding)`` on the raw,
    un-normalised embeddings).

    Args:
        loss_weight: multiplies the loss.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """student, teacher: (B, D); keep: optional (B,) bool, the images that count."""
        if student.shape != teacher.shape or student.dim() != 2:
            raise ValueError(f'student {tuple(student.shape)} and teacher '
                             f'{tuple(teacher.shape)} must both be (B, D)')
        diff = (at_least_fp32(student) - at_least_fp32(teacher).detach()).abs().sum(dim=1)
        if keep is None:
            keep = torch.ones_like(diff, dtype=torch.bool)
        total = torch.where(keep, diff, diff.new_zeros(())).sum()
        return self.loss_weight * global_batch_mean(total, keep.sum() * student.shape[1])

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}'
