"""What a checkpoint of a prompt classifier holds and how it loads: explicit rules.

**What is saved.** Every tensor that training changed, in this stage or an earlier one:
parameters with ``requires_grad``, persistent buffers of modules that own such
parameters (BatchNorm statistics of a trained layer), buffers of parameter-free modules
outside the backbone (e.g. a memory bank), and every entry a loaded checkpoint recorded
as trained (an MKT stage-2 model keeps the ViT blocks tuned in stage 1, although they
are frozen now). Frozen weights are not saved, so a DualCoOp checkpoint is a few MB.

**What is recorded** (``_extra_state`` of the model's state dict): the names of the
saved entries (``trained``) and a digest of each frozen entry (``frozen``: name ->
[digest, shape, dtype]), as UTF-8 JSON in a uint8 tensor. A tensor, because mmengine
treats every state-dict value as one (it broadcasts them at the start of a distributed
run), and plain data, so ``torch.load(weights_only=True)`` reads it. Read it with
:func:`read_record`. Runs save the same ``trained`` list in the checkpoint's ``meta``
(``AtomicCheckpointHook``).

**How it loads** (any loader: ``load_state_dict``, mmengine's ``load_checkpoint``,
``--resume``, ``load_from``), always strictly:

- an entry the model does not have, or of another shape: error, one line;
- a frozen weight of the model whose digest differs from the recorded one (another
  CLIP, another resolution): error, one line naming the first differing weight;
- frozen weights absent from the checkpoint keep the model's values;
- an entry the model trains now but the checkpoint lacks: error, unless the checkpoint
  comes from an *earlier stage* (none of what it trained trains now). Then the entry
  keeps its initial value and ``last_load_report['initialised']`` lists it, so tools
  that need a complete model (``tools/test.py``) can refuse;
- entries of *training-only* modules (class attribute ``checkpoint_training_only =
  True``: a memory bank, a contrastive projection; nothing prediction reads) may be
  absent: they keep the model's values, ``last_load_report['training_only_absent']``
  lists them and the model still counts as complete. :func:`inference_state_dict`
  writes such a checkpoint.
"""
import hashlib
import json
from typing import Dict, Iterator, List, Set, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..compat import CheckpointError

EXTRA_STATE = '_extra_state'
FORMAT_VERSION = 1
_FROZEN_ROOTS = ('backbone', )  # parameter-free modules here are frozen, not state


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint that does not fit the model it is loaded onto (one-line message).
    The tools print it as one line, like any :class:`CheckpointError`."""


def state_entries(model: nn.Module) -> Iterator[Tuple[str, torch.Tensor, bool]]:
    """(name, tensor, trains now) for every entry of the model's full state dict."""
    for mod_name, mod in model.named_modules():
        prefix = f'{mod_name}.' if mod_name else ''
        own_params = [(n, p) for n, p in mod._parameters.items() if p is not None]
        mod_trains = any(p.requires_grad for _, p in own_params)
        for name, param in own_params:
            yield prefix + name, param, param.requires_grad
        for name, buf in mod._buffers.items():
            if buf is None or name in mod._non_persistent_buffers_set:
                continue
            if own_params:
                trains = mod_trains
            else:
                trains = not mod_name.split('.')[0] in _FROZEN_ROOTS
            yield prefix + name, buf, trains


def saved_names(model: nn.Module) -> Set[str]:
    """Names a checkpoint of ``model`` holds: trained now or in an earlier stage."""
    earlier = getattr(model, '_trained_earlier', set())
    return {name for name, _, trains in state_entries(model) if trains or name in earlier}


def training_only_names(model: nn.Module) -> Set[str]:
    """State entries of modules marked ``checkpoint_training_only`` (and their
    children): saved for resuming, not needed to predict."""
    names = set()
    for mod_name, mod in model.named_modules():
        if getattr(mod, 'checkpoint_training_only', False):
            prefix = f'{mod_name}.' if mod_name else ''
            names.update(prefix + name for name, _, _ in state_entries(mod))
    return names


def inference_state_dict(model: nn.Module) -> dict:
    """The model's state dict without its training-only entries (e.g. TRM-ML's
    prototype bank and contrastive projection), its record saying so: a smaller
    checkpoint that tests and predicts exactly like the full one but cannot resume."""
    state = model.state_dict()
    drop = training_only_names(model)
    state = {k: v for k, v in state.items() if k not in drop}
    record = read_record(state[EXTRA_STATE])
    record['trained'] = [n for n in record['trained'] if n not in drop]
    state[EXTRA_STATE] = torch.frombuffer(bytearray(json.dumps(record).encode()),
                                          dtype=torch.uint8)
    return state


def _tensor_digest(tensor: torch.Tensor) -> str:
    """Hash of the exact bytes (device independent: hashed on the CPU)."""
    data = tensor.detach().to('cpu').contiguous().reshape(-1)
    return hashlib.blake2b(data.view(torch.uint8).numpy().data, digest_size=8).hexdigest()


def frozen_digests(model: nn.Module, exclude: Set[str]) -> Dict[str, list]:
    """name -> [digest, shape, dtype] of every entry not in ``exclude``.

    Cached per entry on the model and recomputed only when a tensor moved or changed in
    place (``data_ptr`` / ``_version``): hashing RN101's 120M frozen weights takes 0.5 s
    on 2 CPU cores, once.
    """
    cache = model.__dict__.setdefault('_digest_cache', {})
    digests = {}
    for name, tensor, _ in state_entries(model):
        if name in exclude:
            continue
        key = (tensor.data_ptr(), tensor._version, tensor.device.type, tensor.dtype)
        hit = cache.get(name)
        if hit is None or hit[0] != key:
            hit = cache[name] = (key, [_tensor_digest(tensor), list(tensor.shape),
                                       str(tensor.dtype).replace('torch.', '')])
        digests[name] = hit[1]
    return digests


def extra_state(model: nn.Module) -> torch.Tensor:
    """The record saved with the state dict: JSON bytes in a uint8 tensor."""
    trained = saved_names(model)
    record = dict(format=FORMAT_VERSION, trained=sorted(trained),
                  frozen=frozen_digests(model, trained))
    return torch.frombuffer(bytearray(json.dumps(record).encode()), dtype=torch.uint8)


def read_record(value) -> dict:
    """The record of a state dict (its ``_extra_state`` value) as a dict."""
    if torch.is_tensor(value) and value.dtype == torch.uint8 and value.dim() == 1:
        try:
            return json.loads(value.cpu().numpy().tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointMismatchError(
                f'checkpoint {EXTRA_STATE} is not a readable mlr_plugin record: '
                f'{error}') from None
    return value


def _short(names: List[str]) -> str:
    names = sorted(names)
    more = f' (+{len(names) - 3} more)' if len(names) > 3 else ''
    return ', '.join(names[:3]) + more


def _check_record(record) -> Tuple[Set[str], Dict[str, list]]:
    record = read_record(record)
    if not (isinstance(record, dict) and record.get('format') == FORMAT_VERSION
            and isinstance(record.get('trained'), list)
            and isinstance(record.get('frozen'), dict)):
        raise CheckpointMismatchError(
            f'checkpoint {EXTRA_STATE} is not an mlr_plugin record of format '
            f'{FORMAT_VERSION}: {str(record)[:80]}')
    return set(record['trained']), record['frozen']


def load_pre_hook(model: nn.Module, state_dict: dict, prefix: str, local_metadata,
                  strict, missing_keys, unexpected_keys, error_msgs) -> None:
    """Check a state dict against ``model`` and fill its frozen entries (see module doc).

    Registered on the classifier with ``_register_load_state_dict_pre_hook(...,
    with_module=True)``; it edits ``state_dict`` in place before any entry is copied.
    """
    own = {name: (tensor, trains) for name, tensor, trains in state_entries(model)}
    incoming = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    record = incoming.pop(EXTRA_STATE, None)
    if record is None:
        # a state dict saved before records existed: no digest check possible
        ckpt_trained, ckpt_frozen = set(incoming), None
        state_dict[prefix + EXTRA_STATE] = extra_state(model)
        print_log('loading a state dict without an mlr_plugin record: frozen weights '
                  'cannot be checked', logger='current', level=30)
    else:
        ckpt_trained, ckpt_frozen = _check_record(record)

    unexpected = [k for k in incoming if k not in own]
    if unexpected:
        raise CheckpointMismatchError(
            f'checkpoint entries {_short(unexpected)} do not exist in '
            f'{type(model).__name__}: it was saved from another model or method')
    for name, value in incoming.items():
        have = own[name][0]
        if tuple(value.shape) != tuple(have.shape):
            raise CheckpointMismatchError(
                f'checkpoint entry {name} has shape {tuple(value.shape)} but the '
                f'model has {tuple(have.shape)}: it was trained for another '
                'class list or model')
    lost = [n for n in ckpt_trained if n not in incoming and n in own]
    if lost:
        raise CheckpointMismatchError(
            f'checkpoint records {_short(lost)} as trained but does not hold '
            'them: the file is incomplete')

    trains_now = {n for n, (_, trains) in own.items() if trains}
    if ckpt_frozen is not None:
        _check_frozen(model, own, ckpt_trained | trains_now, ckpt_frozen)

    training_only = training_only_names(model)
    absent_training_only = sorted(training_only & (saved_names(model) - set(incoming)))
    absent_trained = sorted(n for n in saved_names(model) - set(incoming)
                            if n not in ckpt_trained and n not in training_only)
    earlier_stage = record is not None and not (ckpt_trained & trains_now)
    if absent_trained and not earlier_stage:
        raise CheckpointMismatchError(
            f'checkpoint lacks trained entries {_short(absent_trained)} of '
            'this model: it was saved from another model or method')
    if absent_trained:
        print_log(f'initialising from an earlier-stage checkpoint: {len(absent_trained)} '
                  f'entries it does not hold keep their initial values '
                  f'({_short(absent_trained)})', logger='current')

    if absent_training_only:
        print_log(f'the checkpoint holds no training-only state '
                  f'({_short(absent_training_only)}): fine for testing and inference, '
                  'a resumed training would start it afresh', logger='current')

    for name, (tensor, _) in own.items():
        if name not in incoming:
            state_dict[prefix + name] = tensor.detach()
    model.__dict__['last_load_report'] = dict(
        initialised=absent_trained, trained=sorted(ckpt_trained),
        training_only_absent=absent_training_only)
    model._trained_earlier = set(getattr(model, '_trained_earlier', set())) | (
        ckpt_trained & set(own))


def _check_frozen(model, own, not_frozen, ckpt_frozen) -> None:
    """The model's frozen entries must be the ones the checkpoint was trained on."""
    mine = frozen_digests(model, not_frozen)
    for name, (digest, shape, dtype) in mine.items():
        theirs = ckpt_frozen.get(name)
        if theirs is None:
            raise CheckpointMismatchError(
                f'frozen weight {name} of this model was not part of the model '
                'the checkpoint was trained on: load it onto that model')
        if theirs[0] != digest:
            detail = (f'shape {tuple(theirs[1])} -> {tuple(shape)}'
                      if list(theirs[1]) != list(shape) else
                      f'dtype {theirs[2]} -> {dtype}' if theirs[2] != dtype else
                      'same shape, other values')
            raise CheckpointMismatchError(
                f'frozen weight {name} differs from the one the checkpoint was '
                f'trained with ({detail}): load it onto the same CLIP weights '
                'and image size it was trained with')
    extra = sorted(set(ckpt_frozen) - set(own))
    if extra:
        raise CheckpointMismatchError(
            f'the checkpoint was trained on frozen weights {_short(extra)} '
            'that this model does not have: another backbone')


def require_complete(model: nn.Module, source: str) -> None:
    """Refuse a model that the last load left partly at its initial values (a checkpoint
    of an earlier training stage): testing or inferring with it would be wrong."""
    initialised = (model.__dict__.get('last_load_report') or {}).get('initialised')
    if initialised:
        raise CheckpointMismatchError(
            f'checkpoint {source} does not hold {_short(initialised)} of this model (it is '
            'from an earlier training stage): load a checkpoint of this config')
