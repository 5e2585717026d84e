"""DualCoOp head (METHODS.md section 1): class-specific region aggregation."""
from typing import Dict, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .aggregation import class_specific_region_aggregation, dense_text_similarity
from .base_pair_head import BasePairLogitHead


@MODELS.register_module()
class DualCoOpHead(BasePairLogitHead):
    """Scores classes by comparing positive and negative prompts region by region.

    ``s± = spatial_scale * cos(x_j, t±_c)``, ``w = softmax_j(s+)``,
    ``l± = logit_scale * sum_j w s±``. Works unchanged with fixed hand-crafted prompts
    (the zero-shot baseline).

    Args:
        spatial_scale: scale of cosines before the spatial softmax (20).
        logit_scale: extra scale of the pooled logits (5; 20 * 5 = CLIP's 100).
        loss: pair loss config.

    Inputs to ``forward``: ``feats['dense']`` (B, L, D) and ``text['pos']``,
    ``text['neg']`` (C, D), all L2-normalised. Outputs: ``pos_logit``, ``neg_logit``
    (B, C) and ``attention`` (B, C, L), the spatial weights ``w``.
    """

    prompt_names = ('pos', 'neg')

    def __init__(self, spatial_scale: float = 20.0, logit_scale: float = 5.0,
                 loss: Union[dict, nn.Module] = dict(type='PairSoftmaxASL'),
                 init_cfg=None):
        super().__init__(loss=loss, init_cfg=init_cfg)
        self.spatial_scale = float(spatial_scale)
        self.logit_scale = float(logit_scale)

    def forward(self, feats: Dict[str, torch.Tensor],
                text: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        dense = self._check_inputs(feats, text)
        sim_pos = dense_text_similarity(dense, text['pos'])
        sim_neg = dense_text_similarity(dense, text['neg'])
        pos_logit, neg_logit, weights = class_specific_region_aggregation(
            sim_pos, sim_neg, self.spatial_scale, self.logit_scale, return_weights=True)
        return dict(pos_logit=pos_logit, neg_logit=neg_logit, attention=weights)
