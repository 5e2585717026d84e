"""What every prompt head shares: input checks, ``loss`` and ``predict`` (mmpretrain's
``MultiLabelClsHead`` habit: the head owns its loss, its scores and its threshold).

A head scores classes from image features and per-class text features:

- ``feats``: ``dense`` (B, h*w, D) patch tokens in row-major order, ``grid`` (h, w),
  ``global_feat`` (B, D), and optionally ``prefix_tokens`` (B, P, D) (pooled tokens a
  backbone puts before the grid, e.g. the ResNet's spatial-mean token) and
  ``teacher_global_feat`` (B, D). Every tensor is L2-normalised.
- ``text``: ``{prompt name: (C, D)}`` L2-normalised, one row per scored class.

Subclasses set ``prompt_names`` and implement ``forward(feats, text) -> outputs``,
``predict_scores(outputs)`` and ``compute_loss(outputs, gt_score)``.
"""
from typing import Dict, Iterator, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .aggregation import dense_text_similarity

Feats = Dict[str, torch.Tensor]
Text = Dict[str, torch.Tensor]


def build_loss(loss: Union[dict, nn.Module]) -> nn.Module:
    if isinstance(loss, dict):
        loss = MODELS.build(loss)
    if not isinstance(loss, nn.Module):
        raise ValueError(f'loss must be a config dict or nn.Module, got {type(loss)}')
    return loss


def all_tokens(feats: Feats) -> torch.Tensor:
    """Prefix tokens (if any) then the grid: every location a head may pool over."""
    prefix = feats.get('prefix_tokens')
    dense = feats['dense']
    return dense if prefix is None else torch.cat([prefix.to(dense.dtype), dense], dim=1)


def gt_score_matrix(data_samples: Sequence[DataSample],
                    class_indices: Optional[torch.Tensor] = None,
                    device=None) -> torch.Tensor:
    """(B, C') labels in {1, 0, -1} of the samples, restricted to ``class_indices``."""
    gt = torch.stack([torch.as_tensor(s.gt_score) for s in data_samples]).float()
    if device is not None:
        gt = gt.to(device)
    if class_indices is not None:
        gt = gt[:, torch.as_tensor(class_indices, device=gt.device)]
    return gt


class BasePromptHead(BaseModule):
    """Base of the prompt heads: loss, prediction (``thr`` or ``topk``) and input checks.

    Args:
        loss: config (or module) of the head's loss.
        thr: a class is predicted when its score is above ``thr`` (default 0.5 when
            ``topk`` is not set).
        topk: predict the ``topk`` best classes per image instead (ties go to the lower
            class index).
        class_chunk_size: score at most this many classes at a time (None: all at
            once). The (B, C, L) maps of one chunk are the largest temporaries, so peak
            memory grows with the chunk, not with C (Open Images: 7,586 classes).
            Outputs are the same as unchunked (docs/scaling.md).
        init_cfg: mmengine init config.
    """

    prompt_names: tuple = ()

    def __init__(self, loss: Union[dict, nn.Module], thr: Optional[float] = None,
                 topk: Optional[int] = None, class_chunk_size: Optional[int] = 512,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if class_chunk_size is not None and (isinstance(class_chunk_size, bool) or
                                             not isinstance(class_chunk_size, int) or
                                             class_chunk_size < 1):
            raise ValueError(f'class_chunk_size must be a positive int or None, got '
                             f'{class_chunk_size!r}')
        self.class_chunk_size = class_chunk_size
        self.loss_module = build_loss(loss)
        if thr is not None and topk is not None:
            raise ValueError(f'give thr or topk, not both (got thr={thr}, topk={topk})')
        if topk is not None and (not isinstance(topk, int) or topk < 1):
            raise ValueError(f'topk must be a positive int, got {topk!r}')
        self.thr = 0.5 if thr is None and topk is None else thr
        self.topk = topk

    # ------------------------------------------------------------ subclass API
    def predict_scores(self, outputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, C) scores from ``forward``'s outputs."""
        raise NotImplementedError

    def compute_loss(self, outputs: Dict[str, torch.Tensor],
                     gt_score: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Losses (keys ``loss_*``) of ``forward``'s outputs against (B, C) labels."""
        raise NotImplementedError

    def score_outputs(self, feats: Feats, text: Text) -> Dict[str, torch.Tensor]:
        """What :meth:`predict` needs from ``forward``; heads whose forward also returns
        (B, C, L) maps override this to skip them (bounded memory at 1000s of classes)."""
        return self(feats, text)

    # ------------------------------------------------------------ training / test
    def loss(self, feats: Feats, text: Text, data_samples: Sequence[DataSample],
             class_indices: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Losses of one step. ``class_indices``: the classes the step encoded (the
        columns of ``text``), None for all of them."""
        gt = gt_score_matrix(data_samples, class_indices, feats['dense'].device)
        num_text = next(iter(text.values())).shape[0]
        if gt.shape[1] != num_text:
            raise ValueError(f'gt_score has {gt.shape[1]} classes but {num_text} classes '
                             'were encoded')
        return self.compute_loss(self(feats, text), gt)

    def predict(self, feats: Feats, text: Text,
                data_samples: Optional[List[DataSample]] = None) -> List[DataSample]:
        """Scores and predicted labels in ``DataSample``s (new ones when None)."""
        return self.samples_from_outputs(self.score_outputs(feats, text), data_samples)

    def samples_from_outputs(self, outputs: Dict[str, torch.Tensor],
                             data_samples: Optional[List[DataSample]] = None
                             ) -> List[DataSample]:
        """:meth:`predict` after ``forward``: ``pred_score`` / ``pred_label`` per image."""
        scores = self.predict_scores(outputs).float()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score)
            sample.set_pred_label(self.predicted_labels(score))
        return data_samples

    def predicted_labels(self, score: torch.Tensor) -> torch.Tensor:
        """Class indices predicted for one image's (C,) scores."""
        if self.topk is not None:
            # stable sort: equal scores keep class order, so ties go to the lower index
            order = torch.sort(score, descending=True, stable=True).indices
            return order[:self.topk]
        return (score > self.thr).nonzero().flatten()

    # ------------------------------------------------------------ checks
    def check_inputs(self, feats: Feats, text: Text) -> torch.Tensor:
        """Validate the inputs and return ``feats['dense']`` (B, L, D)."""
        if 'dense' not in feats:
            raise ValueError(f'feats needs key "dense" (B, L, D), got keys {sorted(feats)}')
        dense = feats['dense']
        if dense.dim() != 3:
            raise ValueError(f'feats["dense"] must be (B, L, D), got {tuple(dense.shape)}')
        num_classes = None
        for name in self.prompt_names:
            if name not in text:
                raise ValueError(f'{type(self).__name__} needs text prompt "{name}", got '
                                 f'{sorted(text)}')
            feat = text[name]
            if feat.dim() != 2 or feat.shape[1] != dense.shape[2]:
                raise ValueError(f'text["{name}"] must be (C, {dense.shape[2]}), got '
                                 f'{tuple(feat.shape)}')
            if num_classes is not None and feat.shape[0] != num_classes:
                raise ValueError(f'text["{name}"] has {feat.shape[0]} classes, other '
                                 f'prompts have {num_classes}')
            num_classes = feat.shape[0]
        return dense

    def prompt_similarities(self, feats: Feats, text: Text) -> Dict[str, torch.Tensor]:
        """Check the inputs, then the (B, C, L) cosine of every pooled token (prefix
        tokens, then the grid) with each of the head's prompts, in fp32."""
        self.check_inputs(feats, text)
        tokens = all_tokens(feats)
        return {name: dense_text_similarity(tokens, text[name]) for name in self.prompt_names}

    # ------------------------------------------------------------ class chunks
    def class_chunks(self, num_classes: int) -> List[slice]:
        """Consecutive class ranges of at most ``class_chunk_size`` classes."""
        step = num_classes if self.class_chunk_size is None else self.class_chunk_size
        return [slice(start, min(start + step, num_classes))
                for start in range(0, num_classes, max(step, 1))]

    def chunked_similarities(self, feats: Feats, text: Text,
                             names: Optional[Sequence[str]] = None
                             ) -> Iterator[Dict[str, torch.Tensor]]:
        """Check the inputs, then yield :meth:`prompt_similarities` one class chunk at a
        time: ``{name: (B, C_chunk, L)}`` for the prompts ``names`` (default: all the
        head's prompts). Each chunk's maps can be freed before the next is made."""
        self.check_inputs(feats, text)
        tokens = all_tokens(feats)
        names = self.prompt_names if names is None else tuple(names)
        for chunk in self.class_chunks(next(iter(text.values())).shape[0]):
            yield {name: dense_text_similarity(tokens, text[name][chunk]) for name in names}

    @staticmethod
    def cat_class_chunks(outputs: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """Join per-chunk outputs along the class dimension (dim 1)."""
        if len(outputs) == 1:
            return outputs[0]
        return {key: torch.cat([out[key] for out in outputs], dim=1) for key in outputs[0]}

    def extra_repr(self) -> str:
        return f'thr={self.thr}, topk={self.topk}, class_chunk_size={self.class_chunk_size}'


class BasePairLogitHead(BasePromptHead):
    """Base for heads scoring each class with a (positive, negative) logit pair.

    ``forward`` returns at least ``pos_logit`` and ``neg_logit`` (B, C). Scores are
    ``p+ = sigmoid(l+ - l-)`` ("positive beats negative" at 0.5, no tuned threshold);
    the loss is called as ``loss(l+, l-, gt_score)`` and reported as ``loss_asl``.
    """

    def __init__(self, loss: Union[dict, nn.Module] = dict(type='PairSoftmaxASL'),
                 thr: Optional[float] = None, topk: Optional[int] = None,
                 class_chunk_size: Optional[int] = 512, init_cfg=None):
        super().__init__(loss=loss, thr=thr, topk=topk, class_chunk_size=class_chunk_size,
                         init_cfg=init_cfg)

    def predict_scores(self, outputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, C) scores in [0, 1]: ``p+ = sigmoid(l+ - l-)``; > 0.5 means positive."""
        return torch.sigmoid(outputs['pos_logit'] - outputs['neg_logit'])

    def compute_loss(self, outputs: Dict[str, torch.Tensor],
                     gt_score: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Pair loss against (B, C) labels in {1, 0, -1} (-1 = unknown, ignored)."""
        return dict(loss_asl=self.loss_module(outputs['pos_logit'], outputs['neg_logit'],
                                              gt_score))


class BaseSingleLogitHead(BasePromptHead):
    """Base for heads scoring each class with one logit (TRM-ML, semantic decoupling,
    MKT).

    ``forward`` returns at least ``logit`` (B, C). Scores are ``sigmoid(logit)`` with
    ``score_activation='sigmoid'`` (threshold 0.5), or the logits themselves with
    ``'none'`` (rank-only scores such as MKT's: predict with ``topk``). The loss is
    called as ``loss(logit, gt_score)`` and reported as ``loss_name``.
    """

    def __init__(self, loss: Union[dict, nn.Module] = dict(type='PartialSigmoidASL'),
                 score_activation: str = 'sigmoid', loss_name: str = 'loss_asl',
                 thr: Optional[float] = None, topk: Optional[int] = None,
                 class_chunk_size: Optional[int] = 512, init_cfg=None):
        super().__init__(loss=loss, thr=thr, topk=topk, class_chunk_size=class_chunk_size,
                         init_cfg=init_cfg)
        if score_activation not in ('sigmoid', 'none'):
            raise ValueError(f"score_activation must be 'sigmoid' or 'none', got "
                             f'{score_activation!r}')
        if not loss_name.startswith('loss_'):
            raise ValueError(f"loss_name must start with 'loss_', got {loss_name!r}")
        self.score_activation = score_activation
        self.loss_name = loss_name

    def predict_scores(self, outputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        logit = outputs['logit']
        return torch.sigmoid(logit) if self.score_activation == 'sigmoid' else logit

    def compute_loss(self, outputs: Dict[str, torch.Tensor],
                     gt_score: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {self.loss_name: self.loss_module(outputs['logit'], gt_score)}
