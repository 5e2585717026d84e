"""Print the top labels of images (optionally write them as JSON).

    python tools/infer.py work_dirs/coco_p30/epoch_50.pth img1.jpg img2.jpg
    python tools/infer.py configs/demo/zeroshot_handcrafted.py img.jpg \
        --classes "red circle" "blue square" --out preds.json
    # open vocabulary: an MKT checkpoint scores any names
    python tools/infer.py work_dirs/mkt_vit-b16_nuswide-zsl-stage2/epoch_4.pth img.jpg \
        --classes "lighthouse" "harbor" "sunset" "bicycle"
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/, for _bootstrap
from _bootstrap import cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Multi-label inference on images')
    parser.add_argument('model', help='checkpoint (.pth) from tools/train.py, or a config')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--checkpoint', help='checkpoint to load on top of a config')
    parser.add_argument('--classes', nargs='+', help='class names to score (default: the '
                        "checkpoint's training classes)")
    parser.add_argument('--classes-file', help='a text file with one class name per line')
    parser.add_argument('--threshold', type=cli.probability, default=None,
                        help='a class is a label when its score is above this (0..1); '
                        "default: the model head's rule (0.5, or the top 3 for MKT's "
                        'rank-only scores)')
    parser.add_argument('--topk', type=cli.positive_int, default=5)
    parser.add_argument('--device', default=None)
    parser.add_argument('--out', help='write the results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE')
    cli.add_debug_arg(parser)
    args = parser.parse_args(argv)
    # checked before anything heavy is imported: a typo costs a fraction of a second
    if args.model.endswith('.py'):
        cli.check_config(args.model)
    else:
        cli.check_file(args.model, 'checkpoint')
    cli.check_file(args.checkpoint, 'checkpoint')
    cli.check_file(args.classes_file, 'classes file')
    for image in args.images:
        cli.check_file(image, 'image')
    cli.check_suffix(args.out, ('.json',), '--out')
    cli.check_cfg_options(args.cfg_options)
    if args.classes and args.classes_file:
        raise ValueError('give --classes or --classes-file, not both')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mlr_plugin.apis import MultiLabelInferencer
    from mlr_plugin.fileio import write_json_atomic

    classes = args.classes
    if args.classes_file:
        with open(args.classes_file) as f:
            classes = [line.strip() for line in f if line.strip()]
    inferencer = MultiLabelInferencer(args.model, checkpoint=args.checkpoint,
                                      class_names=classes, device=args.device,
                                      cfg_options=args.cfg_options)
    results = inferencer(args.images, threshold=args.threshold, topk=args.topk)
    for path, res in zip(args.images, results):
        top = ', '.join(f'{name} {score:.3f}' for name, score in res['topk'])
        print(f'{path}: labels={res["labels"]}  top{args.topk}: {top}')
    if args.out:
        write_json_atomic([dict(image=p, **r) for p, r in zip(args.images, results)],
                          args.out)
        print(f'wrote {args.out}')
    return results


if __name__ == '__main__':
    cli.run_cli(main)
