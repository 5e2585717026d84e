"""The model the Runner trains: frozen CLIP + prompt learner + a method's head.

Every method in mlr_plugin is this classifier with a different prompt learner and head
(and, for methods that need them, extra trainable modules living inside the head).
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

# CLIP's normalisation, in the 0-255 range the data preprocessor works in.
CLIP_MEAN = (122.7709383, 116.7460125, 104.09373615)
CLIP_STD = (68.5005327, 66.6321579, 70.32316305)


@MODELS.register_module()
class CLIPPromptClassifier(BaseModel):
    """Multi-label classifier scoring any list of class names with CLIP prompts.

    Args:
        backbone (dict): an ``OpenCLIPBackbone`` config (frozen towers).
        prompt_learner (dict): ``LearnablePrompts`` / ``HandcraftedPrompts`` config; it must
            provide the prompt names the head asks for (``head.prompt_names``).
        head (dict): the method's head (``DualCoOpHead``, ``DualCoOpPlusPlusHead``...).
        class_names (Sequence[str], optional): names to score before a dataset sets them
            (the ``ClassNamesHook`` sets them from each loop's dataset at run time).
        num_train_classes (int, optional): encode only this many classes per training step,
            always including every class with a known positive in the batch (METHODS 0.2).
        data_preprocessor (dict, optional): defaults to CLIP's mean/std, RGB input.

    Checkpoints hold only what trains (parameters with ``requires_grad``, plus buffers of
    trainable modules) so a DualCoOp checkpoint is a few MB; frozen CLIP weights missing
    from a checkpoint keep their current (pretrained) values on load.
    """

    def __init__(self,
                 backbone: dict,
                 prompt_learner: dict,
                 head: dict,
                 class_names: Optional[Sequence[str]] = None,
                 num_train_classes: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ClsDataPreprocessor', mean=CLIP_MEAN,
                                     std=CLIP_STD, to_rgb=False)
        if isinstance(data_preprocessor, dict):
            # built here so it resolves in mmpretrain's registry outside a Runner too
            data_preprocessor = MODELS.build(
                dict(type='ClsDataPreprocessor', **data_preprocessor)
                if 'type' not in data_preprocessor else data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.prompt_learner = MODELS.build(prompt_learner)
        self.head = MODELS.build(head)
        if hasattr(self.prompt_learner, 'init_context'):
            self.prompt_learner.init_context(self.backbone)
        missing = set(self.head.prompt_names) - set(self.prompt_learner.prompt_names)
        if missing:
            raise ValueError(
                f'head {type(self.head).__name__} needs prompts {sorted(missing)} but the '
                f'prompt learner provides {list(self.prompt_learner.prompt_names)}')
        if num_train_classes is not None and num_train_classes < 1:
            raise ValueError(f'num_train_classes must be >= 1, got {num_train_classes}')
        self.num_train_classes = num_train_classes
        self.class_names: Optional[List[str]] = (
            list(class_names) if class_names is not None else None)
        self._register_state_dict_hook(_drop_frozen_entries)
        self._register_load_state_dict_pre_hook(_fill_frozen_entries, with_module=True)

    # ------------------------------------------------------------------ class names
    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Score these classes from now on (zero-shot: any list of names)."""
        names = [str(n) for n in class_names]
        if not names:
            raise ValueError('set_class_names got an empty list of class names')
        expected = getattr(self.prompt_learner, 'num_classes', None)
        if getattr(self.prompt_learner, 'class_specific', False) and len(names) != expected:
            raise ValueError(
                f'class-specific contexts were built for {expected} classes but got '
                f'{len(names)} class names: use shared contexts (class_specific=False) to '
                'score other class lists')
        self.class_names = names

    def _require_class_names(self) -> List[str]:
        if self.class_names is None:
            raise RuntimeError(
                'CLIPPromptClassifier has no class names: pass class_names=... or call '
                'set_class_names() (the ClassNamesHook does this from the dataset metainfo)')
        return self.class_names

    # ------------------------------------------------------------------ forward
    def extract_feat(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Image features, L2-normalised: ``dense`` (B, L, D), ``global_feat`` (B, D)."""
        feats = self.backbone(inputs)
        return {k: F.normalize(v.float(), dim=-1) for k, v in feats.items()}

    def encode_classes(self, class_indices: Optional[torch.Tensor] = None):
        """Text features for all (or the selected) classes, once per step, shared by the
        batch: ``{prompt_name: (C, D)}``, L2-normalised."""
        names = self._require_class_names()
        # prompt learners take ALL names and pick the rows themselves (class-specific
        # contexts are indexed by class)
        text = self.prompt_learner(names, self.backbone, class_indices=class_indices)
        return {k: v.float() for k, v in text.items()}

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.head(self.extract_feat(inputs), self.encode_classes())
        raise RuntimeError(f'Invalid mode "{mode}" (expected loss, predict or tensor)')

    def _sample_train_classes(self, gt: torch.Tensor) -> Optional[torch.Tensor]:
        """Pick ``num_train_classes`` classes, every class with a known positive first."""
        num_classes = gt.shape[1]
        if self.num_train_classes is None or self.num_train_classes >= num_classes:
            return None
        positive = (gt == 1).any(dim=0)
        pos_idx = positive.nonzero().flatten()
        rest = (~positive).nonzero().flatten()
        budget = max(self.num_train_classes - len(pos_idx), 0)
        rest = rest[torch.randperm(len(rest), device=rest.device)[:budget]]
        return torch.cat([pos_idx, rest]).sort().values

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        gt = torch.stack([s.gt_score for s in data_samples]).to(inputs.device)
        names = self._require_class_names()
        if gt.shape[1] != len(names):
            raise ValueError(f'gt_score has {gt.shape[1]} classes but the model scores '
                             f'{len(names)} class names')
        class_indices = self._sample_train_classes(gt)
        if class_indices is not None:
            gt = gt[:, class_indices]
        feats = self.extract_feat(inputs)
        outputs = self.head(feats, self.encode_classes(class_indices))
        return self.head.loss(outputs, gt)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None) -> List[DataSample]:
        outputs = self.head(self.extract_feat(inputs), self.encode_classes())
        scores = self.head.predict_scores(outputs).float()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score)
            sample.set_pred_label((score > 0.5).nonzero().flatten())
        return data_samples


def _state_entries(module: torch.nn.Module):
    """(name, tensor, trainable) for every entry of a full state dict.

    Trainable: a parameter with ``requires_grad``, or a persistent buffer of a module
    that owns such a parameter (BatchNorm statistics of a trained layer). Buffers of
    parameter-free modules outside the backbone (e.g. a TRM memory bank) also count.
    """
    for mod_name, mod in module.named_modules():
        prefix = f'{mod_name}.' if mod_name else ''
        own_params = list(mod._parameters.items())
        mod_trains = any(p is not None and p.requires_grad for _, p in own_params)
        for name, param in own_params:
            if param is not None:
                yield prefix + name, param, param.requires_grad
        for name, buf in mod._buffers.items():
            if buf is None or name in mod._non_persistent_buffers_set:
                continue
            trains = mod_trains if own_params else not mod_name.startswith('backbone')
            yield prefix + name, buf, trains


def _drop_frozen_entries(module, state_dict, prefix, local_metadata):
    for name, _, trainable in _state_entries(module):
        if not trainable:
            state_dict.pop(prefix + name, None)
    return state_dict


def _fill_frozen_entries(module, state_dict, prefix, local_metadata, strict,
                         missing_keys, unexpected_keys, error_msgs):
    # Frozen CLIP weights are not in our checkpoints: keep the pretrained ones in place.
    for name, tensor, trainable in _state_entries(module):
        if not trainable and prefix + name not in state_dict:
            state_dict[prefix + name] = tensor.detach()
