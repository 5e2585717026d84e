"""Knowledge distillation between two per-class logit vectors (Hinton et al.), as
TRM-ML's eq. 6 uses it: ``L_KD = KL(p^r || p^q) = sum_c p^r_c log(p^r_c / p^q_c)``.
"""
import torch
import torch.nn.functional as F

from ..utils import at_least_fp32
from .reduction import global_batch_mean


def kl_distillation(teacher_logit: torch.Tensor, student_logit: torch.Tensor,
                    detach_teacher: bool = True) -> torch.Tensor:
    """``KL(softmax_c(teacher) || softmax_c(student))`` per image, mean over the global
    batch.

    The distributions are over classes (the sum in eq. 6 runs over the C classes).
    The teacher is detached by default: in TRM-ML the teacher is the region path
    ``p^r`` (CLIP features masked by the learned regions, the score used at inference)
    and the student the query path ``p^q``; distillation is meant to move the decoder
    through the student towards CLIP's prior, not to pull the inference score towards
    the noisier query score. The region path still learns from its own ASL term, and its
    region map ``R`` improves through the decoder weights it shares with the student.

    Args:
        teacher_logit, student_logit: (B, C) logits.

    Returns:
        Scalar loss.
    """
    if teacher_logit.shape != student_logit.shape or teacher_logit.dim() != 2:
        raise ValueError(f'teacher and student logits must both be (B, C), got '
                         f'{tuple(teacher_logit.shape)} and {tuple(student_logit.shape)}')
    teacher = at_least_fp32(teacher_logit)
    if detach_teacher:
        teacher = teacher.detach()
    log_p_teacher = F.log_softmax(teacher, dim=-1)
    log_p_student = F.log_softmax(at_least_fp32(student_logit), dim=-1)
    per_image = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    return global_batch_mean(per_image.sum(), per_image.new_tensor(per_image.shape[0]))
