"""A sentence template whose own words are (optionally) learnable context vectors
around a fixed class name (MKT's prompt tuning, docs/methods.md section 5)."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .base import BasePromptLearner, check_prompt_names

_ENCODE_CHUNK = 512  # prompts per text-tower call when no grad is needed


@MODELS.register_module()
class TemplateContextPrompts(BasePromptLearner):
    """``[SOS] <template words before {}> <class name> <template words after {}> [EOT]``
    where the template's token embeddings are a parameter ``ctx`` shared by all classes
    and the class-name tokens keep CLIP's frozen embeddings.

    MKT's stage 2 trains CLIP's whole token-embedding table while it overwrites the
    class-name positions with frozen copies; since every template token occurs once
    per prompt and tokens after the EOT cannot change a causal text tower's EOT
    feature, that is exactly learning one vector per template position: [SOS], the
    words of "There is a" and "in the scene", and [EOT] (``learn_special_tokens``).

    ``ctx`` starts from CLIP's word embeddings, so with ``learnable=False`` the features
    are CLIP's features of the plain template sentence. Features are computed without
    grad and cached per class-name list whenever no gradient is needed (always with
    ``learnable=False``; at test time otherwise): MKT's stage 1 encodes its label
    embeddings once, never per batch.

    Like :class:`LearnablePrompts`, ``ctx`` is created by ``init_context(backbone)``
    (the classifier calls it once after building the backbone) and a state dict can
    be loaded before that.

    Args:
        template: a sentence with one ``{}`` for the class name (MKT: "There is a {} in
            the scene", no final period).
        learnable: ``ctx`` trains (stage 2) or stays fixed (stage 1).
        learn_special_tokens: also learn the [SOS] and [EOT] embeddings (MKT: True).
        normalize: L2-normalise the text features (MKT scores raw features: False).
        prompt_names: the name(s) of the output (default ``('pos',)``).
    """

    def __init__(self, template: str = 'There is a {} in the scene', learnable: bool = False,
                 learn_special_tokens: bool = True, normalize: bool = False,
                 prompt_names: Sequence[str] = ('pos', )):
        super().__init__(check_prompt_names(prompt_names))
        if not isinstance(template, str) or template.count('{}') != 1:
            raise ValueError(f"template must be a string with exactly one '{{}}', got "
                             f'{template!r}')
        self.template = template
        self.learnable = bool(learnable)
        self.learn_special_tokens = bool(learn_special_tokens)
        self.normalize = bool(normalize)

    # ------------------------------------------------------------ contexts
    @property
    def is_initialised(self) -> bool:
        return hasattr(self, 'ctx')

    def _template_tokens(self, backbone) -> Tuple[torch.Tensor, torch.Tensor]:
        """Token ids of the words before and after ``{}`` (without SOS / EOT)."""
        parts = []
        for text in self.template.split('{}'):
            text = text.strip()
            if not text:
                parts.append(torch.zeros(0, dtype=torch.long))
                continue
            tokens = backbone.tokenize([text])
            eot = int(backbone.eot_indices(tokens)[0])
            parts.append(tokens[0, 1:eot])
        return parts[0], parts[1]

    @torch.no_grad()
    def init_context(self, backbone) -> 'TemplateContextPrompts':
        """Create ``ctx`` from CLIP's embeddings of the template (idempotent)."""
        before, after = self._template_tokens(backbone)
        sample = backbone.tokenize([self.template.format('x')])
        eot = int(backbone.eot_indices(sample)[0])
        ids = torch.cat([before, after])
        if self.learn_special_tokens:
            ids = torch.cat([sample[0, :1], ids, sample[0, eot:eot + 1]])
        if ids.numel() == 0:
            raise ValueError(f'template {self.template!r} has no tokens to learn')
        if self.is_initialised:
            if tuple(self.ctx.shape) != (ids.numel(), backbone.text_width):
                raise ValueError(f'ctx has shape {tuple(self.ctx.shape)} but template '
                                 f'{self.template!r} needs ({ids.numel()}, '
                                 f'{backbone.text_width})')
        else:
            value = backbone.embed_tokens(ids[None])[0].float().cpu()
            self.ctx = nn.Parameter(value, requires_grad=self.learnable)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(f'{prefix}ctx')
        if not self.is_initialised and stored is not None:
            self.ctx = nn.Parameter(torch.empty_like(stored, device='cpu'),
                                    requires_grad=self.learnable)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------ prompts
    def _layout(self, names: Tuple[str, ...], backbone):
        """Cached tokens (C, L), frozen embeddings (C, L, W) and the (C, n_ctx)
        positions of the template tokens in each prompt."""
        key = ('layout', names)
        cached = self.cache_get(key, backbone.device)
        if cached is not None:
            return cached
        before, after = self._template_tokens(backbone)
        tokens = backbone.tokenize([self.template.format(name) for name in names])
        eot = backbone.eot_indices(tokens)
        positions = []
        for row, (seq, end) in enumerate(zip(tokens, eot.tolist())):
            name_end = end - len(after)
            if (name_end < 1 + len(before) or not torch.equal(seq[1:1 + len(before)], before)
                    or not torch.equal(seq[name_end:end], after)):
                raise ValueError(f'class name {names[row]!r} in template {self.template!r} '
                                 'does not tokenize as template + name + template (too '
                                 'long for the context length?)')
            pos = list(range(1, 1 + len(before))) + list(range(name_end, end))
            if self.learn_special_tokens:
                pos = [0] + pos + [end]
            positions.append(pos)
        embeds = backbone.embed_tokens(tokens)
        tokens = tokens.to(embeds.device)
        positions = torch.tensor(positions, dtype=torch.long, device=embeds.device)
        cached = (tokens, embeds, positions)
        self.cache_put(key, backbone.device, cached)
        return cached

    def _encode(self, tokens, embeds, positions, backbone) -> torch.Tensor:
        ctx = self.ctx.to(embeds.dtype).unsqueeze(0).expand(embeds.shape[0], -1, -1)
        index = positions.unsqueeze(-1).expand(-1, -1, embeds.shape[-1])
        feats = backbone.encode_prompt_embeddings(embeds.scatter(1, index, ctx), tokens)
        feats = feats.float()
        return F.normalize(feats, dim=-1) if self.normalize else feats

    def forward(self, class_names: Sequence[str], backbone,
                class_indices: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """dict {prompt name: (C', D) text features} of the given classes."""
        if not self.is_initialised:
            raise RuntimeError('TemplateContextPrompts has no ctx yet: call '
                               'init_context(backbone) once after building the backbone')
        names = self.check_class_names(class_names)
        tokens, embeds, positions = self._layout(names, backbone)
        needs_grad = self.ctx.requires_grad and torch.is_grad_enabled()
        if needs_grad:
            if class_indices is not None:
                index = self.class_index(class_indices, len(names), embeds.device)
                tokens, embeds, positions = tokens[index], embeds[index], positions[index]
            feats = self._encode(tokens, embeds, positions, backbone)
            return {name: feats for name in self.prompt_names}
        # no grad: encode every class once per ctx value and cache (the version counter
        # changes with every optimizer step)
        key = ('feats', names, self.ctx.data_ptr(), self.ctx._version)
        feats = self.cache_get(key, backbone.device)
        if feats is None:
            with torch.no_grad():
                feats = torch.cat([
                    self._encode(tokens[i:i + _ENCODE_CHUNK], embeds[i:i + _ENCODE_CHUNK],
                                 positions[i:i + _ENCODE_CHUNK], backbone)
                    for i in range(0, len(names), _ENCODE_CHUNK)])
            self.cache_put(key, backbone.device, feats)
        if class_indices is not None:
            feats = feats[self.class_index(class_indices, len(names), feats.device)]
        return {name: feats for name in self.prompt_names}

    def extra_repr(self) -> str:
        return (f'template={self.template!r}, learnable={self.learnable}, '
                f'learn_special_tokens={self.learn_special_tokens}, '
                f'normalize={self.normalize}')
