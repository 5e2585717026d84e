"""Draw where a model finds each class: its top classes' attention maps over the image.

    python tools/visualize.py work_dirs/coco_p30/epoch_50.pth street.jpg --out vis/
    python tools/visualize.py configs/demo/zeroshot_handcrafted.py img1.png img2.png \
        --classes "red circle" "blue square" --topk 2 --out vis/
    python tools/visualize.py dualcoop-handcrafted_demo-rn_demo-world-zsl img.png \
        --classes "red circle" --out vis/          # a model name from list_models()

Writes ``<out>/<image name>.png`` per image (the image, then one panel per class with
its score), for every head whose forward returns ``attention`` (DualCoOp, DualCoOp++).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/, for _bootstrap
from _bootstrap import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Per-class attention maps of images')
    parser.add_argument('model', help='checkpoint (.pth) from tools/train.py, a config, '
                        'or a model name (mlr_plugin.apis.list_models())')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out', required=True, help='folder for the PNG figures')
    parser.add_argument('--checkpoint', help='checkpoint to load on top of a config')
    parser.add_argument('--classes', nargs='+', help='class names to score (default: the '
                        "checkpoint's training classes)")
    parser.add_argument('--topk', type=cli.positive_int, default=4,
                        help='draw the maps of this many best-scoring classes')
    parser.add_argument('--ncols', type=cli.positive_int, default=5,
                        help='panels per row of a figure')
    parser.add_argument('--batch-size', type=cli.positive_int, default=16)
    parser.add_argument('--device', default=None)
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE')
    cli.add_debug_arg(parser)
    args = parser.parse_args(argv)
    # checked before anything heavy is imported: a typo costs a fraction of a second
    if args.model.endswith('.py'):
        cli.check_config(args.model)
    elif args.model.endswith(('.pth', '.pt')):
        cli.check_file(args.model, 'checkpoint')
    cli.check_file(args.checkpoint, 'checkpoint')
    for image in args.images:
        cli.check_file(image, 'image')
    cli.check_cfg_options(args.cfg_options)
    if osp.isfile(args.out):
        raise ValueError(f'--out {args.out} is a file: give a folder for the figures')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mlr_plugin.apis import MultiLabelInferencer
    from mlr_plugin.apis.inference import vis_file_names, write_png_atomic

    inferencer = MultiLabelInferencer(args.model, checkpoint=args.checkpoint,
                                      class_names=args.classes, device=args.device,
                                      cfg_options=args.cfg_options)
    results = inferencer(args.images, topk=args.topk, batch_size=args.batch_size,
                         return_vis=True, vis_ncols=args.ncols)
    written = []
    for name, path, result in zip(vis_file_names(args.images), args.images, results):
        png = osp.join(args.out, name + '.png')
        write_png_atomic(png, result['vis'])
        top = ', '.join(f'{n} {s:.2f}' for n, s in result['topk'])
        print(f'{path}: {top} -> {png}')
        written.append(png)
    return written


if __name__ == '__main__':
    cli.run_cli(main)
