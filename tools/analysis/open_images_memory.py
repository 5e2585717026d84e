"""Parse time and memory of the Open Images label loader on a generated file in the
official layout (the figures in docs/protocols.md, "Open Images").

    python tools/analysis/open_images_memory.py --rows 2000000
    python tools/analysis/open_images_memory.py --rows 2000000 --kept-classes 7586

The file has ~10 rows per image (1..19), 16-hex-digit ImageIDs and 19,995 described
classes (as v4); ``--kept-classes`` loads only the first N of them (the rest are the
skipped rows). Memory is Python allocations (tracemalloc), so numbers do not include
the interpreter or imported libraries.
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
import tracemalloc

import numpy as np

# this checkout's package, not another installed copy
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from mlr_plugin.datasets.open_images import (load_label_cache,  # noqa: E402
                                             read_class_descriptions, read_image_labels,
                                             save_label_cache)

NUM_DESCRIBED = 19995


def write_files(folder: str, rows: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    mids = [f'/m/0{i:06x}' for i in range(NUM_DESCRIBED)]
    desc = osp.join(folder, 'class-descriptions.csv')
    with open(desc, 'w') as f:
        f.writelines(f'{m},"Class {i}, described"\n' for i, m in enumerate(mids))
    ann = osp.join(folder, 'labels.csv')
    with open(ann, 'w') as f:
        f.write('ImageID,Source,LabelName,Confidence\n')
        written = 0
        while written < rows:
            k = min(rng.randint(1, 20), rows - written)
            image_id = f'{rng.randint(0, 2**63):016x}'
            f.writelines(f'{image_id},verification,{mids[c]},{int(rng.rand() < 0.6)}\n'
                         for c in rng.choice(NUM_DESCRIBED, k, replace=False))
            written += k
    return desc, ann, mids


def measure(fn):
    tracemalloc.start()
    tic = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - tic
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, current / 2**20, peak / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=2_000_000)
    parser.add_argument('--kept-classes', type=int, default=NUM_DESCRIBED)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        desc, ann, mids = write_files(folder, args.rows)
        vocabulary = read_class_descriptions(desc)
        column_of = {m: j for j, m in enumerate(mids[:args.kept_classes])}

        tic = time.perf_counter()
        read_image_labels(ann, column_of, vocabulary)
        plain = time.perf_counter() - tic
        (ids, labels, stats), _, retained, peak = measure(
            lambda: read_image_labels(ann, column_of, vocabulary))
        cache = osp.join(folder, 'labels.npz')
        save_label_cache(cache, 'signature', ids, labels, stats)
        _, cached, cache_retained, cache_peak = measure(
            lambda: load_label_cache(cache, 'signature'))

    def per_million(mib, count):
        return mib / (count / 1e6)

    print(f'{args.rows} rows, {ids.size} images, {labels.nnz} labels kept '
          f'({args.kept_classes} of {NUM_DESCRIBED} classes)')
    print(f'parse: {plain:.2f} s ({plain / args.rows * 1e6:.2f} us/row); '
          f'retained {retained:.1f} MiB, peak {peak:.1f} MiB '
          f'({per_million(peak, args.rows):.1f} MiB per million rows)')
    store = (labels.indices.nbytes + labels.values.nbytes) / 2**20
    per_image = (ids.nbytes + labels.indptr.nbytes) / 2**20
    print(f'store: {per_million(store, max(labels.nnz, 1)):.1f} MiB per million kept labels, '
          f'{per_million(per_image, ids.size):.1f} MiB per million images '
          '(ImageID + row offset)')
    print(f'label_cache load: {cached:.3f} s, retained {cache_retained:.1f} MiB, '
          f'peak {cache_peak:.1f} MiB')


if __name__ == '__main__':
    main()
