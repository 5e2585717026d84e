"""Frozen open_clip image + text towers with dense (per-location) image features.

See docs/methods.md 0.1 (dense features) and 0.2 (prompt encoding).
"""
import copy
import logging
from contextlib import contextmanager, nullcontext
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .pos_embed import resize_grid_pos_embed
from .pretrained import (check_model_name, is_torchscript_archive, load_weights,
                         resolve_pretrained)

_TOKENIZERS = {}  # (model_name, context_length) -> open_clip tokenizer (BPE load is slow)
_TRUNCATABLE_POOLS = ('argmax', 'eos', 'first')


def _get_tokenizer(model_name: str, context_length: int, cache_dir: Optional[str]):
    key = (model_name, context_length)
    if key not in _TOKENIZERS:
        import open_clip
        _TOKENIZERS[key] = open_clip.get_tokenizer(
            model_name, context_length=context_length, cache_dir=cache_dir)
    return _TOKENIZERS[key]


@contextmanager
def _quiet_logging():
    """Hide open_clip's 'initialized randomly' warning when we load weights right after."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _to_hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f'image_size must be an int or (height, width), got {size}')
    return size


@MODELS.register_module()
class OpenCLIPBackbone(nn.Module):
    """A frozen open_clip CLIP: dense image features, prompt encoding, tokenizer.

    Args:
        model_name: open_clip architecture name ('RN101', 'ViT-B-16', 'mlr-tiny-rn', ...).
        pretrained: None (random init), an open_clip tag ('openai', ...), a local weights
            file (.pt/.pth/.bin/.safetensors; open_clip state dict, possibly fp16, or an
            OpenAI TorchScript archive) or 'mlr_plugin://<path inside the package>'.
            Tags are only looked up in the local caches; a missing file raises
            FileNotFoundError at once (see ``pretrained.resolve_pretrained``). Tags and
            TorchScript archives switch on QuickGELU when OpenAI trained with it; for
            OpenAI weights saved as a plain state dict use the '-quickgelu' model name.
        image_size: input size S (int or (H, W)); the positional embeddings are resized
            once here (ResNet: attention-pool grid; ViT: patch grid). None = native.
        with_mean_token: ResNet dense features: prepend the spatial-mean token.
        with_pos_embed: ResNet dense features: add the attention pool's positional
            embedding (the class row is dropped when the mean token is off).
        cache_dir: open_clip download cache (also where tags are looked for).
        trainable_vision_blocks: k > 0 (ViT only, MKT): the last k blocks, ``ln_post``
            and ``proj`` train and run with grad; everything else stays frozen.
        with_teacher: also return ``teacher_global_feat``, the image embedding of the
            frozen original tower (ViT with ``trainable_vision_blocks`` > 0: a frozen copy
            of the trainable tail runs on the shared frozen prefix, so the teacher costs
            only k extra blocks).
        precision: open_clip precision ('fp32', 'fp16', 'bf16', 'pure_bf16', ...). Keep
            'fp32' and use ``torch.autocast`` for mixed precision.
        allow_download: let open_clip download a tag that is not cached (needs internet).

    Attributes:
        embed_dim (D), text_width, context_length, image_size, is_resnet, tokenizer,
        image_mean / image_std (normalisation the weights expect).
    """

    def __init__(self,
                 model_name: str = 'RN101',
                 pretrained: Optional[str] = None,
                 image_size: Optional[Union[int, Sequence[int]]] = None,
                 with_mean_token: bool = True,
                 with_pos_embed: bool = True,
                 cache_dir: Optional[str] = None,
                 trainable_vision_blocks: int = 0,
                 with_teacher: bool = False,
                 precision: str = 'fp32',
                 allow_download: bool = False):
        super().__init__()
        import open_clip
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transformer import VisionTransformer

        self.model_name = check_model_name(model_name)
        self.pretrained = pretrained
        self.cache_dir = cache_dir
        self.with_mean_token = with_mean_token
        self.with_pos_embed = with_pos_embed
        self.precision = precision

        weights_path, tag_cfg = None, {}
        if pretrained:
            weights_path, tag_cfg = resolve_pretrained(
                self.model_name, pretrained, cache_dir, allow_download=allow_download)
        # OpenAI weights were trained with QuickGELU; open_clip's plain configs use GELU.
        quick_gelu = bool(tag_cfg.get('quick_gelu')) or bool(
            weights_path and is_torchscript_archive(weights_path))
        context = _quiet_logging() if weights_path else nullcontext()
        with context:
            clip = open_clip.create_model(self.model_name, pretrained=None, precision=precision,
                                          force_quick_gelu=quick_gelu, cache_dir=cache_dir)
        if weights_path:
            load_weights(clip, weights_path)
        clip.requires_grad_(False)
        self.clip = clip
        self.image_mean = tuple(tag_cfg.get('mean', OPENAI_DATASET_MEAN))
        self.image_std = tuple(tag_cfg.get('std', OPENAI_DATASET_STD))

        visual = clip.visual
        if isinstance(visual, ModifiedResNet):
            self.is_resnet = True
            self.embed_dim = visual.output_dim
        elif isinstance(visual, VisionTransformer):
            self.is_resnet = False
            self.embed_dim = visual.output_dim
            if visual.attn_pool is not None or visual.pool_type not in ('tok', 'avg'):
                raise NotImplementedError(
                    f'{self.model_name}: ViT with attentional pooling / pool_type='
                    f'{visual.pool_type!r} is not supported (need a class token or avg pool)')
        else:
            raise NotImplementedError(
                f'{self.model_name}: vision tower {type(visual).__name__} is not supported '
                f'(ModifiedResNet and VisionTransformer are)')
        self._check_text_tower()
        self.text_width = self._text.token_embedding.embedding_dim
        self.context_length = clip.context_length

        self._resize_image_input(image_size)
        self.trainable_vision_blocks = int(trainable_vision_blocks)
        self.with_teacher = bool(with_teacher)
        if self.with_teacher:
            self._build_teacher_tail()
        self._unfreeze_vision_blocks(self.trainable_vision_blocks)
        self.train()

    # ------------------------------------------------------------------ setup
    @property
    def _text(self) -> nn.Module:
        """The module holding token_embedding ... text_projection (CLIP or its .text)."""
        return getattr(self.clip, 'text', self.clip)

    def _check_text_tower(self):
        text = self._text
        if not hasattr(text, 'token_embedding') or not hasattr(text, 'transformer'):
            raise NotImplementedError(
                f'{self.model_name}: text tower {type(text).__name__} (e.g. HF) is not supported')
        if getattr(text, 'cls_emb', None) is not None or getattr(text, 'use_pad_mask', False):
            raise NotImplementedError(
                f'{self.model_name}: text towers with a class token or pad mask are not supported')

    def _resize_image_input(self, image_size):
        """Build the positional embeddings for ``image_size`` once (not per forward)."""
        visual = self.clip.visual
        native = _to_hw(visual.image_size)
        target = native if image_size is None else _to_hw(image_size)
        stride = 32 if self.is_resnet else _to_hw(visual.patch_size)[0]
        if target[0] % stride or target[1] % stride:
            raise ValueError(f'image_size {target} must be a multiple of {stride} for '
                             f'{self.model_name}')
        new_grid = (target[0] // stride, target[1] // stride)
        if self.is_resnet:
            pool = visual.attnpool
            old_grid = (native[0] // 32, native[1] // 32)
            pool.positional_embedding = nn.Parameter(
                resize_grid_pos_embed(pool.positional_embedding.data, old_grid, new_grid),
                requires_grad=False)
        else:
            visual.positional_embedding = nn.Parameter(
                resize_grid_pos_embed(visual.positional_embedding.data,
                                      tuple(visual.grid_size), new_grid),
                requires_grad=False)
            visual.grid_size = new_grid
        visual.image_size = target if target[0] != target[1] else target[0]
        self.image_size = visual.image_size
        self.feat_grid = new_grid
        self._input_hw = target

    def _build_teacher_tail(self):
        """Frozen copies of the parts that will train, taken before they train."""
        if self.trainable_vision_blocks <= 0:
            raise ValueError('with_teacher=True needs trainable_vision_blocks > 0: with a '
                             'fully frozen tower the teacher would equal the student')
        if self.is_resnet:
            raise NotImplementedError('with_teacher is for ViT towers (MKT)')
        visual = self.clip.visual
        self.teacher_tail = nn.ModuleDict(dict(
            blocks=copy.deepcopy(visual.transformer.resblocks[-self.trainable_vision_blocks:]),
            ln_post=copy.deepcopy(visual.ln_post)))
        self.teacher_tail.register_parameter(
            'proj', nn.Parameter(visual.proj.detach().clone(), requires_grad=False))
        self.teacher_tail.requires_grad_(False)

    def _trainable_vision_modules(self):
        if self.trainable_vision_blocks <= 0:
            return []
        visual = self.clip.visual
        return [*visual.transformer.resblocks[-self.trainable_vision_blocks:], visual.ln_post]

    def _unfreeze_vision_blocks(self, k: int):
        if k <= 0:
            return
        if self.is_resnet:
            raise NotImplementedError(
                'trainable_vision_blocks is for ViT towers (MKT); ModifiedResNet towers are '
                'always frozen: use a ViT model_name or trainable_vision_blocks=0')
        visual = self.clip.visual
        num_blocks = len(visual.transformer.resblocks)
        if k > num_blocks:
            raise ValueError(f'trainable_vision_blocks={k} > {num_blocks} blocks in '
                             f'{self.model_name}')
        for module in self._trainable_vision_modules():
            module.requires_grad_(True)
        visual.proj.requires_grad_(True)

    def train(self, mode: bool = True):
        """Frozen parts stay in eval mode (BatchNorm statistics never update)."""
        super().train(mode)
        self.clip.eval()
        if self.with_teacher:
            self.teacher_tail.eval()
        for module in self._trainable_vision_modules():
            module.train(mode)
        return self

    # ------------------------------------------------------------------ image
    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Image features, not L2-normalised (the features contract every head reads).

        Args:
            images: ``(B, 3, S, S)``, already normalised with ``image_mean/std``.
        Returns:
            dict with
            - ``dense`` (B, h*w, D): one token per grid location, row-major;
            - ``grid`` (h, w): ``h = S/32`` (ResNet) or ``S/patch`` (ViT);
            - ``global_feat`` (B, D): CLIP's image embedding (ResNet attention pool, ViT
              class token);
            - ``prefix_tokens`` (B, 1, D), ResNet with ``with_mean_token`` only: the value
              projection of the spatial-mean token;
            - ``teacher_global_feat`` (B, D) with ``with_teacher``.
        """
        if tuple(images.shape[-2:]) != self._input_hw:
            raise ValueError(f'images are {tuple(images.shape[-2:])} but the backbone was built '
                             f'for image_size={self._input_hw}; set image_size in the config')
        images = images.to(self.clip.visual.conv1.weight.dtype)
        if self.is_resnet:
            return self._forward_resnet(images)
        return self._forward_vit(images)

    def _forward_resnet(self, images):
        visual = self.clip.visual
        with torch.no_grad():
            feat = visual.stem(images)
            feat = visual.layer4(visual.layer3(visual.layer2(visual.layer1(feat))))
            global_feat = visual.attnpool(feat)
            tokens = self.resnet_dense_features(feat)
        out = dict(dense=tokens, grid=self.feat_grid, global_feat=global_feat)
        if self.with_mean_token:
            out.update(prefix_tokens=tokens[:, :1], dense=tokens[:, 1:])
        return out

    def resnet_dense_features(self, feat: torch.Tensor) -> torch.Tensor:
        """docs/methods.md 0.1: ``c_proj(v_proj(tokens [+ pos]))`` per location, no q/k attention.

        Args:
            feat: layer4 output ``(B, W, h, w)``.
        Returns:
            ``(B, h*w (+1), D)``; token 0 is the spatial mean when ``with_mean_token``.
        """
        pool = self.clip.visual.attnpool  # open_clip 3.3.0: separate q/k/v_proj Linears
        tokens = feat.flatten(2).transpose(1, 2)  # (B, hw, W), row-major like attnpool
        pos = pool.positional_embedding  # (1 + hw, W): mean/class row first
        if self.with_mean_token:
            tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        else:
            pos = pos[1:]
        if self.with_pos_embed:
            tokens = tokens + pos.to(tokens.dtype)
        return pool.c_proj(pool.v_proj(tokens))

    def _forward_vit(self, images):
        visual = self.clip.visual
        blocks = visual.transformer.resblocks
        num_frozen = len(blocks) - self.trainable_vision_blocks
        batch_first = getattr(visual.transformer, 'batch_first', True)
        with torch.no_grad():
            x = visual.conv1(images).flatten(2).transpose(1, 2)  # (B, hw, width)
            cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
            x = visual.ln_pre(visual.patch_dropout(x))
            if not batch_first:
                x = x.transpose(0, 1)
            for block in blocks[:num_frozen]:
                x = block(x)
            teacher = self._teacher_global(x) if self.with_teacher else None
        with torch.set_grad_enabled(torch.is_grad_enabled() and num_frozen < len(blocks)):
            for block in blocks[num_frozen:]:
                x = block(x)
            if not batch_first:
                x = x.transpose(0, 1)
            dense, global_feat = self._vit_head(x, visual.ln_post, visual.proj)
        out = dict(dense=dense, grid=self.feat_grid, global_feat=global_feat)
        if teacher is not None:
            out['teacher_global_feat'] = teacher
        return out

    def _vit_head(self, x, ln_post, proj):
        """Tokens (B, 1 + hw, width) -> (dense (B, hw, D), global (B, D))."""
        visual = self.clip.visual
        tokens = ln_post(x)  # ln_post on ALL tokens, then proj
        dense = tokens[:, 1:] @ proj
        if visual.final_ln_after_pool:
            pooled = ln_post(x[:, 0] if visual.pool_type == 'tok' else x[:, 1:].mean(dim=1))
        else:
            pooled = tokens[:, 0] if visual.pool_type == 'tok' else tokens[:, 1:].mean(dim=1)
        return dense, pooled @ proj

    def _teacher_global(self, x):
        """The frozen original tail on the shared frozen prefix (sequence-first if the
        transformer is)."""
        for block in self.teacher_tail['blocks']:
            x = block(x)
        if not getattr(self.clip.visual.transformer, 'batch_first', True):
            x = x.transpose(0, 1)
        return self._vit_head(x, self.teacher_tail['ln_post'], self.teacher_tail.proj)[1]

    # ------------------------------------------------------------------ text
    @property
    def device(self) -> torch.device:
        """Device of the text tower (where prompt embeddings live)."""
        return self._text.token_embedding.weight.device

    @property
    def tokenizer(self):
        """open_clip's tokenizer for this model (offline BPE for CLIP models)."""
        return _get_tokenizer(self.model_name, self.context_length, self.cache_dir)

    def tokenize(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """list of N strings -> LongTensor ``(N, context_length)`` on the CPU."""
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer(list(texts)).long()

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Frozen token embedding: ``(N, ctx_len)`` -> ``(N, ctx_len, text_width)``."""
        embedding = self._text.token_embedding
        with torch.no_grad():
            return embedding(tokens.to(embedding.weight.device))

    @property
    def _text_pool_type(self) -> str:
        return getattr(self.clip, 'text_pool_type', getattr(self._text, 'pool_type', 'argmax'))

    def eot_indices(self, tokens: torch.Tensor) -> torch.Tensor:
        """Position of the token whose feature is the text feature (open_clip's rule)."""
        pool_type = self._text_pool_type
        if pool_type == 'argmax':  # the EOT id is the largest id in the CLIP vocabulary
            return tokens.argmax(dim=-1)
        if pool_type == 'eos':
            eos_id = getattr(self.clip, 'text_eos_id', getattr(self._text, 'eos_id', None))
            return (tokens == eos_id).int().argmax(dim=-1)
        if pool_type == 'first':
            return torch.zeros_like(tokens[:, 0])
        if pool_type == 'last':
            return torch.full_like(tokens[:, 0], tokens.shape[1] - 1)
        raise NotImplementedError(f'text pool_type {pool_type!r} is not supported')

    def encode_prompt_embeddings(self, embeds: torch.Tensor, tokens: torch.Tensor,
                                 truncate: bool = True) -> torch.Tensor:
        """Encode token embeddings (some of them learnable) with the frozen text tower.

        positional embedding -> transformer (causal mask) -> ln_final -> EOT token ->
        text_projection. Gradients flow back to ``embeds`` (no ``no_grad`` here).

        Args:
            embeds: ``(N, ctx_len, text_width)``.
            tokens: ``(N, ctx_len)`` ids; they only locate the EOT token.
            truncate: with a causal mask, tokens after the EOT cannot change it, so the
                sequences are cut at the longest prompt's EOT + 1 first (same result,
                much less work for short prompts).
        Returns:
            ``(N, D)`` text features, not normalised.
        """
        text = self._text
        if embeds.dim() != 3 or tuple(embeds.shape[:2]) != tuple(tokens.shape):
            raise ValueError(f'embeds {tuple(embeds.shape)} and tokens {tuple(tokens.shape)} '
                             f'must be (N, L, width) and (N, L)')
        tokens = tokens.to(embeds.device)
        length = tokens.shape[1]
        attn_mask = getattr(text, 'attn_mask', None)
        if truncate and attn_mask is not None and self._text_pool_type in _TRUNCATABLE_POOLS:
            length = int(self.eot_indices(tokens).max()) + 1
        eot = self.eot_indices(tokens[:, :length])
        cast_dtype = text.transformer.get_cast_dtype()
        x = embeds[:, :length].to(cast_dtype) + text.positional_embedding[:length].to(cast_dtype)
        if attn_mask is not None:
            attn_mask = attn_mask[:length, :length]
        x = text.transformer(x, attn_mask=attn_mask)
        x = text.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        projection = text.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection

    def encode_text(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """Texts -> ``(N, D)`` features (not normalised), without grad."""
        tokens = self.tokenize(texts)
        with torch.no_grad():
            return self.encode_prompt_embeddings(self.embed_tokens(tokens), tokens)
