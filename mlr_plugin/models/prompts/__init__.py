from .base import BasePromptLearner, check_prompt_names
from .handcrafted import DEFAULT_ENSEMBLE_TEMPLATES, HandcraftedPrompts
from .learnable import LearnablePrompts
from .merged import MergedPrompts
from .template_context import TemplateContextPrompts

__all__ = ['BasePromptLearner', 'LearnablePrompts', 'HandcraftedPrompts',
           'DEFAULT_ENSEMBLE_TEMPLATES', 'check_prompt_names', 'MergedPrompts',
           'TemplateContextPrompts']
