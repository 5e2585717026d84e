"""DualCoOp++ head (docs/methods.md section 2): evidence-guided region aggregation and
Winner-Take-All."""
import math
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .aggregation import at_least_fp32, check_maps, spatial_softmax
from .base_head import BasePairLogitHead


def winner_take_all(sim_pos: torch.Tensor, gamma: float,
                    class_extrema: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                    ) -> torch.Tensor:
    """Winner-Take-All weights, competing across classes per location.

    ``g_j = gamma * max_c sim_pos[c, j]``, ``w = softmax_c(g_j * sim_pos)``,
    ``w~ = w / max_c w``: the winner keeps 1, the others shrink towards 0.

    Args:
        sim_pos: (B, C, L) cosines with the positive prompts (or one chunk of classes).
        gamma: sharpness (200 in DualCoOp++).
        class_extrema: ``(max_c, min_c)`` of ``sim_pos`` over ALL classes, (B, 1, L)
            each, when ``sim_pos`` is one chunk of them (class-chunked scoring).

    Returns:
        (B, C, L) weights in [0, 1].
    """
    check_maps(sim_pos=sim_pos)
    sim_pos = at_least_fp32(sim_pos)
    if class_extrema is None:
        class_extrema = (sim_pos.amax(dim=1, keepdim=True), None)
    class_max, class_min = class_extrema
    sharpness = gamma * at_least_fp32(class_max)
    scores = sharpness * sim_pos
    if class_min is None:
        top = scores.amax(dim=1, keepdim=True)
    else:
        # rounding is monotone, so max_c fl(t * s_c) is fl(t * max_c s) for t >= 0 and
        # fl(t * min_c s) for t < 0: the same number as over the full (B, C, L) map
        top = torch.where(sharpness >= 0, sharpness * class_max, sharpness * class_min)
    # softmax(x)_c / max_c softmax(x)_c == exp(x_c - max_c x): same value, no division,
    # and the winner gets exactly 1.
    return torch.exp(scores - top)


def evidence_attention(sim_evidence: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Evidence-guided spatial attention ``pi = softmax_j(T * a)``.

    Args:
        sim_evidence: (B, C, L) cosines ``a`` with the evidential prompts.
        temperature: scalar ``T`` (a tensor, so it can be learnable).

    Returns:
        (B, C, L) attention, summing to 1 over locations.
    """
    check_maps(sim_evidence=sim_evidence)
    return spatial_softmax(temperature * at_least_fp32(sim_evidence))


def evidence_guided_aggregation(attention: torch.Tensor, pos_map: torch.Tensor,
                                neg_map: torch.Tensor,
                                wta: Optional[torch.Tensor] = None
                                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pool location maps with evidence attention.

    ``l+ = sum_j pi * w~ * P``, ``l- = sum_j pi * N`` (``w~ = 1`` when ``wta`` is None).

    Args:
        attention: (B, C, L) ``pi``.
        pos_map, neg_map: (B, C, L) ``P = k cos(x, t+)``, ``N = k cos(x, t-)``.
        wta: optional (B, C, L) winner-take-all weights ``w~``.

    Returns:
        ``(pos_logit, neg_logit)`` each (B, C).
    """
    maps = dict(attention=attention, pos_map=pos_map, neg_map=neg_map)
    if wta is not None:
        maps['wta'] = wta
    check_maps(**maps)
    pos_weights = attention if wta is None else attention * wta
    pos_logit = (pos_weights * pos_map).sum(dim=-1)
    neg_logit = (attention * neg_map).sum(dim=-1)
    return pos_logit, neg_logit


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
        loss: pair loss config (DualCoOp++: ASL with eps 1e-8, sum x 0.02).
        thr / topk: prediction rule (default: ``p+ > 0.5``).
        class_chunk_size: classes scored at a time (bounds memory; same outputs). WTA
            competes across all classes: its per-location max / min over classes is
            taken in a first pass over the chunks.

    Outputs of ``forward``: ``pos_logit``, ``neg_logit`` (B, C), ``attention`` (``pi``)
    and ``wta`` (``w~``; a broadcast view of ones when ``use_wta=False``), (B, C, L).
    """

    prompt_names = ('evidence', 'pos', 'neg')

    def __init__(self, init_log_temperature: float = 3.0, map_scale: float = math.exp(3),
                 gamma: float = 200.0, use_wta: bool = True,
                 loss: Union[dict, nn.Module] = dict(
                     type='PairSoftmaxASL', gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
                     eps=1e-8, reduction='sum', loss_weight=0.02),
                 thr: Optional[float] = None, topk: Optional[int] = None,
                 class_chunk_size: Optional[int] = 512, init_cfg=None):
        super().__init__(loss=loss, thr=thr, topk=topk, class_chunk_size=class_chunk_size,
                         init_cfg=init_cfg)
        self.log_temperature = nn.Parameter(torch.tensor(float(init_log_temperature)))
        self.map_scale = float(map_scale)
        self.gamma = float(gamma)
        self.use_wta = bool(use_wta)

    def forward(self, feats: Dict[str, torch.Tensor], text: Dict[str, torch.Tensor],
                maps: bool = True) -> Dict[str, torch.Tensor]:
        """Logits, and the ``attention`` / ``wta`` maps unless ``maps=False``."""
        extrema = None
        if self.use_wta and len(self.class_chunks(next(iter(text.values())).shape[0])) > 1:
            extrema = self.class_extrema(feats, text)
        outputs = []
        for sim in self.chunked_similarities(feats, text):
            sim_pos = sim['pos']
            attention = evidence_attention(sim['evidence'], self.log_temperature.exp())
            wta = winner_take_all(sim_pos, self.gamma, extrema) if self.use_wta else None
            pos_logit, neg_logit = evidence_guided_aggregation(
                attention, self.map_scale * sim_pos, self.map_scale * sim['neg'], wta)
            out = dict(pos_logit=pos_logit, neg_logit=neg_logit)
            if maps:
                out['attention'] = attention
                if wta is not None:
                    out['wta'] = wta
            outputs.append(out)
        outputs = self.cat_class_chunks(outputs)
        if maps and not self.use_wta:  # w~ = 1, no memory
            outputs['wta'] = outputs['attention'].new_ones(()).expand_as(outputs['attention'])
        return outputs

    def score_outputs(self, feats, text):
        return self(feats, text, maps=False)

    def class_extrema(self, feats, text) -> Tuple[torch.Tensor, torch.Tensor]:
        """Max and min over all classes of ``cos(x_j, t+_c)``, (B, 1, L) each, computed
        one chunk at a time (WTA's first pass when scoring is class-chunked)."""
        maxima, minima = [], []
        for sim in self.chunked_similarities(feats, text, names=('pos', )):
            maxima.append(sim['pos'].amax(dim=1, keepdim=True))
            minima.append(sim['pos'].amin(dim=1, keepdim=True))
        return (torch.cat(maxima, dim=1).amax(dim=1, keepdim=True),
                torch.cat(minima, dim=1).amin(dim=1, keepdim=True))
