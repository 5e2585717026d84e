"""DualCoOp++ head (METHODS.md section 2): evidence-guided aggregation + Winner-Take-All."""
import math
from typing import Dict, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .aggregation import (dense_text_similarity, evidence_attention,
                          evidence_guided_aggregation, winner_take_all)
from .base_pair_head import BasePairLogitHead


@MODELS.register_module()
class DualCoOpPlusPlusHead(BasePairLogitHead):
    """Evidence prompts choose where to look; positive/negative prompts decide what.

    ``a = cos(x, e)``, ``pi = softmax_j(exp(s) * a)`` with ``s`` learnable
    (``log_temperature``); ``P = k cos(x, t+)``, ``N = k cos(x, t-)`` with fixed ``k``;
    ``w~`` = Winner-Take-All over classes of ``cos(x, t+)`` (or 1 without WTA);
    ``l+ = sum_j pi w~ P``, ``l- = sum_j pi N``.

    Args:
        init_log_temperature: initial ``s`` (3, i.e. ``T_s = e^3``).
        map_scale: ``k``, a fixed constant (``e^3``), not a parameter.
        gamma: WTA sharpness (200).
        use_wta: apply Winner-Take-All (train and test).
        loss: pair loss config (DualCoOp++: sum x 0.02).

    Outputs of ``forward``: ``pos_logit``, ``neg_logit`` (B, C), ``attention`` (``pi``)
    and ``wta`` (``w~``; a broadcast view of ones when ``use_wta=False``), (B, C, L).
    """

    prompt_names = ('evidence', 'pos', 'neg')

    def __init__(self, init_log_temperature: float = 3.0, map_scale: float = math.exp(3),
                 gamma: float = 200.0, use_wta: bool = True,
                 loss: Union[dict, nn.Module] = dict(
                     type='PairSoftmaxASL', reduction='sum', loss_weight=0.02),
                 init_cfg=None):
        super().__init__(loss=loss, init_cfg=init_cfg)
        self.log_temperature = nn.Parameter(torch.tensor(float(init_log_temperature)))
        self.map_scale = float(map_scale)
        self.gamma = float(gamma)
        self.use_wta = bool(use_wta)

    def forward(self, feats: Dict[str, torch.Tensor],
                text: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        dense = self._check_inputs(feats, text)
        sim_evidence = dense_text_similarity(dense, text['evidence'])
        sim_pos = dense_text_similarity(dense, text['pos'])
        sim_neg = dense_text_similarity(dense, text['neg'])

        attention = evidence_attention(sim_evidence, self.log_temperature.exp())
        if self.use_wta:
            wta = winner_take_all(sim_pos, self.gamma)
        else:
            wta = None
        pos_logit, neg_logit = evidence_guided_aggregation(
            attention, self.map_scale * sim_pos, self.map_scale * sim_neg, wta)
        if wta is None:
            wta = sim_pos.new_ones(()).expand_as(sim_pos)  # w~ = 1, no memory
        return dict(pos_logit=pos_logit, neg_logit=neg_logit, attention=attention, wta=wta)
