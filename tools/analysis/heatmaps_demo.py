"""Render docs/images/heatmaps_demo.png: a briefly trained DualCoOp on the demo world.

    python -m mlr_plugin.datasets.demo_world --out data/demo_world
    python tools/analysis/heatmaps_demo.py          # ~1-2 min on 2 CPU cores

Trains the class-specific contexts of ``dualcoop_demo-rn_demo-world-full`` for a few
hundred SGD steps on frozen features of part of the train split (the tower is frozen and
nothing is augmented, so features are computed once), saves the checkpoint as
``tools/train.py`` does (trained weights + config + class names), then draws the maps
of a few test images through :class:`mlr_plugin.apis.MultiLabelInferencer`, the path
``tools/visualize.py`` takes.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from _bootstrap import REPO, cli  # noqa: E402

MODEL = 'dualcoop_demo-rn_demo-world-full'


def train_checkpoint(root, path, num_images, steps, seed=0):
    import numpy as np
    import torch
    from mmengine.runner.checkpoint import save_checkpoint
    from mmpretrain.registry import DATASETS

    from mlr_plugin.apis import get_model

    torch.manual_seed(seed)
    model = get_model(MODEL)
    dataset = DATASETS.build(dict(
        type='CocoMultiLabel', data_root=root, ann_file='annotations/instances_train.json',
        data_prefix=dict(img_path='train'), indices=num_images,
        pipeline=[dict(type='LoadImageCV2', to_rgb=True), dict(type='PackInputs')]))
    classes = list(dataset.metainfo['classes'])
    model.set_class_names(classes)
    feats, labels = [], torch.from_numpy(dataset.get_label_matrix()).float()
    for start in range(0, len(dataset), 100):
        items = [dataset[i] for i in range(start, min(start + 100, len(dataset)))]
        data = model.data_preprocessor(dict(inputs=[it['inputs'] for it in items],
                                            data_samples=[it['data_samples'] for it in items]))
        with torch.no_grad():
            feats.append(model.extract_feat(data['inputs']))
    feats = {k: torch.cat([f[k] for f in feats]) for k in feats[0]
             if torch.is_tensor(feats[0][k])}
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=5e-4)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=steps, eta_min=0.0)
    rng = np.random.RandomState(seed)
    model.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(labels), 32, replace=False))
        out = model.head({k: v[idx] for k, v in feats.items()}, model.encode_classes())
        loss = sum(model.head.compute_loss(out, labels[idx]).values())
        optim.zero_grad()
        loss.backward()
        optim.step()
        cosine.step()
    save_checkpoint(dict(state_dict=model.state_dict(),
                         meta=dict(cfg=model._config.pretty_text,
                                   dataset_meta=dict(classes=classes))), path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default=osp.join(REPO, 'data', 'demo_world'))
    parser.add_argument('--out', default=osp.join(REPO, 'docs', 'images',
                                                  'heatmaps_demo.png'))
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'heatmaps_demo'))
    parser.add_argument('--images', nargs='+', type=int, default=[0, 1, 2],
                        help='indices of the test images drawn (one figure row each)')
    parser.add_argument('--topk', type=cli.positive_int, default=4)
    parser.add_argument('--train-images', type=cli.positive_int, default=2000)
    parser.add_argument('--steps', type=cli.positive_int, default=400)
    cli.add_debug_arg(parser)
    args = parser.parse_args(argv)
    if not osp.isdir(osp.join(args.data_root, 'test')):
        raise FileNotFoundError(cli.missing_data_root_message('--data-root', args.data_root))

    import numpy as np

    from mlr_plugin.apis import MultiLabelInferencer

    ckpt = osp.join(args.work_dir, 'contexts.pth')
    train_checkpoint(args.data_root, ckpt, args.train_images, args.steps)
    inferencer = MultiLabelInferencer(ckpt, device='cpu')
    images = [osp.join(args.data_root, 'test', f'test_{i:06d}.jpg') for i in args.images]
    results = inferencer(images, topk=args.topk, return_vis=True)
    rows = [r['vis'] for r in results]
    width = max(row.shape[1] for row in rows)
    figure = np.concatenate([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)),
                                    constant_values=255) for row in rows])
    # a 256-colour palette keeps the figure small in the repository (~4x smaller)
    from PIL import Image

    from mlr_plugin.fileio import atomic_open
    with atomic_open(args.out, 'wb') as f:
        Image.fromarray(figure).quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                         dither=Image.Dither.NONE).save(f, format='PNG',
                                                                        optimize=True)
    for path, result in zip(images, results):
        print(f'{osp.basename(path)}: ' + ', '.join(f'{n} {s:.2f}' for n, s in result['topk']))
    print(f'wrote {args.out}')
    return args.out


if __name__ == '__main__':
    cli.run_cli(main)
