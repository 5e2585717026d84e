from .asl import PairSoftmaxASL, PartialSigmoidASL
from .contrastive import MultimodalContrastiveLoss, anchored_info_nce
from .kd import kl_distillation

__all__ = ['PairSoftmaxASL', 'PartialSigmoidASL', 'MultimodalContrastiveLoss',
           'anchored_info_nce', 'kl_distillation']
