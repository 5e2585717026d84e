"""MKT head (docs/methods.md section 5): two-stream (local top-k + global) scoring."""
from typing import Dict, Optional, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .aggregation import dense_text_similarity
from .base_head import BaseSingleLogitHead
from ..utils import at_least_fp32


def fuse_streams(streams: torch.Tensor) -> torch.Tensor:
    """MKT's fusion: each stream L2-normalised across the classes, then averaged.

    Args:
        streams: (..., S, C) raw stream scores (MKT: S = 2, local and global).
    Returns:
        (..., C). A class's score depends on the other classes scored with it, so a
        class subset (ZSL's unseen classes) is fused from its own columns
        (``fuse_streams(streams[..., subset])``), as MKT scores it alone.
    """
    return (streams / streams.norm(dim=-1, keepdim=True)).mean(dim=-2)


def two_stream_scores(dense: torch.Tensor, global_feat: torch.Tensor, text: torch.Tensor,
                      topk: int, normalize: bool = True):
    """MKT's two-stream module (the paper's local/global scores and their fusion).

    ``S = dense . E^T`` (B, C, L) patch-class scores; local ``s_loc = mean of the topk
    largest S over the L patches``; global ``s_glob = global_feat . E^T``; each is
    divided by its L2 norm across the C classes of the image; ``logit = (s_loc +
    s_glob) / 2``. The features are used as given (MKT scores the un-normalised
    projected tokens against the label embeddings).

    Args:
        dense: (B, L, D) patch features; global_feat: (B, D); text: (C, D).
        topk: patches averaged by the local stream (<= L).
        normalize: L2-normalise each stream across classes (MKT: True).
    Returns:
        ``(logit, local, global, attention)``: (B, C) x 3 and the (B, C, L) weights of
        the local mean (``1 / topk`` on each class's top-k patches, 0 elsewhere), so
        ``local == (attention * S).sum(-1)`` before the normalisation.
    """
    sim = dense_text_similarity(dense, text)  # (B, C, L) dot products, fp32
    if not 1 <= topk <= sim.shape[-1]:
        raise ValueError(f'topk={topk} patches but the backbone gives {sim.shape[-1]} '
                         'locations: lower the head topk_patches or raise image_size')
    values, index = sim.topk(topk, dim=-1)
    local = values.mean(dim=-1)
    glob = at_least_fp32(global_feat @ text.to(global_feat.dtype).t())
    if normalize:  # written out (not fuse_streams) so the returned streams are normalised
        local = local / local.norm(dim=-1, keepdim=True)
        glob = glob / glob.norm(dim=-1, keepdim=True)
    attention = torch.zeros_like(sim).scatter_(-1, index, 1.0 / topk)
    return (local + glob) / 2, local, glob, attention


@MODELS.register_module()
class MKTTwoStreamHead(BaseSingleLogitHead):
    """Scores classes with MKT's local (top-k patches) + global (class token) streams.

    Scores are rank-only (a mean of two unit vectors' entries, no calibrated
    threshold): predict with ``topk`` (the default 3, the metric's K) or a tuned
    ``thr``. Reads ``feats['dense']`` and ``feats['global_feat']``.

    Args:
        topk_patches: patches averaged by the local stream (16).
        normalize: L2-normalise each stream's scores across classes (True).
        loss: ``PairwiseRankingLoss`` config (MKT's ranking loss), reported as
            ``loss_rank``.
        thr / topk: prediction rule.

    Outputs of ``forward``: ``logit``, ``local_logit``, ``global_logit`` (B, C) and
    ``attention`` (B, C, L), the top-k mask of the local stream (``1/topk`` on the
    patches it averages, grid row-major), for heatmaps; with ``normalize`` also
    ``streams`` (B, 2, C), the local and global scores before the normalisation.

    With ``normalize`` the predicted samples carry those raw ``pred_streams`` (2, C)
    next to ``pred_score``: the metrics re-fuse a class subset from its own columns
    (:func:`fuse_streams`), so ZSL scores are normalised over the unseen classes only,
    as MKT scores them, while GZSL uses all classes, from one test run.
    """

    prompt_names = ('pos', )

    def __init__(self, topk_patches: int = 16, normalize: bool = True,
                 loss: Union[dict, nn.Module] = dict(type='PairwiseRankingLoss'),
                 thr: Optional[float] = None, topk: Optional[int] = 3, init_cfg=None):
        super().__init__(loss=loss, score_activation='none', loss_name='loss_rank',
                         thr=thr, topk=None if thr is not None else topk,
                         init_cfg=init_cfg)
        if int(topk_patches) < 1:
            raise ValueError(f'topk_patches must be >= 1, got {topk_patches}')
        self.topk_patches = int(topk_patches)
        self.normalize = bool(normalize)

    def forward(self, feats: Dict[str, torch.Tensor],
                text: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        dense = self.check_inputs(feats, text)
        if 'global_feat' not in feats:
            raise ValueError(f'MKTTwoStreamHead needs feats["global_feat"], got keys '
                             f'{sorted(feats)}')
        raw_logit, local, glob, attention = two_stream_scores(
            dense, feats['global_feat'], text['pos'], self.topk_patches, normalize=False)
        outputs = dict(logit=raw_logit, local_logit=local, global_logit=glob,
                       attention=attention)
        if self.normalize:
            streams = torch.stack([local, glob], dim=1)
            normalised = streams / streams.norm(dim=-1, keepdim=True)
            outputs.update(logit=normalised.mean(dim=1), local_logit=normalised[:, 0],
                           global_logit=normalised[:, 1], streams=streams)
        return outputs

    def predict(self, feats: Dict[str, torch.Tensor], text: Dict[str, torch.Tensor],
                data_samples=None):
        outputs = self.score_outputs(feats, text)
        samples = self.samples_from_outputs(outputs, data_samples)
        if 'streams' in outputs:
            for sample, streams in zip(samples, outputs['streams'].float()):
                sample.set_field(streams, 'pred_streams')
        return samples

    def extra_repr(self) -> str:
        return (f'topk_patches={self.topk_patches}, normalize={self.normalize}, '
                f'{super().extra_repr()}')
