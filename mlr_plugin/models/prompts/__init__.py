from .handcrafted import DEFAULT_ENSEMBLE_TEMPLATES, HandcraftedPrompts
from .learnable import LearnablePrompts

__all__ = ['LearnablePrompts', 'HandcraftedPrompts', 'DEFAULT_ENSEMBLE_TEMPLATES']
