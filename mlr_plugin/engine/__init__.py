from .checkpointing import AtomicCheckpointHook  # noqa: F401
from .dump import DumpMultiLabelPredictions  # noqa: F401
from .hooks import ClassNamesHook  # noqa: F401
from .lr_schedulers import PlainOneCycleLR, WarmupCosineLR  # noqa: F401
from .samplers import EpochSeededSampler  # noqa: F401
from .visualizer import MLRVisualizer  # noqa: F401
