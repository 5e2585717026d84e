from .model_configs import register_model_configs

register_model_configs()

from .backbone import OpenCLIPBackbone  # noqa: E402
from .pos_embed import resize_grid_pos_embed  # noqa: E402
from .pretrained import resolve_pretrained  # noqa: E402

__all__ = ['OpenCLIPBackbone', 'resize_grid_pos_embed', 'resolve_pretrained',
           'register_model_configs']
