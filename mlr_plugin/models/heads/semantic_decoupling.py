"""Semantic decoupling + category-specific prompts (Ruan et al.; docs/methods.md
section 4): a semantic-guided spatial attention per class, each class scored against its
own prompt."""
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch.utils.checkpoint import checkpoint

from .base_head import BasePairLogitHead, BaseSingleLogitHead, all_tokens

SEMANTIC_PROMPT = 'semantic'
# text key under which ``loss`` hands forward the file vectors of the step's classes
_FILE_ROWS = '_semantic_file_rows'
PARTS = ('visual', 'semantic', 'hidden', 'energy', 'proj')


def load_semantic_file(path: str, num_classes: Optional[int]) -> torch.Tensor:
    """A (C, d) float32 tensor of per-class semantic vectors (e.g. GloVe) from ``.npy``;
    any problem is a one-line ValueError naming the file."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f'semantic_file {path} needs num_classes (a positive int), got '
                         f'{num_classes!r}')
    if not osp.isfile(path):
        raise ValueError(f'semantic_file {path}: no such file')
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file, one line
        raise ValueError(f'semantic_file {path}: not a readable .npy array '
                         f'({type(error).__name__}: {str(error).splitlines()[0]})') from None
    if array.ndim != 2 or array.shape[0] != num_classes or array.shape[1] < 1:
        raise ValueError(f'semantic_file {path}: expected shape ({num_classes}, d) (one row '
                         f'per class), got {array.shape}')
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f'semantic_file {path}: expected real numbers, got dtype {array.dtype}')
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(f'semantic_file {path}: {bad} row(s) hold NaN or inf')
    return torch.from_numpy(array.astype(np.float32))


class SemanticDecoupling(nn.Module):
    """Semantic-guided spatial attention per class, then a projection (section 4).

    ``u_j = W1 f_j``, ``v_c = W2 x_c``, ``e_{c,j} = W4 tanh(W3 (u_j * v_c) + b3) + b4``,
    ``alpha_{c,j} = softmax_j(e_{c,j})``, ``f_c = sum_j alpha_{c,j} f_j``, output
    ``proj(f_c)``.

    Memory: ``W3 (u_j * v_c)`` is a (B, C, L, inner) tensor (32 x 80 x 197 x 1024 fp32 =
    2 GB), and plain autograd keeps three such tensors (measured at B 2, C 32: 156 MiB
    saved for backward, i.e. ~6 GiB at B 32, C 80). It is computed ``class_chunk``
    classes at a time; with ``recompute`` each chunk runs under activation checkpointing,
    so training keeps only the inputs and the (B, C, L) energies (6 MiB at B 2, C 32) and
    recomputes a chunk's inner activations in backward (one extra forward of the
    attention MLP).

    Args:
        feat_dim: width D of the dense features (the CLIP joint space).
        semantic_dim: width d of the semantic vectors ``x_c``.
        inner_dim: width of ``u``, ``v`` and the hidden layer (1024).
        proj_init: 'identity' (``proj(f) = f`` at the start: CLIP's own alignment) or
            'random' (PyTorch's default Linear init).
        attention_init: 'random' (PyTorch's default Linear init) or 'clip': ``W1 = W2 =
            P`` (random orthonormal columns), ``W3 = I``, ``b3 = 0``, ``W4 = T 1``,
            ``b4 = 0``, so that ``e_{c,j} = T sum_k tanh(u_k v_k) ~ T cos(f_j, x_c)``
            (``u_k v_k`` are O(1/inner), where tanh is linear): the attention starts as
            CLIP's own text-guided spatial softmax and learns from there. Needs
            ``semantic_dim == feat_dim <= inner_dim``.
        init_temperature: ``T`` of the 'clip' init.
        class_chunk: classes per chunk of the energy computation (None: all at once).
        recompute: activation checkpointing of each chunk when a graph is built.
    """

    def __init__(self, feat_dim: int, semantic_dim: int, inner_dim: int = 1024,
                 proj_init: str = 'identity', class_chunk: Optional[int] = 16,
                 recompute: bool = True, attention_init: str = 'random',
                 init_temperature: float = 20.0):
        super().__init__()
        for name, value in dict(feat_dim=feat_dim, semantic_dim=semantic_dim,
                                inner_dim=inner_dim).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        if class_chunk is not None and (not isinstance(class_chunk, int) or class_chunk < 1):
            raise ValueError(f'class_chunk must be a positive int or None, got {class_chunk!r}')
        if proj_init not in ('identity', 'random'):
            raise ValueError(f"proj_init must be 'identity' or 'random', got {proj_init!r}")
        self.visual = nn.Linear(feat_dim, inner_dim, bias=False)  # W1
        self.semantic = nn.Linear(semantic_dim, inner_dim, bias=False)  # W2
        self.hidden = nn.Linear(inner_dim, inner_dim)  # W3, b3
        self.energy = nn.Linear(inner_dim, 1)  # W4, b4
        self.proj = nn.Linear(feat_dim, feat_dim)
        if proj_init == 'identity':
            with torch.no_grad():
                self.proj.weight.copy_(torch.eye(feat_dim))
                self.proj.bias.zero_()
        if attention_init == 'clip':
            self._init_as_clip_attention(float(init_temperature))
        elif attention_init != 'random':
            raise ValueError(f"attention_init must be 'random' or 'clip', got {attention_init!r}")
        self.class_chunk = class_chunk
        self.recompute = bool(recompute)

    @torch.no_grad()
    def _init_as_clip_attention(self, temperature: float):
        inner, feat_dim = self.visual.weight.shape
        if self.semantic.in_features != feat_dim or inner < feat_dim:
            raise ValueError(f"attention_init='clip' needs semantic_dim == feat_dim <= "
                             f'inner_dim, got semantic_dim={self.semantic.in_features}, '
                             f'feat_dim={feat_dim}, inner_dim={inner} (use attention_init=\'random\')')
        # orthonormal columns: (P f) . (P x) = f . x, and every inner unit starts alive
        basis = torch.linalg.qr(torch.randn(inner, feat_dim)).Q
        self.visual.weight.copy_(basis)
        self.semantic.weight.copy_(basis)
        self.hidden.weight.copy_(torch.eye(inner))
        self.hidden.bias.zero_()
        self.energy.weight.fill_(temperature)
        self.energy.bias.zero_()

    def _chunk_energies(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, L, K) x (c, K) -> (B, c, L) energies ``e``."""
        joint = u.unsqueeze(1) * v[None, :, None, :]  # (B, c, L, K)
        hidden = torch.tanh(self.hidden(joint))
        return self.energy(hidden).squeeze(-1)

    def energies(self, tokens: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        """(B, L, D) tokens x (C, d) semantic vectors -> (B, C, L) energies ``e``."""
        u = self.visual(tokens)
        v = self.semantic(semantic.to(u.dtype))
        step = self.class_chunk or v.shape[0]
        recompute = self.recompute and torch.is_grad_enabled() and (
            u.requires_grad or v.requires_grad)
        chunks = []
        for start in range(0, v.shape[0], step):
            part = v[start:start + step]
            if recompute:
                chunks.append(checkpoint(self._chunk_energies, u, part, use_reentrant=False))
            else:
                chunks.append(self._chunk_energies(u, part))
        return torch.cat(chunks, dim=1)

    def forward(self, tokens: torch.Tensor, semantic: torch.Tensor):
        """Returns ``(proj(f_c)`` (B, C, D), ``alpha`` (B, C, L)``)."""
        if tokens.shape[-1] != self.visual.in_features:
            raise ValueError(f'dense features have width {tokens.shape[-1]} but the head was '
                             f'built with feat_dim={self.visual.in_features}')
        expected = self.semantic.in_features
        if semantic.dim() != 2 or semantic.shape[1] != expected:
            raise ValueError(f'semantic vectors must be (C, {expected}), got '
                             f'{tuple(semantic.shape)}')
        tokens = tokens.float()
        attention = torch.softmax(self.energies(tokens, semantic.float()), dim=-1)
        class_feats = torch.einsum('bcl,bld->bcd', attention, tokens)
        return self.proj(class_feats), attention


class _SemanticDecouplingMixin:
    """What the single-logit and the pair head share: the module, the semantic vectors
    (text feature ``semantic`` from the prompt learner, or a file) and the scoring."""

    def _build_decoupling(self, score_prompts: Sequence[str], feat_dim: int,
                          logit_scale: float, semantic_file: Optional[str],
                          num_classes: Optional[int], frozen_parts: Sequence[str],
                          **module_args):
        self.score_prompts = tuple(score_prompts)
        if semantic_file is None:
            self.prompt_names = self.score_prompts + (SEMANTIC_PROMPT, )
            self.register_buffer('semantic_vectors', None)
            semantic_dim = feat_dim
        else:
            self.prompt_names = self.score_prompts
            vectors = load_semantic_file(semantic_file, num_classes)
            # persistent: a checkpoint carries the vectors it was trained with
            self.register_buffer('semantic_vectors', vectors)
            semantic_dim = vectors.shape[1]
        self.semantic_file = semantic_file
        self.decoupling = SemanticDecoupling(feat_dim, semantic_dim, **module_args)
        unknown = set(frozen_parts) - set(PARTS)
        if isinstance(frozen_parts, str) or unknown:
            raise ValueError(f'frozen_parts must be a list of {PARTS}, got {frozen_parts!r}')
        self.frozen_parts = tuple(frozen_parts)
        for part in self.frozen_parts:
            getattr(self.decoupling, part).requires_grad_(False)
        self.logit_scale = float(logit_scale)

    def loss(self, feats, text, data_samples, class_indices=None):
        if self.semantic_vectors is not None and class_indices is not None:
            # the step encodes some classes only: their rows of the file vectors
            rows = torch.as_tensor(class_indices, device=self.semantic_vectors.device)
            text = dict(text, **{_FILE_ROWS: self.semantic_vectors[rows]})
        return super().loss(feats, text, data_samples, class_indices=class_indices)

    def _semantic(self, text: Dict[str, torch.Tensor], num_classes: int) -> torch.Tensor:
        if self.semantic_vectors is None:
            return text[SEMANTIC_PROMPT]
        semantic = text.get(_FILE_ROWS, self.semantic_vectors)
        if semantic.shape[0] != num_classes:
            raise ValueError(f'semantic_file {self.semantic_file} has {semantic.shape[0]} '
                             f'rows but {num_classes} classes are scored')
        return semantic

    def decouple_and_score(self, feats, text) -> Dict[str, torch.Tensor]:
        """``{prompt: logit_scale * cos(proj(f_c), g_c)}`` (B, C) and ``attention``."""
        self.check_inputs(feats, text)
        prompts = {name: text[name] for name in self.score_prompts}
        num_classes = next(iter(prompts.values())).shape[0]
        class_feats, attention = self.decoupling(all_tokens(feats),
                                                 self._semantic(text, num_classes))
        class_feats = F.normalize(class_feats, dim=-1)
        # class c's feature meets only class c's prompt: a row-wise dot, never (C x C)
        logits = {name: self.logit_scale * (class_feats * F.normalize(
            prompt.float(), dim=-1).unsqueeze(0)).sum(-1) for name, prompt in prompts.items()}
        return dict(logits, attention=attention)

    def extra_repr(self) -> str:
        return (f'logit_scale={self.logit_scale}, semantic_file={self.semantic_file!r}, '
                f'frozen_parts={self.frozen_parts}, ' + super().extra_repr())


_SIGMOID_ASL = dict(type='PartialSigmoidASL', gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
                    eps=1e-6, reduction='sum', loss_weight=0.03)
_PAIR_ASL = dict(_SIGMOID_ASL, type='PairSoftmaxASL')


@MODELS.register_module()
class SemanticDecouplingHead(_SemanticDecouplingMixin, BaseSingleLogitHead):
    """Semantic decoupling with category-specific prompts: one logit per class.

    ``f_c`` = the semantic-guided attention pooling of class ``c`` (``SemanticDecoupling``,
    guided by the semantic vector ``x_c``); ``s_c = logit_scale * cos(proj(f_c), g_c)``
    with ``g_c`` the text feature of class ``c``'s own prompt (prompt ``pos``); scores
    ``sigmoid(s_c)``; loss sigmoid ASL on the known labels. Class ``c``'s score depends
    on no other class's prompt or semantic vector.

    Args:
        feat_dim: width D of the CLIP joint space (512 for RN101).
        inner_dim: width of the attention MLP (1024).
        logit_scale: multiplies the cosine (100, OpenAI CLIP's own logit scale).
        semantic_file: None: ``x_c`` is the text feature the prompt learner provides as
            prompt ``semantic`` (e.g. frozen "a photo of a {}." via ``MergedPrompts``).
            Else a ``.npy`` array (num_classes, d), e.g. GloVe, checked at build time.
        num_classes: rows expected in ``semantic_file``.
        proj_init: 'identity' or 'random' init of ``proj``.
        attention_init / init_temperature: 'random' or 'clip' init of the attention MLP
            (see ``SemanticDecoupling``).
        frozen_parts: parts of the module that do not train, from ``visual`` (W1),
            ``semantic`` (W2), ``hidden`` (W3, b3), ``energy`` (W4, b4), ``proj``.
        class_chunk / recompute: memory of the attention (see ``SemanticDecoupling``).
        loss: sigmoid ASL (gamma+ 1, gamma- 2, clip 0.05; sum x 0.03 as DualCoOp).
        thr / topk: prediction rule (default ``sigmoid(s_c) > 0.5``).

    Outputs of ``forward``: ``logit`` (B, C) and ``attention`` (B, C, L) = ``alpha``
    (prefix tokens first, then the grid row-major, as DualCoOpHead's).
    """

    def __init__(self, feat_dim: int = 512, inner_dim: int = 1024,
                 logit_scale: float = 100.0, semantic_file: Optional[str] = None,
                 num_classes: Optional[int] = None, proj_init: str = 'identity',
                 attention_init: str = 'clip', init_temperature: float = 20.0,
                 frozen_parts: Sequence[str] = (), class_chunk: Optional[int] = 16,
                 recompute: bool = True, loss: Union[dict, nn.Module] = _SIGMOID_ASL,
                 thr: Optional[float] = None, topk: Optional[int] = None, init_cfg=None):
        super().__init__(loss=loss, thr=thr, topk=topk, init_cfg=init_cfg)
        self._build_decoupling(
            ('pos', ), feat_dim, logit_scale, semantic_file, num_classes, frozen_parts,
            inner_dim=inner_dim, proj_init=proj_init, attention_init=attention_init,
            init_temperature=init_temperature, class_chunk=class_chunk, recompute=recompute)

    def forward(self, feats: Dict[str, torch.Tensor],
                text: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        out = self.decouple_and_score(feats, text)
        return dict(logit=out['pos'], attention=out['attention'])


@MODELS.register_module()
class SemanticDecouplingPairHead(_SemanticDecouplingMixin, BasePairLogitHead):
    """Semantic decoupling scored DualCoOp-style: per class a positive and a negative
    category-specific prompt, ``l± = logit_scale * cos(proj(f_c), g±_c)``,
    ``p+ = sigmoid(l+ - l-)``, pair-softmax ASL. Same arguments as
    ``SemanticDecouplingHead``; outputs ``pos_logit``, ``neg_logit``, ``attention``.
    """

    def __init__(self, feat_dim: int = 512, inner_dim: int = 1024,
                 logit_scale: float = 100.0, semantic_file: Optional[str] = None,
                 num_classes: Optional[int] = None, proj_init: str = 'identity',
                 attention_init: str = 'clip', init_temperature: float = 20.0,
                 frozen_parts: Sequence[str] = (), class_chunk: Optional[int] = 16,
                 recompute: bool = True, loss: Union[dict, nn.Module] = _PAIR_ASL,
                 thr: Optional[float] = None, topk: Optional[int] = None, init_cfg=None):
        super().__init__(loss=loss, thr=thr, topk=topk, init_cfg=init_cfg)
        self._build_decoupling(
            ('pos', 'neg'), feat_dim, logit_scale, semantic_file, num_classes, frozen_parts,
            inner_dim=inner_dim, proj_init=proj_init, attention_init=attention_init,
            init_temperature=init_temperature, class_chunk=class_chunk, recompute=recompute)

    def forward(self, feats: Dict[str, torch.Tensor],
                text: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        out = self.decouple_and_score(feats, text)
        return dict(pos_logit=out['pos'], neg_logit=out['neg'], attention=out['attention'])
