"""CoOp-style learnable prompts, one context per prompt name (docs/methods.md 0.2)."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .base import BasePromptLearner

PLACEHOLDER = 'X'


@MODELS.register_module()
class LearnablePrompts(BasePromptLearner):
    """Learnable context vectors ``v_1..v_n`` before each class name, per prompt name.

    A prompt is ``[SOS] v_1 .. v_n <class name tokens> . [EOS] pad``: the string
    ``"X X ... X {name}."`` is tokenized and the placeholder embeddings are replaced by
    the contexts, so the EOT position comes from the tokens. The frozen text tower
    encodes all classes x prompt names in one pass per call.

    Contexts need the text width, which only the backbone knows. Design: the contexts
    are created by ``init_context(backbone)``, which the classifier calls once right
    after building the backbone (before the optimizer exists); pass ``ctx_dim`` to
    create random contexts in ``__init__`` instead. Either way they are regular
    parameters named ``ctx_<prompt name>`` (``ctx_pos``, ``ctx_neg``), so
    ``state_dict()`` round trips; loading a state dict into an uninitialised learner
    creates them from the stored shapes.

    Args:
        prompt_names: one context per name, e.g. ('pos', 'neg') for DualCoOp.
        n_ctx: number of context vectors (replaced by the phrase's token count when
            ``init_phrase`` is given).
        class_specific: ``(C, n_ctx, width)`` contexts (needs ``num_classes``) instead of
            one shared ``(n_ctx, width)`` context.
        num_classes: C for class-specific contexts.
        init_phrase: initialise every context from this phrase's word embeddings
            (e.g. 'a photo of a'); otherwise ``N(0, init_std)``.
        init_std: std of the random init.
        ctx_dim: text width; when given (and no ``init_phrase``) contexts are created now.
        encode_chunk_size: classes per text-tower pass (x the number of prompt names
            sequences); bounds the tower's activations at 1000s of classes, same
            features (docs/scaling.md). None: all classes in one pass.
    """

    def __init__(self,
                 prompt_names: Sequence[str] = ('pos', 'neg'),
                 n_ctx: int = 16,
                 class_specific: bool = False,
                 num_classes: Optional[int] = None,
                 init_phrase: Optional[str] = None,
                 init_std: float = 0.02,
                 ctx_dim: Optional[int] = None,
                 encode_chunk_size: Optional[int] = 256):
        super().__init__(prompt_names)
        if encode_chunk_size is not None and (isinstance(encode_chunk_size, bool) or
                                              not isinstance(encode_chunk_size, int) or
                                              encode_chunk_size < 1):
            raise ValueError(f'encode_chunk_size must be a positive int or None, got '
                             f'{encode_chunk_size!r}')
        self.encode_chunk_size = encode_chunk_size
        if class_specific and not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(f'class_specific contexts need num_classes > 0, got {num_classes!r}')
        if init_phrase is None and int(n_ctx) < 1:
            raise ValueError(f'n_ctx must be >= 1, got {n_ctx}')
        self.n_ctx = int(n_ctx)
        self.class_specific = class_specific
        self.num_classes = num_classes
        self.init_phrase = init_phrase
        self.init_std = init_std
        if ctx_dim is not None and init_phrase is None:
            self._create_contexts(self._random_context(ctx_dim))

    # ------------------------------------------------------------ contexts
    def _context_shape(self, width: int):
        if self.class_specific:
            return (self.num_classes, self.n_ctx, width)
        return (self.n_ctx, width)

    def _random_context(self, width: int) -> Dict[str, torch.Tensor]:
        return {name: torch.randn(self._context_shape(width)) * self.init_std
                for name in self.prompt_names}

    def _create_contexts(self, values: Dict[str, torch.Tensor]):
        for name in self.prompt_names:
            self.register_parameter(f'ctx_{name}', nn.Parameter(values[name].clone()))

    @property
    def is_initialised(self) -> bool:
        return all(hasattr(self, f'ctx_{name}') for name in self.prompt_names)

    def context(self, name: str) -> nn.Parameter:
        """The context of prompt ``name``: ``(n_ctx, width)`` or ``(C, n_ctx, width)``."""
        return getattr(self, f'ctx_{name}')

    @torch.no_grad()
    def init_context(self, backbone) -> 'LearnablePrompts':
        """Create the contexts for ``backbone`` (idempotent: trained values are kept)."""
        width = backbone.text_width
        if self.is_initialised:
            have = self.context(self.prompt_names[0]).shape[-1]
            if have != width:
                raise ValueError(f'contexts have width {have} but the backbone text width is '
                                 f'{width}')
            return self
        if self.init_phrase is None:
            self._create_contexts(self._random_context(width))
            return self
        tokens = backbone.tokenize([self.init_phrase])
        eot = int(backbone.eot_indices(tokens)[0])
        phrase = backbone.embed_tokens(tokens)[0, 1:eot].float().cpu()  # between SOS and EOT
        if phrase.shape[0] == 0:
            raise ValueError(f'init_phrase {self.init_phrase!r} has no tokens')
        self.n_ctx = phrase.shape[0]
        if self.class_specific:
            phrase = phrase.unsqueeze(0).repeat(self.num_classes, 1, 1)
        self._create_contexts({name: phrase for name in self.prompt_names})
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint may be loaded before init_context: build the contexts from it.
        stored = [state_dict.get(f'{prefix}ctx_{name}') for name in self.prompt_names]
        if not self.is_initialised and all(value is not None for value in stored):
            self.n_ctx = stored[0].shape[-2]
            self._create_contexts({name: torch.empty_like(value, device='cpu')
                                   for name, value in zip(self.prompt_names, stored)})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------ prompts
    def _prompt_tokens(self, names: Tuple[str, ...], backbone) -> torch.Tensor:
        """Cached tokens ``(C, L)`` of the prompts (placeholders where the contexts go).
        Only the tokens are kept: their frozen embeddings are looked up per chunk, so
        no (C, L, width) tensor lives between calls."""
        key = (names, self.n_ctx)
        cached = self.cache_get(key, backbone.device)
        if cached is not None:
            return cached
        placeholders = ' '.join([PLACEHOLDER] * self.n_ctx)
        tokens = backbone.tokenize([f'{placeholders} {name}.' for name in names])
        placeholder_id = backbone.tokenize([PLACEHOLDER])[0, 1]
        if not bool((tokens[:, 1:1 + self.n_ctx] == placeholder_id).all()):
            raise ValueError('the tokenizer did not keep the context placeholders at positions '
                             f'1..{self.n_ctx} for class names {names[:5]}...')
        tokens = tokens.to(backbone.device)
        self.cache_put(key, backbone.device, tokens)
        return tokens

    def forward(self, class_names: Sequence[str], backbone,
                class_indices: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Text features of every prompt name for the given classes.

        Args:
            class_names: the C class names (all of them for class-specific contexts).
            backbone: an ``OpenCLIPBackbone``.
            class_indices: optional LongTensor ``(C',)``: encode only these classes.
        Returns:
            dict {prompt name: ``(C', D)`` L2-normalised features}.
        """
        if not self.is_initialised:
            raise RuntimeError('LearnablePrompts contexts do not exist yet: call '
                               'init_context(backbone) once after building the backbone')
        names = self.check_class_names(class_names)
        if self.class_specific and len(names) != self.num_classes:
            raise ValueError(f'class-specific contexts were built for num_classes='
                             f'{self.num_classes} but got {len(names)} class names')
        tokens = self._prompt_tokens(names, backbone)
        index = torch.arange(len(names), device=tokens.device)
        if class_indices is not None:
            index = self.class_index(class_indices, len(names), tokens.device)
        step = len(index) if self.encode_chunk_size is None else self.encode_chunk_size
        feats = {name: [] for name in self.prompt_names}
        for start in range(0, len(index), max(step, 1)):
            chunk = self._encode_classes(tokens, index[start:start + step], backbone)
            for name in self.prompt_names:
                feats[name].append(chunk[name])
        return {name: parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
                for name, parts in feats.items()}

    def _encode_classes(self, tokens: torch.Tensor, index: torch.Tensor,
                        backbone) -> Dict[str, torch.Tensor]:
        """Features of the classes ``index``, every prompt name in one text-tower pass
        (P * len(index) sequences)."""
        tokens = tokens[index]
        frozen = backbone.embed_tokens(tokens)
        prefix, suffix = frozen[:, :1], frozen[:, 1 + self.n_ctx:]
        num = tokens.shape[0]
        embeds = []
        for name in self.prompt_names:
            ctx = self.context(name)
            if self.class_specific:
                ctx = ctx[index.to(ctx.device)]
            else:
                ctx = ctx.unsqueeze(0).expand(num, -1, -1)
            embeds.append(torch.cat([prefix, ctx.to(prefix.dtype), suffix], dim=1))
        feats = backbone.encode_prompt_embeddings(
            torch.cat(embeds, dim=0), tokens.repeat(len(self.prompt_names), 1))
        return dict(zip(self.prompt_names, F.normalize(feats, dim=-1).split(num, dim=0)))

    def extra_repr(self) -> str:
        return (f'prompt_names={self.prompt_names}, n_ctx={self.n_ctx}, '
                f'class_specific={self.class_specific}, num_classes={self.num_classes}, '
                f'init_phrase={self.init_phrase!r}, encode_chunk_size={self.encode_chunk_size}')
