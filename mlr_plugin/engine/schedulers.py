"""Parameter schedulers whose checkpoint state is plain data.

mmengine's ``OneCycleLR`` keeps its annealing function (a bound method) in the state it
saves, and checkpoints are read with ``torch.load(weights_only=True)``, which refuses
it: a run with that scheduler could not be tested or resumed from its own checkpoints.
"""
from mmengine.optim.scheduler import OneCycleLR
from mmpretrain.registry import PARAM_SCHEDULERS


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
