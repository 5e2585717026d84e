"""TRM-ML in 2 processes (gloo, CPU) on the same global batch as 1 process: the prototype
bank is filled the same way and stays identical on every process, and the parameters
train the same (the contrastive loss sees the global batch)."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

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
    model.train()
    trained = wrap(model) if wrap else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    x = _images(len(GT))[rows]
    samples = [s for i, s in enumerate(_samples(GT)) if i in rows]
    banks = []
    for step in range(STEPS):
        losses = trained(x, samples, mode='loss')
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        if step in (0, STEPS - 1):
            banks.append({n: getattr(model.prototype_bank, n).clone() for n in BANK})
    params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return dict(params=params, banks=banks)


def _worker(rank, world_size, init_file, out_file):
    import mlr_plugin  # noqa: F401  (registers the modules in the spawned process)
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world_size)
    from mmengine.model import MMDistributedDataParallel
    rows = list(range(rank, len(GT), world_size))  # interleaved, as DefaultSampler does
    result = _train(tiny_model(), rows, wrap=lambda m: MMDistributedDataParallel(
        m, device_ids=None, broadcast_buffers=False))
    torch.save(result, f'{out_file}.{rank}')
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_process_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp('trm_ddp')
    out_file = str(folder / 'result.pt')
    mp.spawn(_worker, args=(2, str(folder / 'init'), out_file), nprocs=2, join=True)
    return [torch.load(f'{out_file}.{r}', weights_only=True) for r in range(2)]


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
