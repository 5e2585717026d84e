from .clip_prompt import CLIPPromptClassifier
from .trm_ml import MultimodalPrototypeBank, TRMMLClassifier

__all__ = ['CLIPPromptClassifier', 'MultimodalPrototypeBank', 'TRMMLClassifier']
