from .clip_prompt import CLIPPromptClassifier

__all__ = ['CLIPPromptClassifier']
