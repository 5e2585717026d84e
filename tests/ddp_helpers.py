"""What the "N processes train like 1" tests share: a few SGD steps on a slice of one
global batch, and a job run in 2 gloo processes on CPU with DDP wrapped as
tools/dist_train.sh wraps it (no device_ids, no buffer broadcast)."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def trainable_params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def sgd_train(model, inputs, samples, steps, lr, wrap=None, after_step=None):
    """``steps`` SGD steps (momentum 0.9) of ``model``'s loss on one batch, through
    ``wrap(model)`` (DDP) when given; ``after_step(step)`` runs after each update.
    Returns the trained parameters."""
    model.train()
    trained = wrap(model) if wrap else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    for step in range(steps):
        losses = trained(inputs, samples, mode='loss')
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        if after_step is not None:
            after_step(step)
    return trainable_params(model)


def _worker(rank, world_size, init_file, out_file, job):
    import mlr_plugin  # noqa: F401  (registers the modules in the spawned process)
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world_size)
    from mmengine.model import MMDistributedDataParallel

    def wrap(model):
        return MMDistributedDataParallel(model, device_ids=None, broadcast_buffers=False)
    # interleaved shares of the global batch, as DefaultSampler deals them
    rows = list(range(rank, job.num_rows, world_size))
    torch.save(job(rows, wrap), f'{out_file}.{rank}')
    dist.destroy_process_group()


def run_in_two_processes(folder, job):
    """``job(rows, wrap)`` in 2 gloo processes, ``rows`` each process's rows of the
    global batch (``job.num_rows`` of them); returns the two results (plain data).
    ``job`` must be a module-level function (the processes import it by name)."""
    out_file = str(folder / 'result.pt')
    mp.spawn(_worker, args=(2, str(folder / 'init'), out_file, job), nprocs=2, join=True)
    return [torch.load(f'{out_file}.{rank}', weights_only=True) for rank in range(2)]
