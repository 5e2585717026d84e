from .asl import PairSoftmaxASL, PartialSigmoidASL

__all__ = ['PairSoftmaxASL', 'PartialSigmoidASL']
