"""DualCoOp head (docs/methods.md section 1): class-specific region aggregation."""
from typing import Dict, Optional, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .aggregation import at_least_fp32, check_maps, spatial_softmax
from .base_head import BasePairLogitHead


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
    check_maps(sim_pos=sim_pos, sim_neg=sim_neg)
    score_pos = spatial_scale * at_least_fp32(sim_pos)
    score_neg = spatial_scale * at_least_fp32(sim_neg)
    weights = spatial_softmax(score_pos)
    pos_logit = logit_scale * (weights * score_pos).sum(dim=-1)
    neg_logit = logit_scale * (weights * score_neg).sum(dim=-1)
    if return_weights:
        return pos_logit, neg_logit, weights
    return pos_logit, neg_logit


@MODELS.register_module()
class DualCoOpHead(BasePairLogitHead):
    """Scores classes by comparing positive and negative prompts region by region.

    ``s± = spatial_scale * cos(x_j, t±_c)``, ``w = softmax_j(s+)``,
    ``l± = logit_scale * sum_j w s±``. Works unchanged with fixed hand-crafted prompts
    (the zero-shot baseline). Pools over every token the backbone gives: its prefix
    tokens (the ResNet's mean token when switched on) and the grid.

    Args:
        spatial_scale: scale of cosines before the spatial softmax (20).
        logit_scale: extra scale of the pooled logits (5; 20 * 5 = CLIP's 100).
        loss: pair loss config (DualCoOp's COCO recipe: ASL gamma+ 1, gamma- 2, clip
            0.05, eps 1e-6, sum x 0.03).
        thr / topk: prediction rule (default: ``p+ > 0.5``).
        class_chunk_size: classes scored at a time (bounds memory; same outputs).

    Outputs of ``forward``: ``pos_logit``, ``neg_logit`` (B, C) and ``attention``
    (B, C, L), the spatial weights ``w`` (prefix tokens first, then the grid row-major).
    """

    prompt_names = ('pos', 'neg')

    def __init__(self, spatial_scale: float = 20.0, logit_scale: float = 5.0,
                 loss: Union[dict, nn.Module] = dict(
                     type='PairSoftmaxASL', gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
                     eps=1e-6, reduction='sum', loss_weight=0.03),
                 thr: Optional[float] = None, topk: Optional[int] = None,
                 class_chunk_size: Optional[int] = 512, init_cfg=None):
        super().__init__(loss=loss, thr=thr, topk=topk, class_chunk_size=class_chunk_size,
                         init_cfg=init_cfg)
        self.spatial_scale = float(spatial_scale)
        self.logit_scale = float(logit_scale)

    def forward(self, feats: Dict[str, torch.Tensor], text: Dict[str, torch.Tensor],
                maps: bool = True) -> Dict[str, torch.Tensor]:
        """Logits, and the attention maps unless ``maps=False``."""
        outputs = []
        # every class is pooled on its own, so chunks of classes give the same numbers
        for sim in self.chunked_similarities(feats, text):
            pos_logit, neg_logit, weights = class_specific_region_aggregation(
                sim['pos'], sim['neg'], self.spatial_scale, self.logit_scale,
                return_weights=True)
            outputs.append(dict(pos_logit=pos_logit, neg_logit=neg_logit))
            if maps:
                outputs[-1]['attention'] = weights
        return self.cat_class_chunks(outputs)

    def score_outputs(self, feats, text):
        return self(feats, text, maps=False)
