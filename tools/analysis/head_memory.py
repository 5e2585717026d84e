"""Peak CPU memory of a head's scoring at a given geometry, chunked vs unchunked.

Each measurement runs in a fresh subprocess; the number is the growth of its peak
resident set (``ru_maxrss``) while the head scores one batch under ``no_grad`` (the
path of ``predict``), on
synthetic L2-normalised features (the head never sees weights: only the geometry
matters). Example (Open Images, RN101 at 448 px: 14 x 14 grid + 1 mean token, D=512)::

    python tools/analysis/head_memory.py --classes 7586 --batch 32 --tokens 197 --dim 512
"""
import argparse
import json
import os
import resource
import subprocess
import sys


def _measure(head: str, chunk, classes: int, batch: int, tokens: int, dim: int) -> dict:
    import torch
    import torch.nn.functional as F
    from mlr_plugin.models.heads import DualCoOpHead, DualCoOpPlusPlusHead
    head_type = dict(dualcoop=DualCoOpHead, dualcoop_pp=DualCoOpPlusPlusHead)[head]
    model = head_type(class_chunk_size=chunk)
    names = model.prompt_names
    gen = torch.Generator().manual_seed(0)
    feats = dict(dense=F.normalize(torch.randn(batch, tokens, dim, generator=gen), dim=-1))
    text = {n: F.normalize(torch.randn(classes, dim, generator=gen), dim=-1) for n in names}
    with torch.no_grad():  # warm-up on a tiny case: allocator / thread pools exist
        model.score_outputs(dict(dense=feats['dense'][:1]), {n: t[:2] for n, t in text.items()})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        scores = model.predict_scores(model.score_outputs(feats, text))  # predict's path
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(head=head, class_chunk_size=chunk, peak_growth_mib=(peak - before) / 1024,
                map_mib=batch * classes * tokens * 4 / 2**20, scores_sum=float(scores.sum()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--classes', type=int, default=7586)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--tokens', type=int, default=197)
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--chunks', default='none,512,128')
    parser.add_argument('--heads', default='dualcoop,dualcoop_pp')
    parser.add_argument('--one', nargs=2, help=argparse.SUPPRESS)  # internal: head chunk
    args = parser.parse_args()
    if args.one:
        chunk = None if args.one[1] == 'none' else int(args.one[1])
        print(json.dumps(_measure(args.one[0], chunk, args.classes, args.batch, args.tokens,
                                  args.dim)))
        return
    for head in args.heads.split(','):
        for chunk in args.chunks.split(','):
            out = subprocess.run(
                [sys.executable, __file__, '--one', head, chunk, '--classes',
                 str(args.classes), '--batch', str(args.batch), '--tokens',
                 str(args.tokens), '--dim', str(args.dim)],
                check=True, capture_output=True, text=True,
                # large blocks are mmap'ed and returned on free, so the peak RSS follows
                # the live tensors instead of glibc's heap high-water mark
                env=dict(os.environ, MALLOC_MMAP_THRESHOLD_='131072')).stdout
            print(out.strip(), flush=True)


if __name__ == '__main__':
    main()
