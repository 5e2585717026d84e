from .checkpointing import AtomicCheckpointHook  # noqa: F401
from .dump import DumpMultiLabelPredictions  # noqa: F401
from .hooks import ClassNamesHook  # noqa: F401
from .samplers import EpochSeededSampler  # noqa: F401
from .schedulers import PlainOneCycleLR  # noqa: F401
