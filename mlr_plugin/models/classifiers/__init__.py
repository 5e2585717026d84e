from .clip_prompt import CLIPPromptClassifier
from .mkt import MKTClassifier

__all__ = ['CLIPPromptClassifier', 'MKTClassifier']
