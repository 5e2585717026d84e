from . import checkpoint, clip, heads, losses, prompts  # noqa: F401
from .classifiers import CLIPPromptClassifier, MKTClassifier, TRMMLClassifier  # noqa: F401
