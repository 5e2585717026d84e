"""Fixed text prompts (zero-shot baselines), optionally a template ensemble."""
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .base import BasePromptLearner, check_prompt_names

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
_ENCODE_CHUNK = 512  # sequences per text-tower call: bounds memory for 1000s of classes


@MODELS.register_module()
class HandcraftedPrompts(BasePromptLearner):
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
        if isinstance(templates, Mapping):
            names = check_prompt_names(tuple(templates))
            if prompt_names is not None and tuple(prompt_names) != names:
                raise ValueError(f'prompt_names {tuple(prompt_names)} differ from the templates '
                                 f'dict keys {names}')
            per_name = {name: templates[name] for name in names}
        else:
            names = check_prompt_names(('pos', ) if prompt_names is None else prompt_names)
            per_name = {name: templates for name in names}
        super().__init__(names)
        self.templates = {}
        for name, group in per_name.items():
            group = (group, ) if isinstance(group, str) else tuple(group)
            if not group or not all(isinstance(t, str) and t.count('{}') == 1 for t in group):
                raise ValueError(f'templates for {name!r} must be strings with exactly one '
                                 f"'{{}}', got {group!r}")
            self.templates[name] = group

    @torch.no_grad()
    def _encode(self, texts, backbone) -> torch.Tensor:
        feats = [backbone.encode_text(texts[i:i + _ENCODE_CHUNK]).float()
                 for i in range(0, len(texts), _ENCODE_CHUNK)]
        return F.normalize(torch.cat(feats, dim=0), dim=-1)

    def _class_features(self, names: Tuple[str, ...], backbone) -> Dict[str, torch.Tensor]:
        cached = self.cache_get(names, backbone.device)
        if cached is not None:
            return cached
        features = {}
        for prompt_name, templates in self.templates.items():
            texts = [template.format(name) for template in templates for name in names]
            per_template = self._encode(texts, backbone).view(len(templates), len(names), -1)
            features[prompt_name] = F.normalize(per_template.mean(dim=0), dim=-1)
        self.cache_put(names, backbone.device, features)
        return features

    def forward(self, class_names: Sequence[str], backbone,
                class_indices: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """dict {prompt name: ``(C', D)`` L2-normalised features} (no grad)."""
        names = self.check_class_names(class_names)
        features = self._class_features(names, backbone)
        if class_indices is None:
            return dict(features)
        index = self.class_index(class_indices, len(names), backbone.device)
        return {name: feat[index] for name, feat in features.items()}

    def extra_repr(self) -> str:
        return f'templates={self.templates}'
