"""Speed and memory of a config's model on random inputs (CPU or GPU).

    python tools/benchmark.py configs/dualcoop/coco_p50.py --batch-size 128 32
    python tools/benchmark.py configs/demo/dualcoop_p10.py --device cpu --iters 5

Reports, per batch size, in one run:
  - frozen image tower forward throughput (images/s): the floor of everything else;
  - train step throughput (forward + backward + optimizer step) and its ratio to the tower;
  - inference throughput (predict) and its ratio to the tower;
  - peak memory of that row (GPU: torch.cuda.max_memory_allocated after a reset; CPU: the
    process's peak RSS while the row runs: Linux's high-water mark is reset before each row
    and freed heap memory is handed back first, so one row's peak is not carried into the
    next; without /proc, a process-wide max RSS).
On CUDA the steps run under bf16 autocast (as tools/train.py does with --amp auto).
With --data, also the data pipeline throughput (images/s) of the training dataset.
"""
import argparse
import ctypes
import gc
import os.path as osp
import resource
import sys
import threading
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark an mlr_plugin model')
    parser.add_argument('config')
    parser.add_argument('--batch-size', type=int, nargs='+', default=[32])
    parser.add_argument('--num-classes', type=int, default=None,
                        help='number of class names to score (default: the prompt '
                        "learner's num_classes, else 80)")
    parser.add_argument('--iters', type=int, default=20, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--device', default=None, help='cuda or cpu (default: cuda if any)')
    parser.add_argument('--no-amp', action='store_true', help='fp32 on GPU')
    parser.add_argument('--data', action='store_true',
                        help='also time the training data pipeline (needs the dataset)')
    parser.add_argument('--data-workers', type=int, default=None)
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def _timed(fn, iters, warmup, device):
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _rss_kb(field):
    """A memory field of /proc/self/status in kB (VmRSS, VmHWM); None without /proc."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class _RowPeak:
    """Peak memory (MB) of the code run inside one ``with`` block.

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``. CPU on Linux: the
    RSS high-water mark, reset on entry (``/proc/self/clear_refs`` = 5) after collecting
    garbage and trimming the C heap, so memory the previous row freed does not count; if
    the reset is refused, a thread samples the RSS every millisecond instead. Elsewhere:
    the process max RSS (``getrusage``), which never goes down.
    """

    def __init__(self, device):
        self.device = device
        self.mb = None

    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        gc.collect()
        try:
            ctypes.CDLL('libc.so.6').malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self._mode = 'rusage'
        if _rss_kb('VmRSS') is not None:
            try:
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
                self._mode = 'hwm'
            except OSError:
                self._mode = 'sample'
                self._sampled, self._stop = _rss_kb('VmRSS'), threading.Event()
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._sampled = max(self._sampled, _rss_kb('VmRSS') or 0)

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._mode == 'hwm':
            self.mb = _rss_kb('VmHWM') / 1024
        elif self._mode == 'sample':
            self._stop.set()
            self._thread.join()
            self.mb = max(self._sampled, _rss_kb('VmRSS') or 0) / 1024
        else:
            self.mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return False


def benchmark_model(model, batch_sizes, num_classes, iters, warmup, device, amp):
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample

    model.to(device)
    model.set_class_names([f'class {i}' for i in range(num_classes)])
    size = model.backbone.image_size
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=1e-3,
                                                           momentum=0.9)))
    autocast = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if amp else \
        (lambda: torch.autocast(device.type, enabled=False))
    rows = []
    for bs in batch_sizes:
        inputs = torch.randn(bs, 3, size, size, device=device)
        gen = torch.Generator().manual_seed(0)
        gt = torch.randint(-1, 2, (bs, num_classes), generator=gen).float().to(device)
        samples = [DataSample().set_gt_score(g) for g in gt]

        def tower():
            with torch.no_grad(), autocast():
                model.backbone(inputs)

        def train_step():
            model.train()
            with autocast():
                losses = model.loss(inputs, samples)
            loss = sum(v for k, v in losses.items() if k.startswith('loss'))
            optim.update_params(loss)

        def infer():
            model.eval()
            with autocast():
                model.predict(inputs)

        with _RowPeak(device) as peak:
            t_tower = _timed(tower, iters, warmup, device)
            t_train = _timed(train_step, iters, warmup, device)
            t_infer = _timed(infer, iters, warmup, device)
        rows.append(dict(batch=bs, tower=bs / t_tower, train=bs / t_train,
                         infer=bs / t_infer, train_ratio=t_tower / t_train,
                         infer_ratio=t_tower / t_infer, mem=peak.mb))
        del inputs, gt, samples
    return rows


def benchmark_data(cfg, iters, workers):
    from mmengine.runner import Runner
    loader_cfg = cfg.train_dataloader.copy()
    if workers is not None:
        loader_cfg['num_workers'] = workers
        loader_cfg['persistent_workers'] = workers > 0
    loader = Runner.build_dataloader(loader_cfg)
    it = iter(loader)
    next(it)  # workers start-up
    start, count = time.perf_counter(), 0
    for _ in range(iters):
        batch = next(it)
        count += len(batch['inputs'])
    return count / (time.perf_counter() - start), loader_cfg['num_workers']


def main(argv=None):
    args = parse_args(argv)
    from mmpretrain.registry import MODELS

    from mlr_plugin.engine.launch import load_config

    cfg = load_config(args.config, args.cfg_options)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    amp = device.type == 'cuda' and not args.no_amp
    model = MODELS.build(cfg.model)
    num_classes = args.num_classes or cfg.model.prompt_learner.get('num_classes') or 80
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'config: {args.config}\ndevice: {name}  precision: '
          f'{"bf16 autocast" if amp else "fp32"}  classes: {num_classes}  '
          f'image size: {model.backbone.image_size}')
    rows = benchmark_model(model, args.batch_size, num_classes, args.iters, args.warmup,
                           device, amp)
    print(f'{"batch":>6} {"tower img/s":>12} {"train img/s":>12} {"train/tower":>12} '
          f'{"infer img/s":>12} {"infer/tower":>12} {"peak MB":>9}')
    for r in rows:
        print(f'{r["batch"]:>6} {r["tower"]:>12.1f} {r["train"]:>12.1f} '
              f'{r["train_ratio"]:>11.1%} {r["infer"]:>12.1f} {r["infer_ratio"]:>11.1%} '
              f'{r["mem"]:>9.0f}')
    if args.data:
        rate, workers = benchmark_data(cfg, args.iters, args.data_workers)
        print(f'data pipeline: {rate:.1f} images/s with {workers} workers')
    return rows


if __name__ == '__main__':
    main()
