from .attention import attention_to_maps, scores_and_attention
from .heatmaps import draw_class_heatmaps, draw_topk, overlay_heatmap
from .hook import AttentionVisHook

__all__ = ['attention_to_maps', 'scores_and_attention', 'draw_class_heatmaps',
           'draw_topk', 'overlay_heatmap', 'AttentionVisHook']
