from .asl import PairSoftmaxASL, PartialSigmoidASL
from .contrastive import MultimodalContrastiveLoss, anchored_info_nce
from .kd import kl_distillation
from .ranking import EmbeddingL1Loss, PairwiseRankingLoss, pairwise_ranking_per_image

__all__ = ['PairSoftmaxASL', 'PartialSigmoidASL', 'MultimodalContrastiveLoss',
           'anchored_info_nce', 'kl_distillation', 'PairwiseRankingLoss', 'EmbeddingL1Loss',
           'pairwise_ranking_per_image']
