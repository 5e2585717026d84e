from .gpu_augment import GPUAugmentDataPreprocessor

__all__ = ['GPUAugmentDataPreprocessor']
