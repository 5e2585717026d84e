from .base import BasePromptLearner, check_prompt_names
from .handcrafted import DEFAULT_ENSEMBLE_TEMPLATES, HandcraftedPrompts
from .learnable import LearnablePrompts
from .template_context import TemplateContextPrompts

__all__ = ['BasePromptLearner', 'LearnablePrompts', 'HandcraftedPrompts',
           'DEFAULT_ENSEMBLE_TEMPLATES', 'check_prompt_names', 'TemplateContextPrompts']
