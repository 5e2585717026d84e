from . import clip, heads, losses, prompts  # noqa: F401
from .classifier import CLIPPromptClassifier  # noqa: F401
