"""Peak CPU memory and time of an evaluation's metric at a given size.

Feeds ``--images`` synthetic samples of ``--classes`` scores (sigmoid of random logits,
1% positives, 5% unknown) through ``MultiLabelRecognitionMetric`` (mAP, CP..OF1, top-3)
in batches of 32, then computes the metrics; prints the peak resident-set growth
(``ru_maxrss``) over the process's baseline and the time of ``evaluate``. Example::

    python tools/analysis/metric_memory.py --images 12500 --classes 7586 --score-dtype float16
"""
import argparse
import json
import resource
import time

import numpy as np
import torch
from mmpretrain.structures import DataSample

from mlr_plugin.evaluation import MultiLabelRecognitionMetric


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=12500)
    parser.add_argument('--classes', type=int, default=7586)
    parser.add_argument('--score-dtype', default='float32')
    args = parser.parse_args()
    metric = MultiLabelRecognitionMetric(
        **({} if args.score_dtype == 'float32' else dict(score_dtype=args.score_dtype)))
    metric.dataset_meta = dict(classes=[f'c{i}' for i in range(args.classes)])
    gen = torch.Generator().manual_seed(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for start in range(0, args.images, 32):
        num = min(32, args.images - start)
        gt = (torch.rand(num, args.classes, generator=gen) < 0.01).float()
        gt[torch.rand(num, args.classes, generator=gen) < 0.05] = -1
        scores = torch.sigmoid(torch.randn(num, args.classes, generator=gen) - 4 + 3 * gt)
        metric.process(None, [DataSample().set_pred_score(s).set_gt_score(t).to_dict()
                              for s, t in zip(scores, gt)])
    stored = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    tic = time.time()
    result = metric.evaluate(args.images)
    seconds = time.time() - tic
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    payload = sum(r.nbytes for r in (np.zeros(args.classes, args.score_dtype),
                                     np.zeros(args.classes, np.int8)))
    print(json.dumps(dict(images=args.images, classes=args.classes,
                          score_dtype=args.score_dtype, bytes_per_sample=payload,
                          peak_after_process_mib=round(stored), peak_mib=round(peak),
                          evaluate_s=round(seconds, 1), mAP=round(result['mAP'], 4))))


if __name__ == '__main__':
    main()
