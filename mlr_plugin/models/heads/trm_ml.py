"""TRM-ML head (docs/methods.md, TRM-ML section; Ma et al., ACM MM 2024): text-region
matching with category-aware region learning and knowledge distillation.

Equations are numbered as in the paper. Labels follow the project's convention
(1 positive, 0 negative, -1 unknown); the paper writes 1 / -1 / 0.
"""
import math
from typing import Dict, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ..losses.kd import kl_distillation
from .aggregation import at_least_fp32, dense_text_similarity, spatial_softmax
from .base_head import BaseSingleLogitHead, all_tokens


def region_features(region_map: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``f^r_c = sum_j R_cj f_j``, the soft region mask applied to the CLIP
    features themselves (no learned projection: they stay in CLIP's joint space).

    Args:
        region_map: (B, C, L) energies ``R``.
        tokens: (B, L, D) dense CLIP features ``f``.

    Returns:
        (B, C, D) region features (not normalised).
    """
    return torch.einsum('bcl,bld->bcd', region_map, tokens.to(region_map.dtype))


def dual_matching_logit(feat: torch.Tensor, text_pos: torch.Tensor,
                        text_neg: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Eq. 1 / 5 with dual prompts: ``(cos(f_c, g+_c) - cos(f_c, g-_c)) / tau``.

    The paper scores ``cos(f_c, g_c) / tau`` and trains "dual semantic" (positive /
    negative) prompts; how the two combine is not written. **[ours]** DualCoOp's
    pair-softmax ``softmax([l-, l+])[1] = sigmoid(l+ - l-)``: the single logit is the
    difference, so sigmoid ASL (eq. 14) applies unchanged.

    Args:
        feat: (B, C, D) per-class features (any norm).
        text_pos, text_neg: (C, D) L2-normalised text features.
        logit_scale: scalar ``1 / tau``.

    Returns:
        (B, C) logits.
    """
    feat = F.normalize(at_least_fp32(feat), dim=-1)
    cos_pos = (feat * text_pos.to(feat.dtype)).sum(-1)
    cos_neg = (feat * text_neg.to(feat.dtype)).sum(-1)
    return logit_scale * (cos_pos - cos_neg)


@MODELS.register_module()
class CategoryAwareRegionDecoder(nn.Module):
    """Category-aware region learning (eq. 2-3): learnable category queries ``Q``
    (C x D) attend to the dense CLIP features in one single-head cross-attention layer.

    ``e = (Q W_q)(f W_k)^T / sqrt(D)`` are the energies, (B, C, L). The soft region of
    class ``c`` is ``R_c = sigmoid(e_c)`` (eq. 2: every location with its own
    probability of belonging to ``c``). The attention output is the usual transformer
    one, ``A = softmax_j(e) (f W_v) W_o``, and the query features are
    ``F^q = A + MLP(A)`` (eq. 3).

    Args:
        num_classes: C.
        embed_dim: D (CLIP's joint space, so ``F^q`` is matched with text features).
        mlp_ratio: hidden width of the MLP is ``mlp_ratio * D`` **[ours]**.
        query_init: 'random' (``N(0, 0.02)``) or 'text': set by
            :meth:`init_queries` from the class names' text features (the classifier
            does this at build time).
        decoder_init: 'random' (PyTorch's default Linear init) or 'clip' **[ours]**:
            start from CLIP's own text-region matching. Keys are computed from the
            L2-normalised tokens, ``W_q = s sqrt(D) I``, ``W_k = I``, ``b_q = 0`` and
            ``b_k`` solves ``Q b_k = -m`` (exact for C <= D), so with unit text queries
            ``e_cj = s (cos(g_c, f_j) - m)``: CLIP's dense text-region similarity, shifted
            so that ``R = sigmoid(e)`` separates the locations that match the class from
            the rest instead of saturating. ``W_v = W_o = I`` with zero biases and the
            MLP's last layer zero, so ``F^q`` starts as the attention-pooled CLIP
            features. Needs ``query_init='text'`` (set in :meth:`init_queries`).
        init_energy_scale / init_energy_offset: ``s`` and ``m`` of the 'clip' init.
    """

    def __init__(self, num_classes: int, embed_dim: int, mlp_ratio: float = 1.0,
                 query_init: str = 'random', decoder_init: str = 'random',
                 init_energy_scale: float = 20.0, init_energy_offset: float = 0.2):
        super().__init__()
        if query_init not in ('random', 'text'):
            raise ValueError(f"query_init must be 'random' or 'text', got {query_init!r}")
        if decoder_init not in ('random', 'clip'):
            raise ValueError(f"decoder_init must be 'random' or 'clip', got {decoder_init!r}")
        if decoder_init == 'clip' and query_init != 'text':
            raise ValueError("decoder_init='clip' needs query_init='text' (the queries are "
                             "the class names' text features)")
        self.query_init = query_init
        self.decoder_init = decoder_init
        self.init_energy_scale = float(init_energy_scale)
        self.init_energy_offset = float(init_energy_offset)
        self.queries = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.02)
        # persistent, so a resumed / loaded model is not re-initialised by its class names
        self.register_buffer('text_initialised', torch.tensor(False))
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        hidden = max(1, int(round(mlp_ratio * embed_dim)))
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, embed_dim))

    @torch.no_grad()
    def init_queries(self, text_feats: torch.Tensor) -> None:
        """Set ``Q`` to (C, D) text features of the class names."""
        if tuple(text_feats.shape) != tuple(self.queries.shape):
            raise ValueError(f'query init needs text features of shape '
                             f'{tuple(self.queries.shape)}, got {tuple(text_feats.shape)}')
        self.queries.copy_(text_feats.to(self.queries))
        self.text_initialised.fill_(True)
        if self.decoder_init == 'clip':
            self._init_as_clip_matching()

    @torch.no_grad()
    def _init_as_clip_matching(self) -> None:
        """The 'clip' init of the projections (class docstring), given the queries."""
        dim = self.queries.shape[-1]
        eye = torch.eye(dim, dtype=self.queries.dtype, device=self.queries.device)
        self.q_proj.weight.copy_(eye * self.init_energy_scale * math.sqrt(dim))
        self.q_proj.bias.zero_()
        self.k_proj.weight.copy_(eye)
        # min-norm solution of Q b_k = -m: a location-independent key shift that moves
        # every class's energies by -s m (exact when the C queries are independent)
        target = torch.full((self.queries.shape[0], 1), -self.init_energy_offset,
                            dtype=torch.float64, device=self.queries.device)
        shift = torch.linalg.pinv(self.queries.double()) @ target
        self.k_proj.bias.copy_(shift[:, 0].to(self.k_proj.bias))
        for proj in (self.v_proj, self.out_proj):
            proj.weight.copy_(eye)
            proj.bias.zero_()
        self.mlp[-1].weight.zero_()
        self.mlp[-1].bias.zero_()

    def energies(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, C, L) attention energies ``e``."""
        query = self.q_proj(self.queries)
        # [ours] with the 'clip' init the keys see unit tokens, so e is a scaled cosine
        key = self.k_proj(F.normalize(tokens, dim=-1) if self.decoder_init == 'clip'
                          else tokens)
        return torch.einsum('cd,bld->bcl', query, key) / math.sqrt(query.shape[-1])

    def forward(self, tokens: torch.Tensor):
        """Returns ``(R, F^q)``: (B, C, L) soft regions and (B, C, D) query features."""
        tokens = at_least_fp32(tokens)
        energy = self.energies(tokens)
        attended = self.out_proj(torch.softmax(energy, dim=-1) @ self.v_proj(tokens))
        return torch.sigmoid(energy), attended + self.mlp(attended)


@MODELS.register_module()
class TRMMLHead(BaseSingleLogitHead):
    """Text-region matching: scores from region features built on CLIP's own dense
    features, a query path trained alongside, knowledge distillation between them.

    Forward (eq. 1-5): ``R, F^q = decoder(f)``; ``f^r_c = sum_j R_cj f_j``;
    ``p^r_c = dual(f^r_c)``, ``p^q_c = dual(f^q_c)`` with
    ``dual(x) = (cos(x, g+_c) - cos(x, g-_c)) / tau`` and ``tau`` learnable
    (:func:`dual_matching_logit`). Prediction uses ``p^r`` only (``sigmoid``).

    Loss (eq. 14-15, the head's part): ``L^q_cls + alpha L^r_cls + beta L_KD`` with
    sigmoid ASL on the given targets (known labels plus the classifier's pseudo-labels).
    ``L_KD = KL(p^r || p^q)`` (eq. 6; :func:`~mlr_plugin.models.losses.kd.kl_distillation`),
    teacher detached.

    Ablation switches (paper Table 3): ``use_carl=False`` replaces the decoder by
    DualCoOp's class-specific spatial weights ``R_c = softmax_j(s cos(f_j, g+_c))``
    (the paper's "modified DualCoOp" baseline keeps the dual prompts and encoders but no
    attention module) and has no query path, so no ``L^q_cls`` and no KD;
    ``use_kd=False`` drops ``L_KD``.

    Args:
        num_classes: C (queries are class-specific: the head scores this class list).
        embed_dim: D of the CLIP joint space.
        use_carl / use_kd: switches above.
        query_init: 'random' or 'text' (see :class:`CategoryAwareRegionDecoder`);
            None: 'text' with ``decoder_init='clip'``, else 'random'.
        decoder_init / init_energy_scale / init_energy_offset: the decoder's init,
            'random' or 'clip' **[ours]** (see :class:`CategoryAwareRegionDecoder`).
        mlp_ratio: decoder MLP width / D **[ours]** (1).
        init_logit_scale: ``1 / tau`` at start (CLIP's 100) **[ours]**.
        learn_logit_scale: make ``tau`` learnable (the paper: yes).
        region_weight: ``alpha`` (1).
        kd_weight: ``beta`` (0.05).
        baseline_spatial_scale: ``s`` of the CARL-off spatial softmax (DualCoOp's 20).
        loss: sigmoid ASL config; **[ours]** ``reduction='mean'`` over the known + pseudo
            entries: the paper does not say, and with a sum over B x C entries the
            ``beta = 0.05`` / ``gamma = 0.01`` terms would be ~1e-4 of the loss.

    Outputs of ``forward``: ``logit`` (``p^r``), ``region_map`` (``R``, B x C x L, prefix
    tokens first), ``region_feat`` (``f^r``, B x C x D, not normalised), ``tokens``
    (B x L x D, the features ``R`` indexes), and with CARL ``query_logit`` (``p^q``).
    """

    prompt_names = ('pos', 'neg')

    def __init__(self, num_classes: int, embed_dim: int, use_carl: bool = True,
                 use_kd: bool = True, query_init: Optional[str] = None,
                 decoder_init: str = 'random', init_energy_scale: float = 20.0,
                 init_energy_offset: float = 0.2, mlp_ratio: float = 1.0,
                 init_logit_scale: float = 100.0, learn_logit_scale: bool = True,
                 region_weight: float = 1.0, kd_weight: float = 0.05,
                 baseline_spatial_scale: float = 20.0,
                 loss: Union[dict, nn.Module] = dict(
                     type='PartialSigmoidASL', gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
                     eps=1e-8, reduction='mean'),
                 thr: Optional[float] = None, topk: Optional[int] = None, init_cfg=None):
        super().__init__(loss=loss, thr=thr, topk=topk, init_cfg=init_cfg)
        if use_kd and not use_carl:
            raise ValueError('use_kd=True needs use_carl=True: KD distils the region path '
                             'into the query path, which only CARL has')
        if init_logit_scale <= 0:
            raise ValueError(f'init_logit_scale must be > 0, got {init_logit_scale}')
        self.num_classes = int(num_classes)
        self.use_carl = bool(use_carl)
        self.use_kd = bool(use_kd)
        self.region_weight = float(region_weight)
        self.kd_weight = float(kd_weight)
        self.baseline_spatial_scale = float(baseline_spatial_scale)
        if query_init is None:
            query_init = 'text' if decoder_init == 'clip' else 'random'
        self.decoder = (CategoryAwareRegionDecoder(
            num_classes, embed_dim, mlp_ratio, query_init, decoder_init,
            init_energy_scale, init_energy_offset) if use_carl else None)
        log_scale = torch.tensor(math.log(init_logit_scale))
        if learn_logit_scale:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer('log_logit_scale', log_scale)

    @property
    def query_init(self) -> str:
        return self.decoder.query_init if self.decoder is not None else 'random'

    def forward(self, feats: Dict[str, torch.Tensor],
                text: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        self.check_inputs(feats, text)
        if text['pos'].shape[0] != self.num_classes:
            raise ValueError(f'TRMMLHead was built for {self.num_classes} classes (one '
                             f'query each) but got text for {text["pos"].shape[0]}')
        tokens = at_least_fp32(all_tokens(feats))
        scale = self.log_logit_scale.exp()
        out = dict(tokens=tokens)
        if self.use_carl:
            region_map, query_feat = self.decoder(tokens)
            out['query_logit'] = dual_matching_logit(query_feat, text['pos'], text['neg'],
                                                     scale)
        else:
            sim = dense_text_similarity(tokens, text['pos'])
            region_map = spatial_softmax(self.baseline_spatial_scale * sim)
        region_feat = region_features(region_map, tokens)
        out.update(region_map=region_map, region_feat=region_feat,
                   logit=dual_matching_logit(region_feat, text['pos'], text['neg'], scale))
        return out

    def compute_loss(self, outputs: Dict[str, torch.Tensor],
                     gt_score: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``alpha L^r_cls`` (+ ``L^q_cls`` and ``beta L_KD`` with CARL / KD) against
        (B, C) targets in {1, 0, -1}."""
        losses = dict(loss_asl_region=self.region_weight *
                      self.loss_module(outputs['logit'], gt_score))
        if self.use_carl:
            losses['loss_asl_query'] = self.loss_module(outputs['query_logit'], gt_score)
        if self.use_kd:
            losses['loss_kd'] = self.kd_weight * kl_distillation(
                outputs['logit'], outputs['query_logit'])
        return losses

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, use_carl={self.use_carl}, '
                f'use_kd={self.use_kd}, {super().extra_repr()}')
