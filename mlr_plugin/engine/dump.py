"""Write per-image predictions of a test run to JSON (``tools/test.py --out``)."""
from typing import Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

from mlr_plugin.evaluation.base import _check_class_subsets
from mlr_plugin.fileio import write_json_atomic


@METRICS.register_module()
class DumpMultiLabelPredictions(BaseMetric):
    """Collect ``pred_score`` (and ``gt_score`` when present) per image and write them,
    with the class names, to ``out_file`` (JSON). Reports no metric.

    ``class_subsets`` and ``drop_empty_rows`` are the evaluated metric's (e.g. the
    zero-shot ``zsl`` classes); they are written along (names resolved) so that
    ``tools/analysis/plot_ap.py`` scores each class set as the metric did."""
    default_prefix = 'dump'

    def __init__(self, out_file: str, class_subsets: Optional[dict] = None,
                 drop_empty_rows: bool = False, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        if not out_file.endswith('.json'):
            raise ValueError(f'out_file must end with .json, got {out_file}')
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.out_file = out_file
        self.class_subsets = _check_class_subsets(class_subsets)
        self.drop_empty_rows = bool(drop_empty_rows)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            record = dict(img_path=sample.get('img_path'),
                          pred_score=[round(float(s), 6) for s in sample['pred_score']])
            if 'gt_score' in sample:
                record['gt_score'] = [float(s) for s in sample['gt_score']]
            if sample.get('pred_streams') is not None:  # MKT: subsets are re-fused from them
                record['pred_streams'] = [[round(float(v), 6) for v in row]
                                          for row in sample['pred_streams']]
            self.results.append(record)

    def compute_metrics(self, results: list) -> dict:
        classes = list((self.dataset_meta or {}).get('classes', []))
        write_json_atomic(dict(classes=classes, class_subsets=self.class_subsets,
                               drop_empty_rows=self.drop_empty_rows,
                               predictions=results), self.out_file)
        return {}
