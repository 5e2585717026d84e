from .clip_prompt import CLIPPromptClassifier
from .mkt import MKTClassifier
from .trm_ml import MultimodalPrototypeBank, TRMMLClassifier

__all__ = ['CLIPPromptClassifier', 'MKTClassifier', 'MultimodalPrototypeBank',
           'TRMMLClassifier']
