"""Several prompt learners as one: learned contexts next to fixed text features.

Semantic decoupling (docs/methods.md section 4) needs both: category-specific learnable
prompts it scores against, and a fixed per-class semantic vector ("a photo of a {}."
through the frozen text tower) that guides its spatial attention.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .base import BasePromptLearner


@MODELS.register_module()
class MergedPrompts(BasePromptLearner):
    """The outputs of several prompt learners in one dict.

    Args:
        learners: configs (or modules) of prompt learners; their prompt names must be
            distinct, e.g. ``[dict(type='LearnablePrompts', prompt_names=('pos',), ...),
            dict(type='HandcraftedPrompts', templates=dict(semantic=['a photo of a {}.']))]``.
        num_classes: given to every class-specific learner config that does not set it
            (so a config sets it in one place, as for a single learner).

    Class-specific learners must agree on ``num_classes``; the merged learner reports
    ``class_specific`` / ``num_classes`` so the classifier refuses other class lists.
    """

    def __init__(self, learners: Sequence[dict], num_classes: Optional[int] = None):
        if isinstance(learners, (dict, nn.Module)) or not learners:
            raise ValueError(f'learners must be a non-empty list of prompt learner configs, '
                             f'got {learners!r}')
        built = []
        for cfg in learners:
            if isinstance(cfg, dict):
                cfg = dict(cfg)
                if cfg.get('class_specific') and cfg.get('num_classes') is None:
                    cfg['num_classes'] = num_classes
                cfg = MODELS.build(cfg)
            built.append(cfg)
        names = [name for learner in built for name in learner.prompt_names]
        super().__init__(names)  # checks the names are distinct
        self.learners = nn.ModuleList(built)
        sizes = {learner.num_classes for learner in built
                 if getattr(learner, 'class_specific', False)}
        if len(sizes) > 1:
            raise ValueError(f'class-specific learners disagree on num_classes: {sorted(sizes)}')
        self.class_specific = bool(sizes)
        self.num_classes = sizes.pop() if sizes else None

    def init_context(self, backbone) -> 'MergedPrompts':
        for learner in self.learners:
            if hasattr(learner, 'init_context'):
                learner.init_context(backbone)
        return self

    def forward(self, class_names: Sequence[str], backbone,
                class_indices: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """dict {prompt name: ``(C', D)``} of every learner's prompts."""
        merged = {}
        for learner in self.learners:
            merged.update(learner(class_names, backbone, class_indices=class_indices))
        return merged
