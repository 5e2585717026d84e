"""What every prompt learner shares: prompt-name and class-index checks and a small
per-class-list cache."""
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

_CACHE_SIZE = 8  # distinct class-name lists kept (train, val, zero-shot splits)


def check_prompt_names(prompt_names: Sequence[str]) -> Tuple[str, ...]:
    names = (prompt_names, ) if isinstance(prompt_names, str) else tuple(prompt_names)
    if not names or len(set(names)) != len(names) or not all(
            isinstance(n, str) and n.isidentifier() for n in names):
        raise ValueError(f'prompt_names must be distinct identifiers, got {prompt_names!r}')
    return names


class BasePromptLearner(nn.Module):
    """Base of the prompt learners: ``forward(class_names, backbone, class_indices=None)``
    returns ``{prompt name: (C', D)}`` L2-normalised text features.

    Args:
        prompt_names: the names of the prompts this learner provides.
    """

    def __init__(self, prompt_names: Sequence[str]):
        super().__init__()
        self.prompt_names = check_prompt_names(prompt_names)
        self._cache = OrderedDict()

    @staticmethod
    def check_class_names(class_names: Sequence[str]) -> Tuple[str, ...]:
        names = tuple(class_names)
        if not names:
            raise ValueError('class_names is empty')
        return names

    @staticmethod
    def class_index(class_indices, num_classes: int, device) -> torch.Tensor:
        """``class_indices`` as a 1-D LongTensor on ``device``, checked to be in range."""
        index = torch.as_tensor(class_indices, dtype=torch.long, device=device)
        if index.dim() != 1 or (index.numel() and (int(index.min()) < 0
                                                  or int(index.max()) >= num_classes)):
            raise ValueError(f'class_indices must be a 1-D LongTensor in [0, {num_classes})')
        return index

    def cache_get(self, key, device: torch.device) -> Optional[object]:
        """The cached value for ``key`` if it was made on ``device``."""
        entry = self._cache.get(key)
        if entry is None or entry[0] != device:
            return None
        self._cache.move_to_end(key)
        return entry[1]

    def cache_put(self, key, device: torch.device, value) -> None:
        self._cache[key] = (device, value)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
