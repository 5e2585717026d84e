from . import checkpoint, clip, data_preprocessors, heads, losses, prompts  # noqa: F401
from .classifiers import CLIPPromptClassifier, MKTClassifier, TRMMLClassifier  # noqa: F401
