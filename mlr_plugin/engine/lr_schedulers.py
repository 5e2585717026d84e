"""Learning-rate schedules mmengine lacks: closed forms its chained schedulers cannot state
exactly (``WarmupCosineLR``), and a ``OneCycleLR`` whose checkpoint state is plain data
(``PlainOneCycleLR``: mmengine's keeps its annealing function, a bound method, in the state
it saves, which ``torch.load(weights_only=True)`` refuses, so such a run could not be
tested or resumed from its own checkpoints)."""
import math

from mmengine.optim.scheduler import OneCycleLR
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmpretrain.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class WarmupCosineLR(LRSchedulerMixin, _ParamScheduler):
    """Linear warm-up from 0, then half-cycle cosine to ``eta_min_ratio`` x each group's
    initial lr (MAE's / MKT's per-iteration schedule).

    At step ``s`` of ``T = end - begin`` (``W`` warm-up steps), every group's lr is
    ``base * s / W`` while ``s < W``, else
    ``base * (r + (1 - r) * (1 + cos(pi * (s - W) / (T - W))) / 2)``. With
    ``convert_to_iter_based=True`` the epochs become iterations, so the lr at
    iteration ``i`` of epoch length ``N`` is the reference formula at the fractional
    epoch ``i / N``. mmengine's ``LinearLR`` reaches its end factor one step early
    (at ``end - 1``), so it cannot express this warm-up exactly.

    Args:
        optimizer: wrapped optimizer.
        warmup: warm-up length, in the same unit as ``begin`` / ``end``.
        eta_min_ratio: final lr as a fraction of each group's initial lr (layer-wise
            decayed groups keep their ratio to the end: ``min_lr * scale``).
        begin, end: the schedule's range (``end`` is required).
    """

    def __init__(self, optimizer, warmup: float = 0, eta_min_ratio: float = 0.0,
                 begin: int = 0, end: int = INF, last_step: int = -1,
                 by_epoch: bool = True, verbose: bool = False):
        if end == INF:
            raise ValueError('WarmupCosineLR needs a finite end')
        if not 0 <= warmup < end - begin:
            raise ValueError(f'warmup must be in [0, end - begin) = [0, {end - begin}), '
                             f'got {warmup}')
        if eta_min_ratio < 0:
            raise ValueError(f'eta_min_ratio must be >= 0, got {eta_min_ratio}')
        self.warmup = float(warmup)
        self.eta_min_ratio = float(eta_min_ratio)
        super().__init__(optimizer, begin=begin, end=end, last_step=last_step,
                         by_epoch=by_epoch, verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, warmup=0, begin=0, end=INF, by_epoch=True,
                              epoch_length=None, **kwargs):
        """The same schedule counted in iterations (mmengine's ``convert_to_iter_based``)."""
        if not by_epoch or not epoch_length or epoch_length <= 0:
            raise ValueError('convert_to_iter_based needs by_epoch=True and epoch_length > 0')
        return cls(*args, warmup=warmup * epoch_length, begin=int(begin * epoch_length),
                   end=int(end * epoch_length) if end != INF else INF, by_epoch=False,
                   **kwargs)

    def factor(self, step: int) -> float:
        """The lr of step ``step`` as a fraction of the initial lr."""
        if step < self.warmup:
            return step / self.warmup
        progress = (step - self.warmup) / (self.end - self.begin - self.warmup)
        ratio = self.eta_min_ratio
        return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def _get_value(self):
        return [base * self.factor(self.last_step) for base in self.base_values]


@PARAM_SCHEDULERS.register_module()
class PlainOneCycleLR(OneCycleLR):
    """mmengine's ``OneCycleLR`` (same arguments and values) whose ``state_dict`` holds
    the annealing strategy's name instead of the function."""

    def __init__(self, *args, anneal_strategy: str = 'cos', **kwargs):
        super().__init__(*args, anneal_strategy=anneal_strategy, **kwargs)
        self.anneal_strategy = anneal_strategy

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.pop('anneal_func', None)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        strategy = state_dict.get('anneal_strategy', self.anneal_strategy)
        super().load_state_dict(state_dict)
        self.anneal_func = (self._annealing_cos if strategy == 'cos'
                            else self._annealing_linear)
