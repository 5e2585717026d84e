from .loading import LoadImageCV2, jpeg_size

__all__ = ['LoadImageCV2', 'jpeg_size']
from .gpu_pipeline import GPUBatchPipeline, LoadJPEGBytes  # noqa: E402

__all__ += ['GPUBatchPipeline', 'LoadJPEGBytes']
