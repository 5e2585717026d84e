"""MKT (docs/methods.md section 5): open-vocabulary multi-label recognition with
multi-modal knowledge transfer, in two stages of the same model.

- Stage 1 (``train_image_tower=True``): the last k ViT blocks, ``ln_post`` and ``proj``
  fine-tune with the ranking loss on the two-stream scores plus an L1 distillation of
  the class-token embedding towards the frozen original tower (the backbone's
  ``teacher_global_feat``); the label embeddings come from a fixed template, encoded
  once.
- Stage 2 (``train_image_tower=False``): the image tower is frozen (the tuned blocks
  are kept: the checkpoint records them as trained in an earlier stage) and only the
  template's context vectors train, with the ranking loss.

Layer-wise lr decay: mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the
model for ``get_layer_depth(param_name)``, so it works on open_clip's module names
through :meth:`MKTClassifier.get_layer_depth`; no extra constructor is needed.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..heads.base_head import build_loss
from .clip_prompt import CLIPPromptClassifier

_BLOCK_PREFIX = 'backbone.clip.visual.transformer.resblocks.'
_STEM = ('backbone.clip.visual.conv1', 'backbone.clip.visual.class_embedding',
         'backbone.clip.visual.positional_embedding', 'backbone.clip.visual.ln_pre')


@MODELS.register_module()
class MKTClassifier(CLIPPromptClassifier):
    """CLIP ViT + template prompts + :class:`MKTTwoStreamHead`, MKT's two stages.

    Image features reach the head un-normalised (MKT scores the projected tokens as
    they are; the head normalises the scores across classes).

    Args:
        backbone: ``OpenCLIPBackbone`` with ``trainable_vision_blocks`` = k and
            ``with_teacher=True`` in both stages (stage 2 keeps the teacher so that its
            checkpoint record matches stage 1's; the tail is frozen here instead).
        prompt_learner: ``TemplateContextPrompts`` (``learnable`` False in stage 1,
            True in stage 2).
        head: ``MKTTwoStreamHead``.
        train_image_tower: stage 1 (True) or stage 2 (False: every backbone weight is
            frozen, the prompt contexts train).
        distill_loss: the distillation loss of stage 1 (``EmbeddingL1Loss``), reported
            as ``loss_kd``; None to switch it off (stage 2).
        skip_images_without_positive: the distillation averages only over images with
            a known positive, as MKT's training loop drops the others from the batch
            (set the ranking loss's option of the same name alike).
        Other arguments: see :class:`CLIPPromptClassifier`.
    """

    def __init__(self,
                 backbone: dict,
                 prompt_learner: dict,
                 head: dict,
                 train_image_tower: bool = True,
                 distill_loss: Optional[Union[dict, nn.Module]] = dict(type='EmbeddingL1Loss'),
                 skip_images_without_positive: bool = True,
                 **kwargs):
        super().__init__(backbone=backbone, prompt_learner=prompt_learner, head=head,
                         **kwargs)
        self.train_image_tower = bool(train_image_tower)
        self.skip_images_without_positive = bool(skip_images_without_positive)
        if getattr(self.backbone, 'is_resnet', True) or self.backbone.trainable_vision_blocks < 1:
            raise ValueError('MKTClassifier needs a ViT backbone with trainable_vision_blocks '
                             '>= 1 (the blocks stage 1 tunes; stage 2 freezes them again)')
        if distill_loss is not None:
            if not self.train_image_tower:
                raise ValueError('distill_loss is for stage 1 (train_image_tower=True): a '
                                 'frozen image tower has nothing to distil')
            if not self.backbone.with_teacher:
                raise ValueError('distill_loss needs the backbone with_teacher=True')
            self.distill_loss = build_loss(distill_loss)
        else:
            self.distill_loss = None
        if not self.train_image_tower:
            self.backbone.requires_grad_(False)

    # ------------------------------------------------------------------ features
    def extract_feat(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The backbone's features in fp32, NOT normalised (MKT's scores and its
        distillation use the raw projected embeddings)."""
        return {k: v.float() if torch.is_tensor(v) else v
                for k, v in self.backbone(inputs).items()}

    # ------------------------------------------------------------------ training
    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        gt = self.gt_matrix(data_samples, device=inputs.device)
        class_indices = self.sample_train_classes(gt)
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and self.train_image_tower):
            feats = self.extract_feat(inputs)
        losses = self.head.loss(feats, self.encode_classes(class_indices), data_samples,
                                class_indices=class_indices)
        if self.distill_loss is not None:
            keep = (gt == 1).any(dim=1) if self.skip_images_without_positive else None
            losses['loss_kd'] = self.distill_loss(feats['global_feat'],
                                                  feats['teacher_global_feat'], keep)
        return losses

    # ------------------------------------------------------------------ lr decay
    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """(layer id, max id) for mmpretrain's ``LearningRateDecayOptimWrapperConstructor``
        (scale ``decay ** (max_id - layer_id - 1)``), MKT's rule (BEiT's): the patch
        stem is layer 0, block ``i`` of ``N`` is layer ``i + 1`` (lr scale
        ``decay ** (N - i)``), everything after the blocks (``ln_post``, ``proj``,
        prompt contexts) is layer ``N + 1`` (scale 1)."""
        num_blocks = len(self.backbone.clip.visual.transformer.resblocks)
        max_id = num_blocks + 2
        name = param_name[len(prefix):] if prefix and param_name.startswith(prefix) else \
            param_name
        if name.startswith(_BLOCK_PREFIX):
            return int(name[len(_BLOCK_PREFIX):].split('.')[0]) + 1, max_id
        if name.startswith(_STEM):
            return 0, max_id
        return num_blocks + 1, max_id

    def train(self, mode: bool = True):
        super().train(mode)
        if not getattr(self, 'train_image_tower', True):
            self.backbone.eval()  # stage 2: MKT runs its image encoder in eval mode
        return self
