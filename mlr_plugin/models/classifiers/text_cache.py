"""The classifier's text-feature cache: the text tower runs once per evaluation (not once
per batch), and once per run for fixed prompts (docs/scaling.md).

An entry is keyed by everything the features depend on, checked on every lookup, so it
can never be stale:

- the class names (their tuple) and the device;
- every tensor the text path reads (prompt-learner parameters and buffers, the
  backbone's text-tower parameters), by identity, storage address and autograd version
  counter. Any in-place update bumps the version: optimizer steps (plain, foreach and
  fused), ``load_state_dict`` (``copy_``), ``.data`` swaps (new storage), new contexts
  (new tensors).

The classifier also drops the entry when it enters train mode with a trainable text path
and before ``load_state_dict``, so nothing is kept that a later lookup would reject.
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

# The attributes that make up an open_clip CLIP's text tower (CLIP keeps them on the
# model itself, CustomTextCLIP under ``.text``).
_TEXT_ATTRS = ('token_embedding', 'positional_embedding', 'transformer', 'ln_final',
               'text_projection', 'attn_mask')


def text_path_tensors(prompt_learner: nn.Module, backbone: nn.Module) -> List[torch.Tensor]:
    """Every tensor the text features are computed from."""
    tensors = list(prompt_learner.parameters()) + list(prompt_learner.buffers())
    text = getattr(backbone, '_text', None)
    if text is None:
        return tensors + list(backbone.parameters())
    for name in _TEXT_ATTRS:
        value = getattr(text, name, None)
        if isinstance(value, nn.Module):
            tensors += list(value.parameters()) + list(value.buffers())
        elif torch.is_tensor(value):
            tensors.append(value)
    return tensors


def _signature(tensors: Iterable[torch.Tensor]) -> Tuple:
    return tuple((t.data_ptr(), t._version, tuple(t.shape), t.dtype) for t in tensors)


class TextFeatureCache:
    """One cached ``{prompt name: (C, D)}`` for the current class list (the lookup
    compares the key; a new class list replaces the entry)."""

    def __init__(self):
        self._entry = None
        self.encodes = 0  # how often the features were (re)computed

    def clear(self) -> None:
        self._entry = None

    def get(self, names: Sequence[str], device: torch.device,
            tensors: Sequence[torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
        entry = self._entry
        if entry is None:
            return None
        key_names, key_device, key_tensors, key_signature, features = entry
        if (key_device != device or len(key_tensors) != len(tensors)
                or any(a is not b for a, b in zip(key_tensors, tensors))
                or key_signature != _signature(tensors) or key_names != tuple(names)):
            return None
        return features

    def put(self, names: Sequence[str], device: torch.device,
            tensors: Sequence[torch.Tensor], features: Dict[str, torch.Tensor]) -> None:
        # the tensors themselves are kept (not only their ids), so an id or address in
        # the key can never be reused by another tensor while the entry lives
        self._entry = (tuple(names), device, list(tensors), _signature(tensors),
                       {k: v.detach() for k, v in features.items()})
        self.encodes += 1

    def __deepcopy__(self, memo):
        return TextFeatureCache()  # a copy (EMA, teacher) starts empty

    def __getstate__(self):
        return {'_entry': None, 'encodes': 0}  # never pickled into checkpoints / workers
