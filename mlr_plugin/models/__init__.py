from . import checkpoint, clip, heads, losses, prompts  # noqa: F401
from .classifiers import CLIPPromptClassifier, MKTClassifier  # noqa: F401
