"""The model the Runner trains: a CLIP backbone + a prompt learner + a method's head.

DualCoOp and DualCoOp++ are this classifier with their own prompt learner and head. A
method whose training step differs (a teacher, stages, a memory) subclasses it and
overrides :meth:`CLIPPromptClassifier.loss` (mmpretrain's ``ImageClassifier`` vs
``MoCoV3`` split).
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .. import checkpoint
from .. import feature_cache  # cached image features (docs/feature_cache.md)
from ..heads.base_head import gt_score_matrix
from .text_cache import TextFeatureCache, text_path_tensors


@MODELS.register_module()
class CLIPPromptClassifier(BaseModel):
    """Multi-label classifier scoring any list of class names with CLIP prompts.

    Args:
        backbone (dict): an ``OpenCLIPBackbone`` config.
        prompt_learner (dict): ``LearnablePrompts`` / ``HandcraftedPrompts`` config; it must
            provide the prompt names the head asks for (``head.prompt_names``).
        head (dict): the method's head (``DualCoOpHead``, ``DualCoOpPlusPlusHead``...); it
            owns the loss and the prediction rule (``thr`` / ``topk``).
        class_names (Sequence[str], optional): names to score before a dataset sets them
            (the ``ClassNamesHook`` sets them from each loop's dataset at run time).
        num_train_classes (int, optional): encode only this many classes per training step,
            always including every class with a known positive in the (global) batch.
            The choice depends only on ``class_sampling_seed``, the step and the global
            batch, so every process of a distributed run picks the same classes.
        class_sampling_seed (int): seed of that choice.
        data_preprocessor (dict, optional): defaults to the backbone's own mean/std
            (those its weights were trained with), RGB input in 0..255.

    Checkpoints: see :mod:`mlr_plugin.models.checkpoint` (what trains is saved, frozen
    weights are checked by digest, loading is strict).
    """

    def __init__(self,
                 backbone: dict,
                 prompt_learner: dict,
                 head: dict,
                 class_names: Optional[Sequence[str]] = None,
                 num_train_classes: Optional[int] = None,
                 class_sampling_seed: int = 0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        # built here (not by BaseModel) so it resolves in mmpretrain's registry outside a
        # Runner too, and defaults to the normalisation of these CLIP weights
        # (a ClsDataPreprocessor that also batches cached features: docs/feature_cache.md)
        self.data_preprocessor = MODELS.build(feature_cache.accept_features(
            self._preprocessor_cfg(data_preprocessor, self.backbone)))
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
        self.class_sampling_seed = int(class_sampling_seed)
        if num_train_classes is not None:
            # a step counter in the checkpoint: the class choice resumes exactly
            self.register_buffer('class_sampling_step', torch.zeros((), dtype=torch.long))
        self.class_names: Optional[List[str]] = (
            list(class_names) if class_names is not None else None)
        self._trained_earlier = set()
        self._register_state_dict_hook(_drop_untrained_entries)
        self._register_load_state_dict_pre_hook(checkpoint.load_pre_hook, with_module=True)
        self._text_cache = TextFeatureCache()
        self._register_load_state_dict_pre_hook(_clear_text_cache, with_module=True)

    @staticmethod
    def _preprocessor_cfg(cfg: Optional[dict], backbone) -> dict:
        cfg = dict(cfg or {})
        cfg.setdefault('type', 'ClsDataPreprocessor')
        if cfg['type'] == 'ClsDataPreprocessor':
            # the backbone's mean/std are for 0..1 images; the preprocessor sees 0..255
            cfg.setdefault('mean', [255 * m for m in backbone.image_mean])
            cfg.setdefault('std', [255 * s for s in backbone.image_std])
            cfg.setdefault('to_rgb', False)  # LoadImageCV2 already decodes to RGB
        return cfg

    # ------------------------------------------------------------------ checkpoints
    def get_extra_state(self) -> dict:
        return checkpoint.extra_state(self)

    def set_extra_state(self, state) -> None:
        pass  # read and checked by checkpoint.load_pre_hook before anything is copied

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

    def _text_trainable(self) -> bool:
        return any(t.requires_grad for t in text_path_tensors(self.prompt_learner,
                                                               self.backbone))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self._text_trainable():
            self._text_cache.clear()  # training changes the prompts
        return self

    # ------------------------------------------------------------------ forward
    def extract_feat(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The backbone's features (see ``OpenCLIPBackbone.forward``), tensors
        L2-normalised in fp32; ``grid`` passes through. ``inputs``: images, or a dict of
        cached tower outputs (``CachedFeatureDataset``), which skip the image tower."""
        if isinstance(inputs, dict):
            feats = feature_cache.cached_tower_outputs(self.backbone, inputs)
        else:
            feats = self.backbone(inputs)
        return {k: F.normalize(v.float(), dim=-1) if torch.is_tensor(v) else v
                for k, v in feats.items()}

    def encode_classes(self, class_indices: Optional[torch.Tensor] = None):
        """Text features for all (or the selected) classes, once per step, shared by the
        batch: ``{prompt_name: (C, D)}``, L2-normalised.

        Without gradients to compute (evaluation, or a text path with nothing
        trainable) they come from a cache that is never stale (text_cache.py): the text
        tower runs once per evaluation, and once per run for fixed prompts."""
        names = self._require_class_names()
        if not (torch.is_grad_enabled() and self._text_trainable()):
            tensors = text_path_tensors(self.prompt_learner, self.backbone)
            text = self._text_cache.get(names, self.backbone.device, tensors)
            if text is None:
                with torch.no_grad():
                    text = {k: v.float() for k, v in
                            self.prompt_learner(names, self.backbone).items()}
                self._text_cache.put(names, self.backbone.device, tensors, text)
            if class_indices is None:
                return dict(text)
            return {k: v[torch.as_tensor(class_indices, dtype=torch.long, device=v.device)]
                    for k, v in text.items()}
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

    def gt_matrix(self, data_samples: List[DataSample], device=None) -> torch.Tensor:
        """The batch's (B, C) ``gt_score`` matrix, checked against the class names."""
        names = self._require_class_names()
        gt = gt_score_matrix(data_samples, device=device)
        if gt.shape[1] != len(names):
            raise ValueError(f'gt_score has {gt.shape[1]} classes but the model scores '
                             f'{len(names)} class names')
        return gt

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        gt = self.gt_matrix(data_samples)
        class_indices = self.sample_train_classes(gt.to(feature_cache.input_device(inputs)))
        feats = self.extract_feat(inputs)
        return self.head.loss(feats, self.encode_classes(class_indices), data_samples,
                              class_indices=class_indices)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None) -> List[DataSample]:
        return self.head.predict(self.extract_feat(inputs), self.encode_classes(),
                                 data_samples)

    # ------------------------------------------------------------------ class sampling
    def sample_train_classes(self, gt: torch.Tensor) -> Optional[torch.Tensor]:
        """``num_train_classes`` classes for this step: every class with a known positive
        in the global batch, then random others (None: all classes)."""
        num_classes = gt.shape[1]
        if self.num_train_classes is None or self.num_train_classes >= num_classes:
            return None
        positive = (gt == 1).any(dim=0)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flags = positive.to(torch.int32)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)  # positives of the global batch
            positive = flags.bool()
        pos_idx = positive.nonzero().flatten()
        rest = (~positive).nonzero().flatten()
        budget = max(self.num_train_classes - len(pos_idx), 0)
        generator = torch.Generator().manual_seed(
            self.class_sampling_seed * 1_000_003 + int(self.class_sampling_step))
        self.class_sampling_step += 1
        order = torch.randperm(len(rest), generator=generator).to(rest.device)
        return torch.cat([pos_idx, rest[order[:budget]]]).sort().values


def _clear_text_cache(module, *args, **kwargs):
    module._text_cache.clear()


def _drop_untrained_entries(module, state_dict, prefix, local_metadata):
    keep = checkpoint.saved_names(module)
    for name, _, _ in checkpoint.state_entries(module):
        if name not in keep:
            state_dict.pop(prefix + name, None)
    return state_dict
