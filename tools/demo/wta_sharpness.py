"""How hard Winner-Take-All is on the demo CLIP's cosines, for a few gammas.

    python tools/demo/ablate_heads.py --only pp_rule      # caches the features first
    python tools/demo/wta_sharpness.py

Scores every location of the demo test split against "a photo of a {}." for the 20
classes (the shipped CLIP, dense features of the DualCoOp++ demo config) and prints the
median best-class cosine, its median lead over the runner-up, and, per gamma, the
runner-up class's Winner-Take-All weight (DualCoOp++: exp(g max_c cos * (cos - max_c cos))).
"""
import os.path as osp
import sys

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))

from ablate_heads import PP, RULE, build  # noqa: E402


def main(cache='work_dirs/demo_ablation/feats_mt0_pe0.pt', gammas=(200.0, RULE['gamma'])):
    test = torch.load(cache, weights_only=False)['test']
    _, model = build(PP, class_names=test['classes'])
    with torch.no_grad():
        text = torch.nn.functional.normalize(model.backbone.encode_text(
            [f'a photo of a {c}.' for c in test['classes']]).float(), dim=-1)
    cos = torch.einsum('bld,cd->bcl', test['feats']['dense'], text)  # (B, C, L)
    top2 = cos.topk(2, dim=1).values
    best, lead = top2[:, 0], top2[:, 0] - top2[:, 1]
    print(f'{cos.shape[2]} locations; best-class cosine median {best.median():.2f}, lead over '
          f'the runner-up median {lead.median():.3f}; positives per image '
          f'{test["labels"].float().sum(1).mean():.2f}')
    for gamma in gammas:
        logits = gamma * best.unsqueeze(1) * cos
        weights = torch.exp(logits - logits.amax(1, keepdim=True))
        second = weights.topk(2, dim=1).values[:, 1]
        print(f'gamma {gamma:.1f}: runner-up weight median {second.median():.3f}, < 0.1 at '
              f'{(second < 0.1).float().mean():.0%} of the locations')


if __name__ == '__main__':
    main()
