from .asl import PairSoftmaxASL, PartialSigmoidASL
from .ranking import EmbeddingL1Loss, PairwiseRankingLoss, pairwise_ranking_per_image

__all__ = ['PairSoftmaxASL', 'PartialSigmoidASL', 'PairwiseRankingLoss', 'EmbeddingL1Loss',
           'pairwise_ranking_per_image']
