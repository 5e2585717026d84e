"""The runtime's visualizer: mmpretrain's ``UniversalVisualizer`` with TensorBoard as one
switch (``--cfg-options visualizer.tensorboard=True``) next to the local JSON / text logs."""
import importlib
from typing import Optional, Sequence

from mmpretrain.registry import VISUALIZERS
from mmpretrain.visualization import UniversalVisualizer

TENSORBOARD_BACKEND = 'TensorboardVisBackend'


def check_tensorboard_installed() -> None:
    """A one-line ImportError when neither writer mmengine's TensorBoard backend uses
    (tensorboardX, or torch.utils.tensorboard backed by the tensorboard package) imports;
    mmengine itself would fail only at the first logged scalar."""
    for module in ('tensorboardX', 'torch.utils.tensorboard'):
        try:
            importlib.import_module(module)
            return
        except ImportError:
            pass
    raise ImportError('visualizer.tensorboard=True needs the tensorboard package: '
                      'pip install tensorboard (or pip install "mlr_plugin[tensorboard]")')


@VISUALIZERS.register_module()
class MLRVisualizer(UniversalVisualizer):
    """``UniversalVisualizer`` whose ``tensorboard=True`` adds mmengine's
    ``TensorboardVisBackend`` to ``vis_backends`` (events under ``<run>/vis_data/``).

    Args:
        tensorboard (bool): also write TensorBoard event files. Default False.
        name, vis_backends, **kwargs: as ``UniversalVisualizer``.
    """

    def __init__(self, name: str = 'visualizer',
                 vis_backends: Optional[Sequence[dict]] = None,
                 tensorboard: bool = False, **kwargs):
        if not isinstance(tensorboard, bool):
            raise ValueError(f'visualizer.tensorboard must be True or False, got '
                             f'{tensorboard!r}')
        backends = [vis_backends] if isinstance(vis_backends, dict) else list(
            vis_backends or [])
        if tensorboard:
            check_tensorboard_installed()
            if not any(isinstance(b, dict) and b.get('type') == TENSORBOARD_BACKEND
                       for b in backends):
                backends.append(dict(type=TENSORBOARD_BACKEND))
        self.tensorboard = tensorboard
        super().__init__(name=name, vis_backends=backends, **kwargs)
