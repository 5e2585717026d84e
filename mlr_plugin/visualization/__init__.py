from .heatmaps import attention_to_maps, draw_class_heatmaps, overlay_heatmap

__all__ = ['attention_to_maps', 'draw_class_heatmaps', 'overlay_heatmap']
