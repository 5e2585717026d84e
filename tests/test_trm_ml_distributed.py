"""TRM-ML in 2 processes (gloo, CPU) on the same global batch as 1 process: the prototype
bank is filled the same way and stays identical on every process, and the parameters
train the same (the contrastive loss sees the global batch)."""
import pytest
import torch

from ddp_helpers import run_in_two_processes, sgd_train
from test_trm_ml import _images, _samples, tiny_model

# class 0 is positive in every image: its queue (length 3) overflows in every step, so
# what stays in it depends on the push order across processes. 5 images: the processes
# hold 3 and 2 of them (uneven shares, as a last batch can be).
GT = torch.tensor([[1., 0., -1., 0., 1.],
                   [1., 1., -1., -1., 0.],
                   [1., 0., 1., 0., -1.],
                   [1., 0., 0., 1., 1.],
                   [1., -1., 1., 0., 0.]])

STEPS = 3
BANK = ('queue', 'queue_ptr', 'queue_len', 'thresholds', 'threshold_seen')


def _train(model, rows, wrap=None):
    """STEPS SGD steps on rows ``rows`` of the global batch (dataset indices kept, so the
    bank's push order is the global one); the bank after the first and the last step."""
    samples = [s for i, s in enumerate(_samples(GT)) if i in rows]
    banks = []

    def keep_bank(step):
        if step in (0, STEPS - 1):
            banks.append({n: getattr(model.prototype_bank, n).clone() for n in BANK})
    params = sgd_train(model, _images(len(GT))[rows], samples, STEPS, lr=0.05, wrap=wrap,
                       after_step=keep_bank)
    return dict(params=params, banks=banks)


def _job(rows, wrap):
    return _train(tiny_model(), rows, wrap)


_job.num_rows = len(GT)


@pytest.fixture(scope='module')
def two_process_results(tmp_path_factory):
    return run_in_two_processes(tmp_path_factory.mktemp('trm_ddp'), _job)


def test_two_processes_fill_the_same_bank_and_train_like_one(two_process_results):
    single = _train(tiny_model(), list(range(len(GT))))
    rank0, rank1 = two_process_results
    for step in range(2):
        for name in BANK:  # identical on every process, bit for bit
            assert torch.equal(rank0['banks'][step][name], rank1['banks'][step][name])
    assert int(single['banks'][0]['queue_len'].sum()) > 0
    for name in BANK:
        # after one step the bank holds what one process on the global batch put there
        torch.testing.assert_close(rank0['banks'][0][name], single['banks'][0][name],
                                   rtol=0, atol=1e-6, msg=name)
        torch.testing.assert_close(rank0['banks'][1][name], single['banks'][1][name],
                                   rtol=1e-4, atol=1e-5, msg=name)
    start = {n: p.detach() for n, p in tiny_model().named_parameters() if p.requires_grad}
    for name, value in single['params'].items():
        assert not torch.allclose(value, start[name]), name  # it trained
        torch.testing.assert_close(rank0['params'][name], value, rtol=1e-4, atol=1e-5,
                                   msg=name)
