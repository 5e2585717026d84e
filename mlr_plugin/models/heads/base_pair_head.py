"""Common parts of heads that score each class with a (positive, negative) logit pair."""
from typing import Dict, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


class BasePairLogitHead(BaseModule):
    """Base for DualCoOp-style heads.

    Subclasses set ``prompt_names`` and implement ``forward(feats, text)`` returning at
    least ``pos_logit`` and ``neg_logit`` (B, C). Scores are ``p+ = sigmoid(l+ - l-)``
    ("positive beats negative" at 0.5, no tuned threshold); the loss is built from
    ``loss`` (a config dict or a module) and called as ``loss(l+, l-, gt_score)``.

    Args:
        loss: config of a pair loss, e.g. ``dict(type='PairSoftmaxASL')``.
        init_cfg: mmengine init config.
    """

    prompt_names: tuple = ()

    def __init__(self, loss: Union[dict, nn.Module] = dict(type='PairSoftmaxASL'),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(loss, dict):
            loss = MODELS.build(loss)
        if not isinstance(loss, nn.Module):
            raise ValueError(f'loss must be a config dict or nn.Module, got {type(loss)}')
        self.loss_module = loss

    def _check_inputs(self, feats: Dict[str, torch.Tensor],
                      text: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Validate the inputs and return ``feats['dense']`` (B, L, D)."""
        if 'dense' not in feats:
            raise ValueError(f'feats needs key "dense" (B, L, D), got keys {sorted(feats)}')
        dense = feats['dense']
        if dense.dim() != 3:
            raise ValueError(f'feats["dense"] must be (B, L, D), got {tuple(dense.shape)}')
        num_classes = None
        for name in self.prompt_names:
            if name not in text:
                raise ValueError(f'{type(self).__name__} needs text prompt "{name}", got '
                                 f'{sorted(text)}')
            feat = text[name]
            if feat.dim() != 2 or feat.shape[1] != dense.shape[2]:
                raise ValueError(f'text["{name}"] must be (C, {dense.shape[2]}), got '
                                 f'{tuple(feat.shape)}')
            if num_classes is not None and feat.shape[0] != num_classes:
                raise ValueError(f'text["{name}"] has {feat.shape[0]} classes, other '
                                 f'prompts have {num_classes}')
            num_classes = feat.shape[0]
        return dense

    def predict_scores(self, outputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, C) scores in [0, 1]: ``p+ = sigmoid(l+ - l-)``; > 0.5 means positive."""
        return torch.sigmoid(outputs['pos_logit'] - outputs['neg_logit'])

    def loss(self, outputs: Dict[str, torch.Tensor],
             gt_score: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Pair loss against (B, C) labels in {1, 0, -1} (-1 = unknown, ignored)."""
        return dict(loss_asl=self.loss_module(outputs['pos_logit'], outputs['neg_logit'],
                                              gt_score))
