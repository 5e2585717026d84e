"""Runner hooks: class names travel from each loop's dataset to the model."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from mmpretrain.registry import HOOKS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _dataset_classes(dataloader):
    dataset = dataloader.dataset
    classes = getattr(dataset, 'metainfo', {}).get('classes')
    if not classes:
        raise ValueError(f'{type(dataset).__name__} has no class names in its metainfo '
                         f"('classes'): the model needs them to build prompts")
    return classes


@HOOKS.register_module()
class ClassNamesHook(Hook):
    """Set the model's class names from the dataset of the loop about to run.

    Class names are data, not part of the model: training, validation and test may score
    different lists (zero-shot trains on seen classes and tests on unseen or all of them).
    """
    priority = 'VERY_HIGH'

    def _set(self, runner, dataloader):
        _unwrap(runner.model).set_class_names(_dataset_classes(dataloader))

    def before_train_epoch(self, runner):
        self._set(runner, runner.train_dataloader)

    def before_val_epoch(self, runner):
        self._set(runner, runner.val_dataloader)

    def after_val_epoch(self, runner, metrics=None):
        # back to the training classes for the next epoch's iterations
        # (``runner.train_loop`` would build the loop, so look at the private field)
        if isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            self._set(runner, runner.train_dataloader)

    def before_test_epoch(self, runner):
        self._set(runner, runner.test_dataloader)
