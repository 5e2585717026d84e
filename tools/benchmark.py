"""Speed and memory of a config's model, every figure against the frozen tower (the bound).

    python tools/benchmark.py configs/dualcoop/coco_p50.py --batch-size 128 32
    python tools/benchmark.py configs/demo/dualcoop_p10.py --device cpu --json bench.json
    python tools/benchmark.py configs/demo/dualcoop_p10.py --device cpu --data  # + JPEG rows

Rows, per batch size, all in one run (docs/benchmark.md says what each one runs):
  - ``bound``: the frozen image tower exactly as inference runs it (``extract_feat`` in eval
    mode under ``no_grad``, same autocast and memory format). Nothing that runs the tower
    can be faster, so every other row is also given as a ratio to it;
  - ``step``: our train step (forward, loss, backward, optimizer step);
  - ``reference_step``: the same step written the plain way: fp32, text of every class
    encoded at the full context length each batch (no truncation, no class sampling);
  - ``cache_step``: our train step in cache mode: the batch holds the tower's stored
    outputs (fp16) instead of images (``mlr_plugin/models/feature_cache.py``);
  - ``infer``: ``predict``.
With ``--data`` (needs the training dataset): the data pipeline alone, per core (ours and
a PIL + torchvision one doing the same augmentations), the config's loader with its
workers, the GPU data path (CUDA only), and end to end from the JPEG files.

Timing: the model rows are interleaved round-robin (the order rotates every round) and
each row's figure is its fastest round, so a burst of load from other processes hits
every row alike instead of one row; the load average is printed with the results.
Peak memory: one more call of each row after the timed rounds (GPU: max allocated after a
reset; CPU: the RSS high-water mark, reset before the call).
"""
import argparse
import contextlib
import ctypes
import gc
import os
import os.path as osp
import resource
import statistics
import sys
import threading
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/, for _bootstrap
from _bootstrap import cli  # noqa: E402

import torch  # noqa: E402

MODEL_ROWS = ('bound', 'step', 'reference_step', 'cache_step', 'infer')
# a row faster than the bound by more than this is reported as untrustworthy (timing noise)
BOUND_SLACK = 1.05


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark an mlr_plugin model')
    parser.add_argument('config')
    parser.add_argument('--batch-size', type=int, nargs='+', default=[32])
    parser.add_argument('--num-classes', type=int, default=None,
                        help='number of class names to score (default: the prompt '
                        "learner's num_classes, else 80)")
    parser.add_argument('--iters', type=int, default=10,
                        help='timed rounds (each runs every row once)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed rounds first')
    parser.add_argument('--device', default=None, help='cuda or cpu (default: cuda if any)')
    parser.add_argument('--no-amp', action='store_true', help='fp32 on GPU')
    parser.add_argument('--channels-last', action='store_true',
                        help='tower weights and inputs in channels_last (CUDA; a no-op on '
                        'CPU)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--data', action='store_true',
                        help='also time the data pipeline and end to end from the JPEG '
                        'files (needs the training dataset)')
    parser.add_argument('--data-iters', type=int, default=8,
                        help='batches per data row')
    parser.add_argument('--data-workers', type=int, default=None,
                        help="loader workers for the loader rows (default: the config's)")
    parser.add_argument('--gpu-data', action='store_true',
                        help='with --data: also time the GPU data path when the device is '
                        'the CPU (it runs there too; on CUDA it always runs)')
    parser.add_argument('--json', default=None, metavar='OUT',
                        help='write one object per batch size to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE')
    cli.add_debug_arg(parser)
    args = parser.parse_args(argv)
    for name in ('iters', 'data_iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if min(args.batch_size) < 1:
        parser.error('--batch-size must be >= 1')
    cli.check_config(args.config)  # a typo costs a fraction of a second
    cli.check_cfg_options(args.cfg_options)
    return args


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(fns, rounds, warmup, sync=lambda: None, clock=time.perf_counter):
    """Seconds per call of each callable: interleaved rounds, fastest round per row.

    Each round calls every row once; the order rotates every round so no row always
    follows the same one. Returns ``{name: dict(best=, median=)}``.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync()
    times = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            fns[name]()
            sync()
            times[name].append(clock() - start)
    return {name: dict(best=min(t), median=statistics.median(t)) for name, t in times.items()}


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


# switches of the scaled text/head paths that the plain reference turns off where a
# module has them: (module attribute of the classifier, its attribute)
_CHUNKING = (('prompt_learner', 'encode_chunk_size'), ('head', 'class_chunk_size'))


@contextlib.contextmanager
def plain_text_encoding(model):
    """The text side as the public DualCoOp code runs it: every class's prompts at the
    full context length (no truncation at the longest prompt, no class sampling, no
    class chunking)."""
    backbone = model.backbone
    encode = backbone.encode_prompt_embeddings
    saved = dict(num_train_classes=model.num_train_classes)
    backbone.encode_prompt_embeddings = \
        lambda embeds, tokens, truncate=True: encode(embeds, tokens, truncate=False)
    model.num_train_classes = None
    chunking = [(getattr(model, owner), name) for owner, name in _CHUNKING
                if hasattr(getattr(model, owner), name)]
    for module, name in chunking:
        saved[(module, name)] = getattr(module, name)
        setattr(module, name, None)
    try:
        yield
    finally:
        del backbone.encode_prompt_embeddings  # back to the class's method
        model.num_train_classes = saved['num_train_classes']
        for module, name in chunking:
            setattr(module, name, saved[(module, name)])


def cached_features(model, inputs):
    """The batch a feature cache would deliver for ``inputs``: the tower's outputs in
    fp16 with the record of the backbone that computed them."""
    import json

    from mlr_plugin.models.feature_cache import (FEATURE_KEYS, FINGERPRINT_KEY,
                                                 backbone_fingerprint)
    model.eval()
    with torch.no_grad():
        feats = model.backbone(inputs)
    batch = {k: feats[k].half() for k in FEATURE_KEYS if k in feats}
    batch[FINGERPRINT_KEY] = json.dumps(
        dict(root='<benchmark: features of the timed inputs>',
             backbone=backbone_fingerprint(model.backbone)), sort_keys=True)
    return batch


def build_rows(model, optim, inputs, samples, device, amp):
    """The callables timed per batch size: ``{row: fn}`` (see the module docstring)."""
    def autocast(enabled=amp):
        if enabled:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return torch.autocast(device.type, enabled=False)

    def update(losses):
        optim.update_params(sum(v for k, v in losses.items() if k.startswith('loss')))

    def bound():
        model.eval()  # exactly predict's tower: eval mode, no_grad, same autocast
        with torch.no_grad(), autocast():
            model.extract_feat(inputs)

    def infer():
        model.eval()
        with autocast():
            model.predict(inputs)

    def step():
        model.train()
        with autocast():
            losses = model.loss(inputs, samples)
        update(losses)

    def reference_step():
        model.train()
        with plain_text_encoding(model), autocast(False):
            losses = model.loss(inputs, samples)
        update(losses)

    cached = cached_features(model, inputs)

    def cache_step():
        # the classifier's cache mode (mlr_plugin/models/feature_cache.py): a batch of
        # stored tower outputs (fp16, as the cache holds them) instead of images
        model.train()
        with autocast():
            losses = model.loss(cached, samples)
        update(losses)

    return dict(bound=bound, step=step, reference_step=reference_step,
                cache_step=cache_step, infer=infer)


def _image_hw(model):
    size = model.backbone.image_size
    return (size, size) if isinstance(size, int) else tuple(size)


def _inputs(model, bs, num_classes, device, channels_last):
    from mmpretrain.structures import DataSample
    size = _image_hw(model)
    inputs = torch.randn(bs, 3, *size, device=device)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    gt = torch.randint(-1, 2, (bs, num_classes), generator=gen).float()
    gt[:, 0] = 1  # at least one known positive per image
    return inputs, [DataSample().set_gt_score(g.to(device)) for g in gt]


def benchmark_model(model, batch_sizes, num_classes, iters, warmup, device, amp,
                    channels_last=False):
    """One result dict per batch size (img/s per row, ratios to the bound, memory)."""
    from mmengine.optim import build_optim_wrapper

    model.to(device)
    channels_last = channels_last and device.type == 'cuda'
    if channels_last:
        model.backbone.clip.visual.to(memory_format=torch.channels_last)
    model.set_class_names([f'class {i}' for i in range(num_classes)])
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=1e-3,
                                                           momentum=0.9)))
    results = []
    for bs in batch_sizes:
        inputs, samples = _inputs(model, bs, num_classes, device, channels_last)
        rows = build_rows(model, optim, inputs, samples, device, amp)
        timed = measure(rows, iters, warmup, lambda: _sync(device))
        peaks = {}
        for name, fn in rows.items():
            with _RowPeak(device) as peak:
                fn()
                _sync(device)
            peaks[name] = round(peak.mb, 1)
        result = dict(batch_size=bs)
        for name in MODEL_ROWS:
            result[f'{name}_img_s'] = bs / timed[name]['best']
            result[f'{name}_median_img_s'] = bs / timed[name]['median']
        result['peak_mem_mb'] = peaks['step']
        result['peak_mem_mb_rows'] = peaks
        results.append(result)
        del rows, inputs, samples
    return results


def add_ratios(result):
    """Every ``*_img_s`` figure also as ``*_vs_bound`` (its fraction of the bound), and a
    warning for any tower-running row faster than the bound (impossible: timing noise)."""
    bound = result['bound_img_s']
    for key in list(result):
        if key.endswith('_img_s') and key != 'bound_img_s' and result[key] is not None:
            result[key[:-len('_img_s')] + '_vs_bound'] = result[key] / bound
    slow_rows = [k for k in ('step_img_s', 'reference_step_img_s', 'infer_img_s')
                 if result[k] > BOUND_SLACK * bound]
    result['warnings'] = [
        f'{k[:-6]} ran faster than the tower it runs ({result[k]:.1f} > {bound:.1f} img/s): '
        'the machine load changed during the run; rerun on a quieter machine'
        for k in slow_rows]
    if result.get('cache_step_img_s') and result.get('step_img_s'):
        result['cache_vs_step'] = result['cache_step_img_s'] / result['step_img_s']
    if result.get('reference_step_img_s'):
        result['step_vs_reference'] = result['step_img_s'] / result['reference_step_img_s']
    if result.get('data_img_s') and result.get('data_pil_img_s'):
        result['data_vs_pil'] = result['data_img_s'] / result['data_pil_img_s']
    return result


# ---------------------------------------------------------------------- data rows
def pil_pipeline(pipeline):
    """The config's training pipeline written the usual torchvision way (PIL decode,
    torchvision transforms): the same kinds of augmentation, for the per-core comparison.
    torchvision's RandAugment has no SolarizeAdd / Invert and always applies its ops;
    Cutout becomes a fixed-size square ``RandomErasing`` kept inside the image."""
    from PIL import Image
    from torchvision import transforms as T

    steps, is_tensor = [], False
    for step in pipeline:
        step = dict(step)
        kind = step.pop('type')
        if kind in ('LoadImageCV2', 'LoadImageFromFile'):
            steps.append(lambda path: Image.open(path).convert('RGB'))
        elif kind == 'Resize':
            w, h = (step['scale'],) * 2 if isinstance(step['scale'], int) else step['scale']
            steps.append(T.Resize((h, w)))
        elif kind == 'RandomResizedCrop':
            size = step['scale']
            size = (size, size) if isinstance(size, int) else tuple(reversed(size))
            steps.append(T.RandomResizedCrop(size, scale=step.get('crop_ratio_range',
                                                                  (0.08, 1.0))))
        elif kind == 'RandomFlip':
            steps.append(T.RandomHorizontalFlip(step.get('prob', 0.5)))
        elif kind == 'RandAugment':
            fill = step.get('hparams', {}).get('pad_val', 128)
            steps.append(T.RandAugment(num_ops=step['num_policies'],
                                       magnitude=int(step['magnitude_level']),
                                       num_magnitude_bins=int(step.get('total_level', 10)) + 1,
                                       fill=list(fill) if isinstance(fill, (list, tuple))
                                       else fill))
        elif kind in ('Cutout', 'PackInputs'):
            if not is_tensor:
                steps.append(T.PILToTensor())
                is_tensor = True
            if kind == 'Cutout':
                shape = step['shape']
                h, w = (shape, shape) if isinstance(shape, int) else shape
                steps.append(_SquareErasing(step.get('prob', 0.5), (h, w),
                                            step.get('pad_val', 128)))
        else:
            raise ValueError(f'no PIL/torchvision version of pipeline step {kind!r}')

    def run(path):
        out = path
        for fn in steps:
            out = fn(out)
        return out
    return run


class _SquareErasing:
    """Cutout for the torchvision pipeline: a ``size`` box filled with ``value``."""

    def __init__(self, p, size, value):
        from torchvision import transforms as T
        self.p, self.size, self.value = p, size, value
        self.erase = T.functional.erase

    def __call__(self, img):
        if torch.rand(()) >= self.p:
            return img
        h, w = img.shape[-2:]
        bh, bw = min(self.size[0], h), min(self.size[1], w)
        top = int(torch.randint(0, h - bh + 1, ()))
        left = int(torch.randint(0, w - bw + 1, ()))
        value = torch.tensor(self.value, dtype=img.dtype).reshape(-1, 1, 1)
        return self.erase(img, top, left, bh, bw, value)


@contextlib.contextmanager
def one_core():
    """Per-core figures: one torch and one OpenCV thread, restored afterwards."""
    import cv2
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)


def _cycle_batches(n, bs):
    state = dict(start=0)

    def take():
        idx = [(state['start'] + i) % n for i in range(bs)]
        state['start'] = (state['start'] + bs) % n
        return idx
    return take


def _gpu_loader_cfg(loader_cfg):
    loader_cfg = loader_cfg.copy()
    loader_cfg['dataset'] = dict(loader_cfg['dataset'],
                                 pipeline=[dict(type='LoadJPEGBytes'), dict(type='PackInputs')])
    return loader_cfg


def _loader_rate(loader, preprocess, iters, device, consume=None):
    """img/s of ``iters`` batches (after one untimed batch: worker start-up); a small
    dataset is read again, epoch after epoch."""
    def endless():
        while True:
            yield from loader
    it = endless()
    batch = preprocess(next(it))
    if consume:
        consume(batch)
    _sync(device)
    start, count = time.perf_counter(), 0
    for _ in range(iters):
        batch = preprocess(next(it))
        if consume:
            consume(batch)
        count += len(batch['data_samples'])
    _sync(device)
    return count / (time.perf_counter() - start)


def benchmark_data(cfg, model, bs, iters, workers, device, amp, gpu_path=None,
                   channels_last=False):
    """The data rows for one batch size (img/s):
    ``data`` / ``data_pil``: our CPU pipeline and the PIL + torchvision one on the same
    files, per core (one thread, in this process, interleaved, best of ``iters``
    batches); ``data_loader``: the config's loader with ``workers`` workers + the data
    preprocessor; ``data_gpu``: loader reading bytes + ``GPUAugmentDataPreprocessor`` on
    ``device``; ``e2e`` / ``e2e_gpu``: those loaders feeding our train step."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner
    from mmpretrain.registry import DATASETS, MODELS

    gpu_path = device.type == 'cuda' if gpu_path is None else gpu_path
    loader_cfg = cfg.train_dataloader.copy()
    loader_cfg['batch_size'] = bs
    if workers is not None:
        loader_cfg['num_workers'] = workers
        loader_cfg['persistent_workers'] = workers > 0
    dataset = DATASETS.build(loader_cfg['dataset'])
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    pil = pil_pipeline(loader_cfg['dataset']['pipeline'])
    ours, theirs = _cycle_batches(len(dataset), bs), _cycle_batches(len(dataset), bs)
    with one_core():
        timed = measure(dict(data=lambda: [dataset[i] for i in ours()],
                             data_pil=lambda: [pil(paths[i]) for i in theirs()]),
                        iters, 1)
    out = dict(data_img_s=bs / timed['data']['best'],
               data_pil_img_s=bs / timed['data_pil']['best'],
               data_workers=loader_cfg['num_workers'])

    model.to(device)
    model.set_class_names(dataset.metainfo['classes'])
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=1e-3)))

    def step(batch):
        model.train()
        with (torch.autocast(device.type, dtype=torch.bfloat16) if amp
              else contextlib.nullcontext()):
            losses = model.loss(batch['inputs'], batch['data_samples'])
        optim.update_params(sum(v for k, v in losses.items() if k.startswith('loss')))

    def cpu_pre(batch):
        return model.data_preprocessor(batch, training=True)

    out['data_loader_img_s'] = _loader_rate(Runner.build_dataloader(loader_cfg), cpu_pre,
                                            iters, device)
    out['e2e_img_s'] = _loader_rate(Runner.build_dataloader(loader_cfg), cpu_pre, iters,
                                    device, step)
    out['data_gpu_img_s'] = out['e2e_gpu_img_s'] = None
    if gpu_path:
        gpu = MODELS.build(dict(type='GPUAugmentDataPreprocessor',
                                train_pipeline=loader_cfg['dataset']['pipeline'],
                                mean=model.data_preprocessor.mean.flatten().tolist(),
                                std=model.data_preprocessor.std.flatten().tolist(),
                                channels_last=channels_last)).to(device)

        def gpu_pre(batch):
            return gpu(batch, training=True)
        gpu_cfg = _gpu_loader_cfg(loader_cfg)
        out['data_gpu_img_s'] = _loader_rate(Runner.build_dataloader(gpu_cfg), gpu_pre,
                                             iters, device)
        out['e2e_gpu_img_s'] = _loader_rate(Runner.build_dataloader(gpu_cfg), gpu_pre,
                                            iters, device, step)
    return out



def busy_warning(device, load_before, load_after, threads, cores=None):
    """A CPU run on a machine with more runnable processes than cores: with several
    OpenMP threads every parallel op waits for its slowest thread to be scheduled, so
    figures drop many-fold and unevenly between rows (measured: the tower at 6.9 img/s
    with 2 threads vs 467 img/s with 1 thread under a load of 16 on 2 cores)."""
    cores = cores or os.cpu_count() or 1
    loads = [x[0] for x in (load_before, load_after) if x]
    if device.type != 'cpu' or not loads or max(loads) <= cores:
        return []
    hint = 'use --threads 1 and compare ratios, or ' if threads > 1 else ''
    return [f'the machine is busy (load average {max(loads):.1f} on {cores} cores): '
            f'absolute img/s are unreliable; {hint}rerun on a quiet machine']


def _loadavg():
    try:
        with open('/proc/loadavg') as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def _fmt(value, spec):
    return '-' if value is None else format(value, spec)


def print_table(results, header):
    print(header)
    cols = [('bound', 'bound'), ('step', 'step'), ('reference_step', 'reference'),
            ('cache_step', 'cache'), ('infer', 'infer'), ('data', 'data/core'),
            ('data_pil', 'PIL/core'), ('data_loader', 'loader'), ('data_gpu', 'GPU data'),
            ('e2e', 'e2e'), ('e2e_gpu', 'e2e GPU data')]
    for r in results:
        print(f'batch {r["batch_size"]}: img/s (fraction of the bound), peak MB of the '
              f'step {r["peak_mem_mb"]:.0f}')
        for key, label in cols:
            if f'{key}_img_s' not in r:
                continue
            rate = r[f'{key}_img_s']
            frac = r.get(f'{key}_vs_bound', 1.0 if key == 'bound' else None)
            if rate is None:
                print(f'  {label:>13} {"not measured":>19}')
                continue
            print(f'  {label:>13} {_fmt(rate, "10.1f")} {_fmt(frac, "8.1%")}')
        for key in ('step_vs_reference', 'cache_vs_step', 'data_vs_pil'):
            if key in r:
                print(f'  {key} = {r[key]:.2f}x')
        for w in r['warnings']:
            print(f'  WARNING: {w}')


def main(argv=None):
    args = parse_args(argv)
    from mmpretrain.registry import MODELS

    from mlr_plugin.engine.launch import load_config
    from mlr_plugin.fileio import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    amp = device.type == 'cuda' and not args.no_amp
    model = MODELS.build(cfg.model)
    num_classes = args.num_classes or cfg.model.prompt_learner.get('num_classes') or 80
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else \
        f'CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores)'
    load_before = _loadavg()
    results = benchmark_model(model, args.batch_size, num_classes, args.iters, args.warmup,
                              device, amp, args.channels_last)
    if args.data:
        for result in results:
            result.update(benchmark_data(cfg, model, result['batch_size'], args.data_iters,
                                         args.data_workers, device, amp,
                                         gpu_path=True if args.gpu_data else None,
                                         channels_last=args.channels_last))
    load_after = _loadavg()
    meta = dict(device=name, config=args.config, num_classes=num_classes,
                image_size=list(_image_hw(model)),
                precision='bf16 autocast' if amp else 'fp32',
                channels_last=bool(args.channels_last and device.type == 'cuda'),
                threads=torch.get_num_threads(), timed_rounds=args.iters,
                loadavg_before=load_before, loadavg_after=load_after)
    results = [add_ratios(dict(r, **meta)) for r in results]
    busy = busy_warning(device, load_before, load_after, torch.get_num_threads())
    for r in results:
        r['warnings'] += busy
    print_table(results, f'config: {args.config}\ndevice: {name}  precision: '
                f'{meta["precision"]}  classes: {num_classes}  image size: '
                f'{meta["image_size"]}  load average: {load_before} -> {load_after}')
    if args.json:
        write_json_atomic(results, args.json, indent=1)
        print(f'wrote {args.json}')
    return results


if __name__ == '__main__':
    cli.run_cli(main)
