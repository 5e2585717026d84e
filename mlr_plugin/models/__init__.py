from . import checkpoint, clip, heads, losses, prompts  # noqa: F401
from .classifiers import CLIPPromptClassifier, TRMMLClassifier  # noqa: F401
