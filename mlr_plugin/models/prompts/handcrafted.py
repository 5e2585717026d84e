"""Fixed text prompts (zero-shot baselines), optionally a template ensemble."""
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .learnable import check_prompt_names

# Generic scene-friendly templates for an ensemble (ours, short on purpose).
DEFAULT_ENSEMBLE_TEMPLATES = (
    'a photo of a {}.',
    'a photo of the {}.',
    'a photo containing a {}.',
    'an image with a {} in it.',
    'a close-up photo of a {}.',
    'a blurry photo of a {}.',
    'a picture of a scene with a {}.',
)
_CACHE_SIZE = 8
_ENCODE_CHUNK = 512  # sequences per text-tower call: bounds memory for 1000s of classes


@MODELS.register_module()
class HandcraftedPrompts(nn.Module):
    """Text features from fixed templates; several templates are ensembled.

    Ensemble: mean of the per-template L2-normalised features, renormalised. Features
    are computed once per class-name list (no grad) and cached in float32.

    Args:
        templates: templates with one ``{}`` for the class name. A list / tuple (or a
            single string) applies to every prompt name; a dict
            ``{prompt name: [templates]}`` gives each name its own, e.g.
            ``dict(pos=['a photo of a {}.'], neg=['a photo without a {}.'])``.
        prompt_names: names of the outputs for list templates (default ``('pos',)``).
            With dict templates the dict keys are the names (then this must be None or
            the same names).
    """

    def __init__(self,
                 templates: Union[str, Sequence[str], Mapping[str, Sequence[str]]] = (
                     'a photo of a {}.', ),
                 prompt_names: Optional[Sequence[str]] = None):
        super().__init__()
        if isinstance(templates, Mapping):
            names = check_prompt_names(tuple(templates))
            if prompt_names is not None and tuple(prompt_names) != names:
                raise ValueError(f'prompt_names {tuple(prompt_names)} differ from the templates '
                                 f'dict keys {names}')
            per_name = {name: templates[name] for name in names}
        else:
            names = check_prompt_names(('pos', ) if prompt_names is None else prompt_names)
            per_name = {name: templates for name in names}
        self.templates = {}
        for name, group in per_name.items():
            group = (group, ) if isinstance(group, str) else tuple(group)
            if not group or not all(isinstance(t, str) and t.count('{}') == 1 for t in group):
                raise ValueError(f'templates for {name!r} must be strings with exactly one '
                                 f"'{{}}', got {group!r}")
            self.templates[name] = group
        self.prompt_names = names
        self._feature_cache = OrderedDict()  # names tuple -> {prompt name: (C, D)}

    @torch.no_grad()
    def _encode(self, texts, backbone) -> torch.Tensor:
        feats = [backbone.encode_text(texts[i:i + _ENCODE_CHUNK]).float()
                 for i in range(0, len(texts), _ENCODE_CHUNK)]
        return F.normalize(torch.cat(feats, dim=0), dim=-1)

    def _class_features(self, names: Tuple[str, ...], backbone) -> Dict[str, torch.Tensor]:
        cached = self._feature_cache.get(names)
        if cached is not None and cached[self.prompt_names[0]].device == backbone.device:
            self._feature_cache.move_to_end(names)
            return cached
        features = {}
        for prompt_name, templates in self.templates.items():
            texts = [template.format(name) for template in templates for name in names]
            per_template = self._encode(texts, backbone).view(len(templates), len(names), -1)
            features[prompt_name] = F.normalize(per_template.mean(dim=0), dim=-1)
        self._feature_cache[names] = features
        if len(self._feature_cache) > _CACHE_SIZE:
            self._feature_cache.popitem(last=False)
        return features

    def forward(self, class_names: Sequence[str], backbone,
                class_indices: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """dict {prompt name: ``(C', D)`` L2-normalised features} (no grad)."""
        names = tuple(class_names)
        if not names:
            raise ValueError('class_names is empty')
        features = self._class_features(names, backbone)
        if class_indices is None:
            return dict(features)
        index = torch.as_tensor(class_indices, dtype=torch.long, device=backbone.device)
        if index.dim() != 1 or (index.numel() and (int(index.min()) < 0
                                                  or int(index.max()) >= len(names))):
            raise ValueError(f'class_indices must be a 1-D LongTensor in [0, {len(names)})')
        return {name: feat[index] for name, feat in features.items()}

    def extra_repr(self) -> str:
        return f'templates={self.templates}'
