"""Plain-text table of a metrics dict, for ``tools/test.py`` to print."""
import math
from numbers import Number
from typing import Mapping


def _format_value(value, digits: int) -> str:
    if hasattr(value, 'item') and getattr(value, 'ndim', 0) == 0:  # 0-d tensor / ndarray
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Number):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return 'nan' if math.isnan(value) else f'{value:.{digits}f}'


def format_metrics_table(metrics: Mapping[str, object], digits: int = 2) -> str:
    """Two-column ``Metric | Value`` table, rows in the dict's order.

    Floats get ``digits`` decimals (metrics are already in %), NaN prints as ``nan``
    (e.g. the AP of a class without positives), anything else as ``str``.

    Example::

        +--------+-------+
        | Metric | Value |
        +--------+-------+
        | mAP    | 71.25 |
        | CF1    | 60.00 |
        +--------+-------+
    """
    if not isinstance(metrics, Mapping):
        raise ValueError(f'metrics must be a dict, got {type(metrics).__name__}')
    rows = [('Metric', 'Value')] + [(str(key), _format_value(value, digits))
                                    for key, value in metrics.items()]
    name_width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    rule = f'+-{"-" * name_width}-+-{"-" * value_width}-+'
    lines = [rule]
    for i, (name, value) in enumerate(rows):
        # names left-aligned, numbers right-aligned so decimals line up.
        value_cell = value.ljust(value_width) if i == 0 else value.rjust(value_width)
        lines.append(f'| {name.ljust(name_width)} | {value_cell} |')
        if i == 0:
            lines.append(rule)
    lines.append(rule)
    return '\n'.join(lines)
