from .inference import MultiLabelInferencer, inference_model
from .model_zoo import get_model, list_models, model_info

__all__ = ['MultiLabelInferencer', 'inference_model', 'get_model', 'list_models',
           'model_info']
