"""Partial-label asymmetric losses (ASL) for multi-label recognition.

Labels per (image, class) are ``1`` positive, ``0`` negative and ``-1`` unknown.
Unknown entries add nothing to the loss and receive no gradient (any value other than
0 or 1 counts as unknown). See docs/methods.md section 0.3. Reductions are over the global batch
(:mod:`.reduction`): N processes train like one process on the same global batch.

Both losses share :func:`_partial_asl`; they differ only in how the probability of
"positive" is obtained:

- :class:`PairSoftmaxASL` (DualCoOp family): ``p+ = softmax([l-, l+])[1] = sigmoid(l+ - l-)``.
- :class:`PartialSigmoidASL` (Ridnik et al. on one logit): ``p+ = sigmoid(l)``.
"""
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from ..utils import at_least_fp32 as _at_least_fp32
from .reduction import global_batch_mean, global_batch_sum

_REDUCTIONS = ('sum', 'mean', 'none')


def _partial_asl(prob_pos: torch.Tensor, target: torch.Tensor, gamma_pos: float,
                 gamma_neg: float, clip: float, eps: float, reduction: str,
                 loss_weight: float) -> torch.Tensor:
    """Asymmetric loss on probabilities of "positive", ignoring unknown labels.

    Args:
        prob_pos: (B, C) probability that each (image, class) is positive.
        target: (B, C) labels in {1, 0, -1}; anything but 0/1 is ignored.
        reduction: 'sum' over known entries, 'mean' over known entries (0 when none
            is known), or 'none' for the (B, C) per-entry loss (0 at unknown entries).
            'sum' and 'mean' are over the global batch of a distributed run.

    Returns:
        Scalar (or (B, C) for 'none') loss, already multiplied by ``loss_weight``.
    """
    # fp32 whatever the autocast dtype: log of probabilities near 0/1 needs it.
    prob_pos = _at_least_fp32(prob_pos)
    is_pos = target == 1
    is_neg = target == 0

    # Asymmetric probability shifting: easy negatives (p- > 1 - clip) are discarded.
    prob_neg = 1.0 - prob_pos
    if clip > 0:
        prob_neg = (prob_neg + clip).clamp(max=1.0)

    # clamp(min=eps) has zero gradient below eps, so log never yields inf gradients.
    nll_pos = -torch.log(prob_pos.clamp(min=eps))
    nll_neg = -torch.log(prob_neg.clamp(min=eps))
    # Focusing weights are constants for the optimiser (as in the ASL paper / code).
    with torch.no_grad():
        focus_pos = (1.0 - prob_pos).pow(gamma_pos)
        focus_neg = (1.0 - prob_neg).pow(gamma_neg)

    # torch.where (not multiplication by a mask) so unknown entries get exactly zero
    # gradient even if their branch would be non-finite.
    zero = prob_pos.new_zeros(())
    loss = (torch.where(is_pos, focus_pos * nll_pos, zero) +
            torch.where(is_neg, focus_neg * nll_neg, zero))

    if reduction == 'sum':
        loss = global_batch_sum(loss.sum())
    elif reduction == 'mean':
        loss = global_batch_mean(loss.sum(), (is_pos | is_neg).sum())
    return loss_weight * loss


def _check_config(gamma_pos, gamma_neg, clip, eps, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}')
    if gamma_pos < 0 or gamma_neg < 0:
        raise ValueError(f'gamma_pos/gamma_neg must be >= 0, got {gamma_pos}, {gamma_neg}')
    if not 0 <= clip < 1:
        raise ValueError(f'clip must be in [0, 1), got {clip}')
    if eps <= 0:
        raise ValueError(f'eps must be > 0, got {eps}')


def _check_shapes(target, **logits):
    for name, logit in logits.items():
        if logit.shape != target.shape:
            raise ValueError(f'{name} shape {tuple(logit.shape)} does not match target '
                             f'shape {tuple(target.shape)}')


class _PartialASLBase(nn.Module):
    """Holds the hyper-parameters shared by both ASL variants."""

    def __init__(self, gamma_pos: float = 1.0, gamma_neg: float = 2.0, clip: float = 0.05,
                 eps: float = 1e-8, reduction: str = 'sum', loss_weight: float = 1.0):
        super().__init__()
        _check_config(gamma_pos, gamma_neg, clip, eps, reduction)
        self.gamma_pos = float(gamma_pos)
        self.gamma_neg = float(gamma_neg)
        self.clip = float(clip)
        self.eps = float(eps)
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def _asl(self, prob_pos, target):
        return _partial_asl(prob_pos, target, self.gamma_pos, self.gamma_neg, self.clip,
                            self.eps, self.reduction, self.loss_weight)

    def extra_repr(self):
        return (f'gamma_pos={self.gamma_pos}, gamma_neg={self.gamma_neg}, clip={self.clip}, '
                f'eps={self.eps}, reduction={self.reduction!r}, '
                f'loss_weight={self.loss_weight}')


@MODELS.register_module()
class PairSoftmaxASL(_PartialASLBase):
    """Partial-label ASL on a (positive, negative) logit pair (DualCoOp family).

    ``p+ = sigmoid(l+ - l-)``, ``p- = 1 - p+``, ``p-_c = min(p- + clip, 1)``;
    ``y=1: -(1-p+)^g+ log(max(p+, eps))``, ``y=0: -(1-p-_c)^g- log(max(p-_c, eps))``.
    """

    def forward(self, pos_logit: torch.Tensor, neg_logit: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        """pos_logit, neg_logit, target: (B, C). Returns the reduced loss."""
        _check_shapes(target, pos_logit=pos_logit, neg_logit=neg_logit)
        prob_pos = torch.sigmoid(_at_least_fp32(pos_logit) - _at_least_fp32(neg_logit))
        return self._asl(prob_pos, target)


@MODELS.register_module()
class PartialSigmoidASL(_PartialASLBase):
    """Partial-label ASL on a single logit per (image, class): ``p = sigmoid(l)``."""

    def forward(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logit, target: (B, C). Returns the reduced loss."""
        _check_shapes(target, logit=logit)
        return self._asl(torch.sigmoid(_at_least_fp32(logit)), target)
