from .loading import LoadImageCV2, jpeg_size

__all__ = ['LoadImageCV2', 'jpeg_size']
