"""Train and test every demo config, then print the README's demo table (markdown).

    python -m mlr_plugin.datasets.demo_world --out data/demo_world
    python tools/demo/make_table.py            # ~10 min on 2 CPU cores

Each row trains with tools/train.py (except the hand-crafted baseline, which has nothing
to train), evaluates the final checkpoint on the demo world's *test* split with
tools/test.py and reports mAP / CF1 / OF1 (zero-shot rows: on the 5 held-out classes).
Two more rows score the same split with the shipped CLIP's own zero-shot classifier
("a photo of a {}.", tiny_clip_eval.py): on the image embedding and, densely, max over
locations; they rank images only, so they have mAP and no F1.
"""
import argparse
import importlib.util
import os.path as osp
import platform
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

ROWS = [  # (label, config, metric prefix)
    ('zero-shot, hand-crafted prompts (no training), held-out 5 classes',
     'configs/demo/zeroshot_handcrafted.py', 'zsl/'),
    ('zero-shot DualCoOp (trained on 15 seen), held-out 5 classes',
     'configs/demo/zeroshot_dualcoop.py', 'zsl/'),
    ('zero-shot, hand-crafted prompts (no training), all 20 classes',
     'configs/demo/zeroshot_handcrafted.py', ''),
    ('DualCoOp, 10% labels', 'configs/demo/dualcoop_p10.py', ''),
    ('DualCoOp++, 10% labels', 'configs/demo/dualcoop_pp_p10.py', ''),
    ('DualCoOp, 100% labels', 'configs/demo/dualcoop_full.py', ''),
]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _clip_zero_shot(data_root):
    """tiny_clip_eval's metrics of the shipped demo CLIP on the test split."""
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))
    from tiny_clip_eval import evaluate_backbone, load_backbone, load_demo_split
    backbone = load_backbone(osp.join(REPO, 'mlr_plugin', 'demo', 'mlr-demo-rn.safetensors'),
                             'mlr-demo-rn')
    return evaluate_backbone(backbone, load_demo_split(data_root, 'test'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo_table')
    parser.add_argument('--data-root', default='data/demo_world')
    parser.add_argument('--only', nargs='+', metavar='CONFIG',
                        help='rerun just these configs (e.g. dualcoop_pp_p10) and print their '
                             'rows, without the CLIP zero-shot rows')
    args = parser.parse_args(argv)
    if not osp.isfile(osp.join(args.data_root, 'annotations', 'instances_train.json')):
        raise FileNotFoundError(f'no demo world at {args.data_root}: run python -m '
                                f'mlr_plugin.datasets.demo_world --out {args.data_root}')
    train, test = _tool('train'), _tool('test')
    options = [f'{loader}.dataset.data_root={args.data_root}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    results, trained = [], {}
    rows = [r for r in ROWS if not args.only
            or osp.splitext(osp.basename(r[1]))[0] in args.only]
    if not rows:
        raise ValueError(f'--only {args.only}: no such demo config; choose from '
                         f'{sorted({osp.splitext(osp.basename(r[1]))[0] for r in ROWS})}')
    for label, config, prefix in rows:
        name = osp.splitext(osp.basename(config))[0]
        work = osp.join(args.work_dir, name)
        start = time.perf_counter()
        checkpoint = None
        if 'handcrafted' not in name:
            if config not in trained:
                runner = train.main([config, '--work-dir', work, '--cfg-options', *options])
                trained[config] = osp.join(work, f'epoch_{runner.max_epochs}.pth')
            checkpoint = trained[config]
        argv = [config] + ([checkpoint] if checkpoint else []) + [
            '--work-dir', osp.join(work, 'test'), '--cfg-options', *options]
        metrics = test.main(argv)
        seconds = time.perf_counter() - start
        results.append((label, metrics[f'{prefix}mAP'], metrics.get(f'{prefix}CF1'),
                        metrics.get(f'{prefix}OF1'), seconds))

    if not args.only:
        start = time.perf_counter()
        clip_zero_shot = _clip_zero_shot(args.data_root)
        seconds = time.perf_counter() - start
        results[3:3] = [  # after the hand-crafted pos/neg row on all 20 classes
            ('zero-shot CLIP, "a photo of a {}." on the image embedding, all 20 classes',
             clip_zero_shot['zs_map_global'], None, None, seconds),
            ('zero-shot CLIP, "a photo of a {}." max over locations (dense), all 20 classes',
             clip_zero_shot['zs_map_dense'], None, None, seconds)]

    machine = (f'{platform.machine()} CPU, {torch.get_num_threads()} threads, '
               f'torch {torch.__version__}')
    print(f'\nDemo world test split (500 images, 20 classes), {machine}; '
          f'`python tools/demo/make_table.py`:\n')
    print('| setting | mAP | CF1 | OF1 | train + test time |')
    print('|---|---|---|---|---|')
    for label, mAP, cf1, of1, seconds in results:
        fmt = (lambda v: f'{v:.1f}' if v is not None else '—')
        print(f'| {label} | {fmt(mAP)} | {fmt(cf1)} | {fmt(of1)} | {seconds:.0f} s |')


if __name__ == '__main__':
    main()
