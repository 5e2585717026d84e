"""TRM-ML's training step (docs/methods.md, TRM-ML section): a multimodal prototype bank
that pseudo-labels unknown entries, and a multimodal contrastive loss.

The head (:class:`~mlr_plugin.models.heads.trm_ml.TRMMLHead`) scores and owns the
classification and distillation losses; this classifier adds what needs memory across
steps. Equations are numbered as in the paper.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..losses.reduction import world_size
from .clip_prompt import CLIPPromptClassifier

SOURCES = ('visual', 'text')


# ---------------------------------------------------------------------- distributed
def _gather_rows(tensor: torch.Tensor) -> List[torch.Tensor]:
    """Every process's ``tensor`` (any first dim, same other dims), without gradient,
    in rank order. One process: ``[tensor]``."""
    if world_size() == 1:
        return [tensor]
    tensor = tensor.contiguous()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    chunks = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded)
    return [c[:int(s.item())] for c, s in zip(chunks, sizes)]


def _gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenated ``tensor`` of every process (any first dim), in rank order, gradient
    flowing back to each process's own rows. Every process then computes the same
    global loss; after DDP's gradient averaging this gives exactly the one-process
    gradient (the all-gather backward sums the N identical upstream gradients of the
    local rows)."""
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather
    sizes = [int(n) for n in torch.cat(_gather_rows(
        torch.tensor([tensor.shape[0]], device=tensor.device)))]
    # the autograd all-gather needs equal shapes: pad, gather, cut
    pad = tensor.new_zeros((max(sizes) - tensor.shape[0], *tensor.shape[1:]))
    chunks = all_gather(torch.cat([tensor, pad]).contiguous())
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, sizes)])


def _sample_keys(data_samples: Sequence[DataSample], device) -> torch.Tensor:
    """(B,) keys that order the global batch the same way in any number of processes:
    the dataset index (``sample_idx``) when every sample has one, else the position in
    the process-major global batch."""
    keys = [s.metainfo.get('sample_idx') for s in data_samples]
    if all(k is not None for k in keys):
        return torch.as_tensor(keys, dtype=torch.long, device=device)
    rank = dist.get_rank() if world_size() > 1 else 0
    return torch.arange(len(data_samples), device=device) + rank * len(data_samples)


def _joint_width(backbone) -> Optional[int]:
    """D of a backbone config (from its open_clip model config) or module."""
    if isinstance(backbone, nn.Module):
        return backbone.embed_dim
    import open_clip

    from ..clip.pretrained import check_model_name
    config = open_clip.get_model_config(check_model_name(backbone['model_name'])) or {}
    return config.get('embed_dim')


def _with_defaults(cfg: Optional[dict], **values) -> Optional[dict]:
    """A copy of a module config with ``values`` filled in where unset (None)."""
    if not isinstance(cfg, dict):
        return cfg
    cfg = dict(cfg)
    for key, value in values.items():
        if cfg.get(key) is None and value is not None:
            cfg[key] = value
    return cfg


# ---------------------------------------------------------------------- the bank
@MODELS.register_module()
class MultimodalPrototypeBank(nn.Module):
    """Visual memory bank and adaptive class thresholds of TRM-ML (eq. 7-12).

    State (buffers, in every training checkpoint, resumed bit-exactly):

    - ``queue`` (C, l, D): per-class FIFO queues of visual prototypes; ``queue_ptr``
      (C,) the next slot to overwrite, ``queue_len`` (C,) the filled slots.
    - ``thresholds`` (2, 2, C): ``theta`` for [visual, text] x [positive, negative];
      ``threshold_seen`` (2, 2, C): whether a threshold has been observed yet (its first
      observation sets it, later ones update it by EMA **[ours]**: the paper gives no
      initial value).

    Training-only: prediction never reads it, and checkpoints without it load for
    testing / inference (``checkpoint_training_only``).

    Args:
        num_classes: C.
        embed_dim: D.
        queue_length: ``l`` **[ours]** (64).
        topk: ``k`` locations pushed per known positive **[ours]** (4).
        momentum: ``eta`` of the threshold EMA **[ours]** (0.9).
    """

    checkpoint_training_only = True

    def __init__(self, num_classes: int, embed_dim: int, queue_length: int = 64,
                 topk: int = 4, momentum: float = 0.9):
        super().__init__()
        for name, value in dict(num_classes=num_classes, embed_dim=embed_dim,
                                queue_length=queue_length, topk=topk).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'MultimodalPrototypeBank: {name} must be a positive '
                                 f'int, got {value!r}')
        if not 0 <= momentum < 1:
            raise ValueError(f'MultimodalPrototypeBank: momentum must be in [0, 1), got '
                             f'{momentum}')
        self.topk = topk
        self.momentum = float(momentum)
        self.register_buffer('queue', torch.zeros(num_classes, queue_length, embed_dim))
        self.register_buffer('queue_ptr', torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer('queue_len', torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer('thresholds', torch.zeros(len(SOURCES), 2, num_classes))
        self.register_buffer('threshold_seen',
                             torch.zeros(len(SOURCES), 2, num_classes, dtype=torch.bool))

    @property
    def num_classes(self) -> int:
        return self.queue.shape[0]

    @property
    def queue_length(self) -> int:
        return self.queue.shape[1]

    # ------------------------------------------------------------ eq. 7
    @staticmethod
    def topk_prototypes(region_map: torch.Tensor, tokens: torch.Tensor,
                        image_idx: torch.Tensor, class_idx: torch.Tensor,
                        k: int) -> torch.Tensor:
        """Eq. 7: ``V_c = TopK(r_c) . f``: the features at the ``k`` highest energies
        of each (image, class) pair. Returns (P, k, D), in order of the pairs."""
        energies = region_map[image_idx, class_idx]                  # (P, L)
        top = energies.topk(min(k, energies.shape[-1]), dim=-1).indices
        return tokens[image_idx[:, None], top]                       # (P, k, D)

    @torch.no_grad()
    def push(self, feats: torch.Tensor, classes: torch.Tensor) -> None:
        """FIFO: append (N, D) features to the queues of their (N,) classes, in order;
        the oldest entries of a full queue are overwritten."""
        feats = feats.to(self.queue)
        for c in classes.unique().tolist():
            added = int((classes == c).sum())
            rows = feats[classes == c][-self.queue_length:]  # earlier ones are overwritten
            # entry m of the added ones goes to slot (ptr + m) mod l
            first = self.queue_ptr[c] + added - len(rows)
            slots = (first + torch.arange(len(rows), device=feats.device)) % self.queue_length
            self.queue[c, slots] = rows
            self.queue_ptr[c] = (self.queue_ptr[c] + added) % self.queue_length
            self.queue_len[c] = min(int(self.queue_len[c]) + added, self.queue_length)

    def filled(self):
        """(M, D) stored prototypes and their (M,) classes."""
        mask = (torch.arange(self.queue_length, device=self.queue.device)[None]
                < self.queue_len[:, None])
        return self.queue[mask], mask.nonzero()[:, 0]

    # ------------------------------------------------------------ eq. 8-10
    def similarities(self, region_feat: torch.Tensor,
                     text: torch.Tensor) -> torch.Tensor:
        """(2, N, C) mean prototype similarities of (N, C, D) region features:
        [visual] eq. 8-10: the mean over the filled slots ``j`` of
        ``cos(f^r_{i,c}, v_{c,j})`` (0 where a queue is empty); [text] ``cos(f^r_{i,c},
        g_c)`` against the single text prototype ``g_c`` ((C, D) ``text``)."""
        feat = F.normalize(region_feat.float(), dim=-1)
        bank = F.normalize(self.queue, dim=-1)
        cos = torch.einsum('ncd,cld->ncl', feat, bank)
        filled = (torch.arange(self.queue_length, device=cos.device)[None]
                  < self.queue_len[:, None]).to(cos.dtype)            # (C, l)
        visual = (cos * filled).sum(-1) / filled.sum(-1).clamp(min=1)
        textual = (feat * F.normalize(text.float(), dim=-1)[None]).sum(-1)
        return torch.stack([visual, textual])

    # ------------------------------------------------------------ eq. 9, 11
    @torch.no_grad()
    def update_thresholds(self, sims: torch.Tensor, gt: torch.Tensor) -> None:
        """Eq. 9 + 11: ``theta <- eta theta + (1 - eta) s_bar`` per source and class,
        ``s_bar`` the mean similarity over the batch's known positives (negatives) of
        the class. Classes without such labels keep their threshold; the visual
        thresholds move only for classes whose queue holds prototypes."""
        for sign, label in enumerate((1, 0)):
            mask = (gt == label).to(sims.dtype)                       # (N, C)
            count = mask.sum(0)                                       # (C,)
            mean = (sims * mask[None]).sum(1) / count.clamp(min=1)    # (2, C)
            observed = (count > 0)[None].repeat(len(SOURCES), 1)
            observed[0] &= self.queue_len > 0
            seen = self.threshold_seen[:, sign]
            ema = self.momentum * self.thresholds[:, sign] + (1 - self.momentum) * mean
            new = torch.where(seen, ema, mean)
            self.thresholds[:, sign] = torch.where(observed, new, self.thresholds[:, sign])
            self.threshold_seen[:, sign] |= observed

    # ------------------------------------------------------------ eq. 10, 12
    @torch.no_grad()
    def votes(self, sims: torch.Tensor) -> torch.Tensor:
        """Eq. 10 per source: +1 where ``s_bar^u >= theta+``, -1 where
        ``s_bar^u <= theta-``, 0 otherwise (also 0 where both hold, possible only when
        ``theta+ <= theta-``, and where a threshold is not seen yet or the class's queue
        is empty). Returns (2, N, C) int8.

        The paper's eq. 10 writes each case with two conditions separated by a comma
        ("1 if s >= theta+, s <= theta-"), which read as a conjunction would label
        nothing as positive whenever ``theta+ > theta-``; **[ours]**: the reading above,
        as the text describes it (compare to the two thresholds)."""
        pos = (sims >= self.thresholds[:, 0, None]) & self.threshold_seen[:, 0, None]
        neg = (sims <= self.thresholds[:, 1, None]) & self.threshold_seen[:, 1, None]
        has_bank = self.queue_len > 0
        pos[0] &= has_bank
        neg[0] &= has_bank
        return pos.to(torch.int8) * (~neg) - neg.to(torch.int8) * (~pos)

    @staticmethod
    def agree(votes: torch.Tensor, gt: torch.Tensor,
              sources: Sequence[str] = SOURCES) -> torch.Tensor:
        """Eq. 12: the pseudo-label of an *unknown* entry is positive (negative) only
        where every used source votes positive (negative); known entries are returned
        unchanged. ``votes`` (2, N, C), ``gt`` (N, C) -> (N, C) labels in {1, 0, -1}."""
        used = votes[[SOURCES.index(s) for s in sources]]
        positive = (used == 1).all(0)
        negative = (used == -1).all(0)
        pseudo = torch.full_like(gt, -1)
        pseudo[positive] = 1
        pseudo[negative] = 0
        return torch.where(gt == -1, pseudo, gt)


# ---------------------------------------------------------------------- classifier
@MODELS.register_module()
class TRMMLClassifier(CLIPPromptClassifier):
    """CLIP prompt classifier with TRM-ML's training step.

    One step (all on the *global* batch, so every process keeps the same bank):

    1. head forward: ``p^r``, ``p^q``, regions ``R``, region features ``f^r``;
    2. prototype similarities of ``f^r`` with the bank *before* this batch enters it
       (eq. 8-10), thresholds updated from the known labels (eq. 9, 11);
    3. pseudo-labels for unknown entries where the sources agree (eq. 10, 12);
       optionally the rest counted as negative (``unknown_as_negative``, the single
       positive "assume negative" setting);
    4. losses: head (eq. 14: ASL on known + pseudo labels, KD) + contrastive (eq. 13);
    5. the top-k features of every known positive are pushed into the bank (eq. 7).

    Args:
        head: :class:`TRMMLHead` config; its ``embed_dim`` and ``num_classes`` default to
            the backbone's joint width and ``prompt_learner.num_classes`` (so do the
            bank's and the contrastive loss's ``embed_dim``).
        prototype_bank: :class:`MultimodalPrototypeBank` config (None: no bank).
        pseudo_label_sources: prototypes whose votes must agree (eq. 12):
            ``('visual', 'text')`` (the paper), ``('visual',)`` / ``('text',)`` (Table 6)
            or ``()`` (MMCP off).
        contrastive_loss: :class:`MultimodalContrastiveLoss` config (None: MMCL off).
        unknown_as_negative: count unknown entries left without a pseudo-label as
            negatives (single positive labels).
        Others: see :class:`CLIPPromptClassifier`. ``num_train_classes`` is not
        supported (the head's queries and the bank are per class).

    After each training step ``last_pseudo_labels`` holds the (B, C) targets the loss
    used for this process's images (known labels + pseudo-labels).
    """

    def __init__(self, backbone: dict, prompt_learner: dict, head: dict,
                 prototype_bank: Optional[dict] = None,
                 pseudo_label_sources: Sequence[str] = SOURCES,
                 contrastive_loss: Optional[dict] = None,
                 unknown_as_negative: bool = False,
                 class_names: Optional[Sequence[str]] = None,
                 num_train_classes: Optional[int] = None, **kwargs):
        if num_train_classes is not None:
            raise ValueError('TRMMLClassifier: num_train_classes is not supported (the '
                             'category queries and the prototype bank are per class)')
        # the joint width and the class count are the backbone's and the prompts': the
        # configs need not repeat them (an explicit value must agree)
        width = _joint_width(backbone)
        num = prompt_learner.get('num_classes') if isinstance(prompt_learner, dict) else None
        head = _with_defaults(head, embed_dim=width, num_classes=num)
        prototype_bank = _with_defaults(prototype_bank, embed_dim=width, num_classes=num)
        contrastive_loss = _with_defaults(contrastive_loss, embed_dim=width)
        super().__init__(backbone, prompt_learner, head, class_names=class_names, **kwargs)
        sources = tuple(pseudo_label_sources)
        bad = [s for s in sources if s not in SOURCES]
        if bad or len(set(sources)) != len(sources):
            raise ValueError(f'pseudo_label_sources must be distinct names from {SOURCES}, '
                             f'got {pseudo_label_sources!r}')
        if sources and prototype_bank is None:
            raise ValueError(f'pseudo_label_sources={sources} needs a prototype_bank '
                             '(pass pseudo_label_sources=() to switch MMCP off)')
        self.pseudo_label_sources = sources
        self.unknown_as_negative = bool(unknown_as_negative)
        self.prototype_bank = MODELS.build(prototype_bank) if prototype_bank else None
        self.contrastive_loss = MODELS.build(contrastive_loss) if contrastive_loss else None
        self._check_widths()
        num = getattr(self.head, 'num_classes', None)
        if self.prototype_bank is not None and self.prototype_bank.num_classes != num:
            raise ValueError(f'prototype_bank has {self.prototype_bank.num_classes} classes '
                             f'but the head has {num}')
        if self.class_names is not None:
            self._maybe_init_queries()
        self.last_pseudo_labels: Optional[torch.Tensor] = None

    def _check_widths(self) -> None:
        """The head's queries and the bank live in the backbone's joint space."""
        width = self.backbone.embed_dim
        decoder = getattr(self.head, 'decoder', None)
        dims = dict(head=decoder.queries.shape[1] if decoder is not None else width,
                    prototype_bank=(self.prototype_bank.queue.shape[2]
                                    if self.prototype_bank is not None else width))
        for name, dim in dims.items():
            if dim != width:
                raise ValueError(f'{name}.embed_dim is {dim} but backbone '
                                 f'{self.backbone.model_name} gives {width}-d features')

    def set_class_names(self, class_names) -> None:
        """As the base class; the first names a model with text-initialised queries gets
        (here or from the config) initialise them. The decoder's persistent
        ``text_initialised`` flag keeps a resumed or loaded model's trained queries."""
        super().set_class_names(class_names)
        self._maybe_init_queries()

    def _maybe_init_queries(self) -> None:
        decoder = getattr(self.head, 'decoder', None)
        if (getattr(self.head, 'query_init', 'random') == 'text'
                and not bool(decoder.text_initialised)):
            self._init_queries_from_names()

    @torch.no_grad()
    def _init_queries_from_names(self) -> None:
        """Category queries from the text features of "a photo of a {name}."."""
        names = self.class_names
        if names is None:
            raise ValueError("head.query_init='text' needs class_names in the model config")
        text = self.backbone.encode_text([f'a photo of a {n}.' for n in names])
        self.head.decoder.init_queries(F.normalize(text.float(), dim=-1))

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        gt = self.gt_matrix(data_samples, device=inputs.device)
        return self.loss_from_features(self.extract_feat(inputs), gt,
                                       _sample_keys(data_samples, inputs.device))

    def loss_from_features(self, feats: Dict[str, torch.Tensor], gt: torch.Tensor,
                           keys: torch.Tensor) -> dict:
        """The training step after the frozen image tower: ``feats`` as
        :meth:`extract_feat` returns them, (B, C) labels ``gt`` and (B,) ``keys`` that
        order the global batch (dataset indices)."""
        text = self.encode_classes()
        out = self.head(feats, text)
        bank = self.prototype_bank
        region = out['region_feat']

        target = gt
        if bank is not None:
            with torch.no_grad():
                sims = bank.similarities(region.detach(), text['pos'])   # (2, B, C)
                # global batch, in a process-independent order (bit-identical updates)
                all_keys = torch.cat(_gather_rows(keys))
                order = torch.argsort(all_keys, stable=True)
                all_sims = torch.cat(_gather_rows(sims.transpose(0, 1)))[order]
                all_gt = torch.cat(_gather_rows(gt))[order]
                bank.update_thresholds(all_sims.transpose(0, 1), all_gt)
                if self.pseudo_label_sources:
                    target = bank.agree(bank.votes(sims), gt, self.pseudo_label_sources)
        if self.unknown_as_negative:
            target = torch.where(target == -1, torch.zeros_like(target), target)
        self.last_pseudo_labels = target.detach()

        losses = self.head.compute_loss(out, target)
        if self.contrastive_loss is not None:
            bank_feats = bank_class = None
            if bank is not None:
                bank_feats, bank_class = bank.filled()
                bank_feats = bank_feats.clone()  # the push below edits the queue in place
            losses['loss_nce'] = self.contrastive_loss(
                text['pos'], _gather_with_grad(region), torch.cat(_gather_rows(target)),
                bank_feats, bank_class)
        if bank is not None:
            self._push_known_positives(bank, out, gt, keys)
        return losses

    @torch.no_grad()
    def _push_known_positives(self, bank: MultimodalPrototypeBank,
                              out: Dict[str, torch.Tensor], gt: torch.Tensor,
                              keys: torch.Tensor) -> None:
        """Eq. 7 on the global batch, pushed in (sample key, class) order."""
        image_idx, class_idx = (gt == 1).nonzero(as_tuple=True)
        protos = bank.topk_prototypes(out['region_map'].detach(), out['tokens'].detach(),
                                      image_idx, class_idx, bank.topk)
        entry_keys = torch.cat(_gather_rows(keys[image_idx]))
        entry_class = torch.cat(_gather_rows(class_idx))
        protos = torch.cat(_gather_rows(protos))
        # sort by (sample key, class); (image, class) pairs are unique
        order = torch.argsort(entry_keys * bank.num_classes + entry_class, stable=True)
        k = protos.shape[1]
        bank.push(protos[order].reshape(-1, protos.shape[-1]),
                  entry_class[order].repeat_interleave(k))
