"""Multimodal contrastive loss (TRM-ML eq. 13): text anchors against region features."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ..utils import at_least_fp32


def anchored_info_nce(anchor: torch.Tensor, samples: torch.Tensor,
                      sample_class: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with one anchor per class (eq. 13), averaged over the anchors that have
    at least one positive.

    For anchor ``a_c``: positives ``P_c`` = samples of class ``c``, negatives ``N_c`` =
    samples of every other class, and
    ``L_c = 1/|P_c| sum_{q+ in P_c} -log( e^{a.q+/t} / (e^{a.q+/t} + sum_{q- in N_c} e^{a.q-/t}) )``.

    Args:
        anchor: (C, D) anchors (normalised by the caller).
        samples: (M, D) samples (normalised by the caller).
        sample_class: (M,) class index of each sample.
        temperature: ``t``.

    Returns:
        Scalar (0 with a graph when no anchor has a positive).
    """
    logits = at_least_fp32(anchor) @ at_least_fp32(samples).T / temperature  # (C, M)
    classes = torch.arange(anchor.shape[0], device=anchor.device)
    positive = sample_class[None, :] == classes[:, None]                      # (C, M)
    # log sum_{q-} exp(a.q-/t) per anchor (-inf when there is no negative)
    neg_lse = torch.logsumexp(logits.masked_fill(positive, float('-inf')), dim=1)
    per_pair = torch.logaddexp(logits, neg_lse[:, None]) - logits           # -log(...)
    num_pos = positive.sum(dim=1)
    per_anchor = torch.where(positive, per_pair, per_pair.new_zeros(())).sum(dim=1)
    has_pos = num_pos > 0
    if not has_pos.any():
        return logits.sum() * 0.0
    return (per_anchor[has_pos] / num_pos[has_pos]).mean()


@MODELS.register_module()
class MultimodalContrastiveLoss(nn.Module):
    """TRM-ML's multimodal contrastive learning (eq. 13).

    Anchor of class ``c``: its (positive-prompt) text feature ``g_c``. Positives: the
    region features ``f^r_{i,c}`` of the batch images labelled positive for ``c`` (known
    or pseudo) and the class-``c`` visual prototypes of the bank. Negatives: the same
    for every other class. All pass through one projection MLP (the paper's "additional
    multilayer perceptron"; **[ours]** shared by both modalities, ``D -> D -> D`` with
    ReLU, then L2 normalisation) and meet in an InfoNCE with temperature ``t``
    (:func:`anchored_info_nce`).

    Args:
        embed_dim: D.
        hidden_dim: MLP width (default D).
        temperature: ``t`` **[ours]** (0.07).
        loss_weight: ``gamma`` of eq. 15 (0.01).

    Training-only: checkpoints without its projection load for testing / inference.
    """

    checkpoint_training_only = True

    def __init__(self, embed_dim: int, hidden_dim: Optional[int] = None,
                 temperature: float = 0.07, loss_weight: float = 0.01):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        hidden_dim = hidden_dim or embed_dim
        self.projection = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.ReLU(),
                                        nn.Linear(hidden_dim, embed_dim))
        self.temperature = float(temperature)
        self.loss_weight = float(loss_weight)

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(at_least_fp32(feats)), dim=-1)

    def forward(self, text: torch.Tensor, region_feat: torch.Tensor, target: torch.Tensor,
                bank_feats: Optional[torch.Tensor] = None,
                bank_class: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            text: (C, D) anchors ``g_c``.
            region_feat: (N, C, D) region features of the (global) batch.
            target: (N, C) labels; entries equal to 1 make samples.
            bank_feats: (M, D) prototypes from the bank, with ``bank_class`` (M,).

        Returns:
            ``loss_weight * L_NCE``.
        """
        image_idx, class_idx = (target == 1).nonzero(as_tuple=True)
        samples = region_feat[image_idx, class_idx]
        if bank_feats is not None and len(bank_feats):
            samples = torch.cat([samples, bank_feats.to(samples.dtype)])
            class_idx = torch.cat([class_idx, bank_class.to(class_idx)])
        loss = anchored_info_nce(self.project(text), self.project(samples), class_idx,
                                 self.temperature)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return f'temperature={self.temperature}, loss_weight={self.loss_weight}'
