"""PairSoftmaxASL / PartialSigmoidASL against literal per-entry loops and hand numbers."""
import math

import pytest
import torch
from mmpretrain.registry import MODELS

from mlr_plugin.models.losses import PairSoftmaxASL, PartialSigmoidASL


def _loop_asl(probs, target, gamma_pos=1.0, gamma_neg=2.0, clip=0.05, eps=1e-8):
    """docs/methods.md 0.3 written out entry by entry; returns (sum, number of known entries)."""
    total, known = 0.0, 0
    for p, y in zip(probs.flatten().tolist(), target.flatten().tolist()):
        if y == 1:
            total += -((1 - p) ** gamma_pos) * math.log(max(p, eps))
            known += 1
        elif y == 0:
            p_neg = min(1 - p + clip, 1.0)
            total += -((1 - p_neg) ** gamma_neg) * math.log(max(p_neg, eps))
            known += 1
    return total, known


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _random_case(seed, shape=(4, 6)):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    neg = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    target = torch.randint(-1, 2, shape, generator=gen)
    return pos, neg, target


@pytest.mark.parametrize('reduction', ['sum', 'mean'])
@pytest.mark.parametrize('loss_weight', [1.0, 0.02])
def test_pair_asl_matches_loop(reduction, loss_weight):
    pos, neg, target = _random_case(0)
    assert (target == -1).any() and (target == 0).any() and (target == 1).any()
    kwargs = dict(gamma_pos=1.0, gamma_neg=3.0, clip=0.1, eps=1e-8)
    loss = PairSoftmaxASL(reduction=reduction, loss_weight=loss_weight, **kwargs)(
        pos, neg, target)
    probs = torch.tensor([[_sigmoid(a - b) for a, b in zip(r1, r2)]
                          for r1, r2 in zip(pos.tolist(), neg.tolist())])
    total, known = _loop_asl(probs, target, **kwargs)
    expected = total if reduction == 'sum' else total / known
    assert loss.item() == pytest.approx(loss_weight * expected, rel=1e-5)


def test_pair_asl_none_reduction_is_per_entry():
    pos, neg, target = _random_case(1)
    per_entry = PairSoftmaxASL(reduction='none')(pos, neg, target)
    assert per_entry.shape == target.shape
    assert (per_entry[target == -1] == 0).all()
    total = PairSoftmaxASL(reduction='sum')(pos, neg, target)
    assert per_entry.sum().item() == pytest.approx(total.item(), rel=1e-6)


def test_pair_asl_hand_worked_two_entries():
    # Entry A: y=1, l+=1, l-=0 -> p+ = sigmoid(1) = 0.7310586;
    #   loss = (1 - 0.7310586)^1 * -ln(0.7310586) = 0.2689414 * 0.3132617 = 0.0842497
    # Entry B: y=0, l+=l-=0 -> p+ = 0.5, p- = 0.5, p-_c = 0.55;
    #   loss = (1 - 0.55)^2 * -ln(0.55) = 0.2025 * 0.5978370 = 0.1210620
    pos = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[0.0, 0.0]])
    target = torch.tensor([[1, 0]])
    loss_sum = PairSoftmaxASL(reduction='sum')(pos, neg, target)
    assert loss_sum.item() == pytest.approx(0.0842497 + 0.1210620, abs=1e-6)
    loss_mean = PairSoftmaxASL(reduction='mean', loss_weight=2.0)(pos, neg, target)
    assert loss_mean.item() == pytest.approx(0.0842497 + 0.1210620, abs=1e-6)


def _analytic_grad(pos, neg, target, gamma_pos, gamma_neg, clip):
    """d loss / d l+ with the focusing weight held constant (sum reduction)."""
    grad = torch.zeros_like(pos)
    for idx in range(pos.numel()):
        p = _sigmoid(pos.view(-1)[idx].item() - neg.view(-1)[idx].item())
        y = target.view(-1)[idx].item()
        if y == 1:
            # L = -w log p, d log(sigmoid(z))/dz = 1 - p
            grad.view(-1)[idx] = -((1 - p) ** gamma_pos) * (1 - p)
        elif y == 0:
            q = 1 - p + clip
            if q < 1:  # past the clip the loss is 0 and flat
                # L = -w log q, dq/dz = -p (1 - p)
                grad.view(-1)[idx] = ((1 - q) ** gamma_neg) * p * (1 - p) / q
    return grad


def test_pair_asl_gradient_treats_focusing_weights_as_constants():
    pos, neg, target = _random_case(2)
    pos.requires_grad_(True)
    neg.requires_grad_(True)
    kwargs = dict(gamma_pos=2.0, gamma_neg=3.0, clip=0.05)
    PairSoftmaxASL(reduction='sum', **kwargs)(pos, neg, target).backward()
    expected = _analytic_grad(pos.detach(), neg.detach(), target, **kwargs)
    torch.testing.assert_close(pos.grad, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(neg.grad, -expected, rtol=1e-9, atol=1e-12)
    # Unknown entries: exactly zero gradient.
    assert (pos.grad[target == -1] == 0).all() and (neg.grad[target == -1] == 0).all()
    assert (pos.grad[target == 1] != 0).all()


def test_unknown_entries_change_nothing_even_if_extreme():
    pos, neg, target = _random_case(3)
    loss_ref = PairSoftmaxASL()(pos, neg, target)
    pos2 = pos.clone()
    pos2[target == -1] = -1e4  # would be a huge loss if it counted
    pos2.requires_grad_(True)
    loss = PairSoftmaxASL()(pos2, neg, target)
    loss.backward()
    assert loss.item() == pytest.approx(loss_ref.item())
    assert torch.isfinite(pos2.grad).all()
    assert (pos2.grad[target == -1] == 0).all()


def test_mean_with_no_known_entries_is_zero():
    pos = torch.randn(2, 3, requires_grad=True)
    neg = torch.randn(2, 3)
    target = torch.full((2, 3), -1)
    loss = PairSoftmaxASL(reduction='mean')(pos, neg, target)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert (pos.grad == 0).all()
    assert PartialSigmoidASL(reduction='mean')(pos, target).item() == 0.0


@pytest.mark.parametrize('reduction', ['sum', 'mean'])
def test_partial_sigmoid_asl_matches_loop(reduction):
    logit, _, target = _random_case(4)
    kwargs = dict(gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=1e-8)
    loss = PartialSigmoidASL(reduction=reduction, loss_weight=0.5, **kwargs)(logit, target)
    probs = torch.tensor([[_sigmoid(v) for v in row] for row in logit.tolist()])
    total, known = _loop_asl(probs, target, **kwargs)
    expected = total if reduction == 'sum' else total / known
    assert loss.item() == pytest.approx(0.5 * expected, rel=1e-5)


def test_partial_sigmoid_asl_gradient():
    logit, _, target = _random_case(5)
    logit.requires_grad_(True)
    kwargs = dict(gamma_pos=1.0, gamma_neg=2.0, clip=0.05)
    PartialSigmoidASL(**kwargs)(logit, target).backward()
    expected = _analytic_grad(logit.detach(), torch.zeros_like(logit), target, **kwargs)
    torch.testing.assert_close(logit.grad, expected, rtol=1e-9, atol=1e-12)


def test_registered_and_bad_input():
    assert MODELS.get('PairSoftmaxASL') is PairSoftmaxASL
    assert MODELS.get('PartialSigmoidASL') is PartialSigmoidASL
    loss = MODELS.build(dict(type='PairSoftmaxASL', loss_weight=0.03))
    assert loss.loss_weight == 0.03
    with pytest.raises(ValueError, match='reduction'):
        PairSoftmaxASL(reduction='avg')
    with pytest.raises(ValueError, match='clip'):
        PartialSigmoidASL(clip=1.5)
    with pytest.raises(ValueError, match='neg_logit'):
        PairSoftmaxASL()(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3))
