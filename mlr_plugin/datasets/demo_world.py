"""A synthetic multi-label "demo world" written in COCO format.

Users and CI cannot download COCO or CLIP, so the README's first command trains on this
world instead: coloured shapes (20 classes, e.g. ``"red circle"``) drawn on cluttered
backgrounds, 1-4 labelled objects per image, plus neutral-coloured distractor shapes that
carry no label. Everything is deterministic: image ``i`` of split ``s`` is drawn from
``np.random.RandomState([seed, s, i])``, so the same seed gives the same bytes, and a
small run reproduces the first images of a big one.

Output layout (the same files COCO-2014 ships, read with pycocotools)::

    out_dir/
      annotations/instances_{train,val,test}.json   images, annotations, categories
      annotations/captions_{train,val,test}.json    5 captions per image
      {train,val,test}/{split}_{index:06d}.jpg
      manifest.json                                 seed, sizes, style, file count

CLI: ``python -m mlr_plugin.datasets.demo_world --out data/demo_world --seed 0``.
Re-running it is a no-op when a complete world of the same seed and sizes is there; an
incomplete or different one is generated again.
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from mlr_plugin.fileio import write_json_atomic

# RGB anchor colours; each object jitters around its anchor (see _object_colour). Four
# well-separated hues so a tiny CNN can tell them apart after JPEG compression.
DEMO_COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (220, 30, 30),
    'green': (30, 180, 40),
    'blue': (30, 60, 220),
    'yellow': (235, 215, 30),
}
DEMO_SHAPES: Tuple[str, ...] = ('circle', 'ring', 'square', 'star', 'cross')

#: All class names, colour-major: ('red circle', 'red ring', ..., 'yellow cross').
#: Round shapes (circle, ring) and spiky ones (star, cross) are what a tiny CNN learns
#: fastest at 128 px; bars and triangles were slow to tell apart in our trials.
DEMO_CLASSES: Tuple[str, ...] = tuple(
    f'{colour} {shape}' for colour in DEMO_COLOURS for shape in DEMO_SHAPES)

# One unseen class per shape on a "diagonal" over colours, so every unseen shape and every
# unseen colour still appears in some seen class (zero-shot must compose, not invent).
# ('red circle', 'green ring', 'blue square', 'yellow star', 'red cross').
DEMO_UNSEEN: Tuple[str, ...] = tuple(
    f'{tuple(DEMO_COLOURS)[i % len(DEMO_COLOURS)]} {shape}'
    for i, shape in enumerate(DEMO_SHAPES))
DEMO_SEEN: Tuple[str, ...] = tuple(c for c in DEMO_CLASSES if c not in DEMO_UNSEEN)

SPLITS: Tuple[str, ...] = ('train', 'val', 'test')
# Image ids are unique across splits, as in COCO (train 1.., val 1000001.., test 2000001..).
_SPLIT_ID_OFFSET = 1_000_000

_CAPTION_TEMPLATES: Tuple[str, ...] = (
    'a photo of {objects}.',
    '{objects} on a cluttered background.',
    'there is {objects} in the picture.',
    'an image showing {objects} among grey clutter.',
    'a noisy picture with {objects}.',
    'a drawing of {objects}.',
    '{objects}.',
)
CAPTIONS_PER_IMAGE = 5

_PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class WorldStyle:
    """How hard the world is. Ranges are (low, high): ints draw ``randint(low, high)``
    (high excluded), floats ``uniform(low, high)``; sizes are fractions of the image side.
    """
    blobs: Tuple[int, int] = (2, 6)  # neutral ellipses in the background
    lines: Tuple[int, int] = (3, 9)  # neutral background lines
    line_width: Tuple[int, int] = (1, 4)
    distractors: Tuple[int, int] = (0, 4)  # grey class shapes that carry no label
    distractor_radius: Tuple[float, float] = (0.06, 0.14)
    object_radius: Tuple[float, float] = (0.09, 0.2)
    min_visible: float = 0.5  # an occluded object keeps at least this much of its area
    foreground_lines: Tuple[int, int] = (0, 3)  # thin lines drawn over the objects
    noise_sigma: Tuple[float, float] = (4.0, 14.0)  # per-image Gaussian pixel noise


DEFAULT_STYLE = WorldStyle()
_JPEG_QUALITY = 90


# ----------------------------------------------------------------------------- captions
def join_objects(names: Sequence[str]) -> str:
    """``['red circle', 'blue star']`` -> ``'a red circle and a blue star'``."""
    phrases = [f'a {name}' for name in names]
    if len(phrases) == 1:
        return phrases[0]
    return ', '.join(phrases[:-1]) + ' and ' + phrases[-1]


def make_captions(names: Sequence[str], rng: np.random.RandomState,
                  num: int = CAPTIONS_PER_IMAGE) -> List[str]:
    """``num`` captions naming exactly ``names``, each with its own template and order."""
    templates = rng.choice(len(_CAPTION_TEMPLATES), size=num,
                           replace=num > len(_CAPTION_TEMPLATES))
    captions = []
    for t in templates:
        order = rng.permutation(len(names))
        captions.append(_CAPTION_TEMPLATES[t].format(
            objects=join_objects([names[i] for i in order])))
    return captions


# ------------------------------------------------------------------------------ drawing
def _unit_circle(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def _shape_polygons(shape: str, cx: float, cy: float, radius: float,
                    angle: float) -> List[np.ndarray]:
    """Outlines [(K, 2), ...] of a shape of outer radius ``radius``, rotated by ``angle``.

    Filled with the even-odd rule, so a second outline inside the first is a hole (ring).
    """
    if shape == 'circle':
        outlines = [_unit_circle()]
    elif shape == 'ring':
        outlines = [_unit_circle(), 0.55 * _unit_circle()]
    elif shape == 'square':
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        outlines = [np.stack([np.cos(t), np.sin(t)], 1)]
    elif shape == 'star':
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        outlines = [np.stack([r * np.cos(t), r * np.sin(t)], 1)]
    elif shape == 'cross':
        a, b = 1.0, 0.3  # arm half-length, arm half-width
        outlines = [np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a],
                              [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]])]
    else:
        raise ValueError(f'unknown demo shape {shape!r}; expected one of {DEMO_SHAPES}')
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [pts @ rot.T * radius + np.array([cx, cy]) for pts in outlines]


def _fill_mask(size: int, outlines: List[np.ndarray]) -> np.ndarray:
    """Boolean (size, size) mask of filled outlines (even-odd: inner outlines are holes)."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in outlines], 1,
                 lineType=cv2.LINE_8)
    return mask.astype(bool)


def _neutral_colour(rng: np.random.RandomState) -> np.ndarray:
    """A low-saturation grey/beige RGB colour: clutter never looks like a class colour."""
    level = rng.uniform(60, 210)
    tint = rng.uniform(-12, 12, size=3)
    return np.clip(level + tint, 0, 255)


def _object_colour(colour: str, rng: np.random.RandomState) -> np.ndarray:
    anchor = np.array(DEMO_COLOURS[colour], np.float64)
    return np.clip(anchor * rng.uniform(0.75, 1.1) + rng.uniform(-20, 20, size=3), 0, 255)


def _draw_background(size: int, rng: np.random.RandomState,
                     style: WorldStyle) -> np.ndarray:
    """Float RGB (size, size, 3): neutral gradient, blobs, lines and grey distractor shapes."""
    base = _neutral_colour(rng)
    ramp = np.linspace(-1, 1, size)
    gx, gy = rng.uniform(-25, 25, size=2)
    img = base + (gx * ramp[None, :, None] + gy * ramp[:, None, None])
    img = np.array(np.broadcast_to(img, (size, size, 3)), dtype=np.float64)  # writable copy
    for _ in range(rng.randint(*style.blobs)):  # soft blobs
        centre = tuple(int(v) for v in rng.randint(0, size, size=2))
        axes = tuple(int(v) for v in rng.randint(size // 12, size // 4, size=2))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    _neutral_colour(rng).tolist(), -1)
    for _ in range(rng.randint(*style.lines)):  # lines
        p1 = tuple(int(v) for v in rng.randint(0, size, size=2))
        p2 = tuple(int(v) for v in rng.randint(0, size, size=2))
        cv2.line(img, p1, p2, _neutral_colour(rng).tolist(),
                 int(rng.randint(*style.line_width)))
    for _ in range(rng.randint(*style.distractors)):  # no label: class shape, grey colour
        shape = DEMO_SHAPES[rng.randint(len(DEMO_SHAPES))]
        outlines = _shape_polygons(shape, *rng.uniform(0.1, 0.9, size=2) * size,
                                   rng.uniform(*style.distractor_radius) * size,
                                   rng.uniform(0, 2 * np.pi))
        img[_fill_mask(size, outlines)] = _neutral_colour(rng)
    return img


def draw_demo_image(rng: np.random.RandomState, image_size: int = 128,
                    style: WorldStyle = DEFAULT_STYLE) -> Tuple[np.ndarray, List[dict]]:
    """Draw one image.

    Returns:
        image: uint8 RGB (image_size, image_size, 3).
        objects: one dict per labelled object, in drawing order, with ``category``
            (index into ``DEMO_CLASSES``), ``visible`` (bool mask of its visible pixels).
    """
    size = image_size
    img = _draw_background(size, rng, style)
    num_objects = rng.randint(1, 5)
    categories = rng.choice(len(DEMO_CLASSES), size=num_objects, replace=False)

    masks: List[np.ndarray] = []  # full (unoccluded) masks of the placed objects
    placed: List[int] = []
    for cat in categories:
        colour, shape = DEMO_CLASSES[cat].split(' ')
        for _ in range(_PLACEMENT_TRIES):
            radius = rng.uniform(*style.object_radius) * size
            cx, cy = rng.uniform(radius * 0.6, size - radius * 0.6, size=2)
            mask = _fill_mask(size, _shape_polygons(shape, cx, cy, radius,
                                                    rng.uniform(0, 2 * np.pi)))
            # Partial occlusion is allowed, hiding most of an earlier object is not.
            cover = mask.copy()
            ok = mask.sum() > 0
            for prev in reversed(masks):
                ok = ok and (prev & ~cover).sum() >= style.min_visible * prev.sum()
                cover |= prev
            if ok:
                masks.append(mask)
                placed.append(int(cat))
                img[mask] = _object_colour(colour, rng)
                break

    for _ in range(rng.randint(*style.foreground_lines)):  # thin lines over the objects
        p1 = tuple(int(v) for v in rng.randint(0, size, size=2))
        p2 = tuple(int(v) for v in rng.randint(0, size, size=2))
        cv2.line(img, p1, p2, _neutral_colour(rng).tolist(), 1)

    img += rng.normal(0, rng.uniform(*style.noise_sigma), size=img.shape)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)

    # Visible pixels: not covered by later objects (lines are thin, we ignore them).
    objects = []
    cover = np.zeros((size, size), bool)
    for cat, mask in zip(reversed(placed), reversed(masks)):
        objects.append(dict(category=cat, visible=mask & ~cover))
        cover |= mask
    return image, objects[::-1]


def _coco_annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    """COCO instance annotation of one object from its visible-pixel mask.

    The segmentation is the outer outline of each visible part (COCO polygons have no
    holes). Slivers whose outline has < 3 points (1-2 px wide leftovers of occlusion) are
    dropped from the mask first, so bbox, area and polygons describe the same pixels.
    """
    visible = obj['visible'].astype(np.uint8)
    contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    kept = [c for c in contours if len(c) >= 3]
    if not kept:  # only slivers: keep the largest, as a (degenerate) triangle
        largest = max(contours, key=len)
        kept = [np.concatenate([largest] * 3)[:3]]
    filled = np.zeros_like(visible)
    cv2.drawContours(filled, kept, -1, 1, thickness=cv2.FILLED)
    pixels = (visible & filled).astype(bool)  # contour points are visible pixels too
    ys, xs = np.nonzero(pixels)
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(id=ann_id, image_id=image_id, category_id=obj['category'] + 1,
                bbox=[float(x0), float(y0), float(xs.max() - x0 + 1),
                      float(ys.max() - y0 + 1)],
                area=float(pixels.sum()), iscrowd=0,
                segmentation=[c.reshape(-1).astype(float).tolist() for c in kept])


# --------------------------------------------------------------------------- generation
class GenerationProgress:
    """Prints ``done/total images, img/s, ETA`` to ``stream`` at most every ``every``
    seconds (and once at the end), so a long generation shows it is moving."""

    def __init__(self, total: int, every: float = 3.0, stream=None,
                 clock=time.monotonic):
        self.total, self.every, self.clock = total, every, clock
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float('inf')
        eta = f'{left:.0f} s' if left != float('inf') else '?'
        return (f'demo world: {self.done}/{self.total} images, {rate:.0f} img/s, '
                f'ETA {eta}')

    def step(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            print(self.line(), file=self.stream, flush=True)


def _write_split(root: Path, split: str, split_index: int, num_images: int, seed: int,
                 image_size: int, style: WorldStyle,
                 progress: Optional[GenerationProgress] = None) -> None:
    (root / split).mkdir(parents=True)
    images, instances, captions = [], [], []
    for index in range(num_images):
        rng = np.random.RandomState([seed, split_index, index])
        image, objects = draw_demo_image(rng, image_size, style)
        image_id = split_index * _SPLIT_ID_OFFSET + index + 1
        file_name = f'{split}_{index:06d}.jpg'
        ok, jpeg = cv2.imencode('.jpg', image[:, :, ::-1],
                                [int(cv2.IMWRITE_JPEG_QUALITY), _JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f'cv2 could not encode {split}/{file_name}')
        (root / split / file_name).write_bytes(jpeg.tobytes())
        images.append(dict(id=image_id, file_name=file_name, width=image_size,
                           height=image_size))
        # Annotation ids are unique per file and stable when split sizes change:
        # image_id * 10 + k (k < 10: <= 4 objects, 5 captions per image).
        for k, obj in enumerate(objects):
            instances.append(_coco_annotation(obj, image_id * 10 + k, image_id))
        names = [DEMO_CLASSES[obj['category']] for obj in objects]
        for k, caption in enumerate(make_captions(names, rng)):
            captions.append(dict(id=image_id * 10 + k, image_id=image_id, caption=caption))
        if progress is not None:
            progress.step()
    info = dict(description=f'mlr_plugin demo world, split {split}, seed {seed}',
                version='1.0', year=2024, contributor='mlr_plugin',
                url='', date_created='')
    categories = [dict(id=i + 1, name=name, supercategory=name.split(' ')[1])
                  for i, name in enumerate(DEMO_CLASSES)]
    _dump_json(root / 'annotations' / f'instances_{split}.json',
               dict(info=info, licenses=[], images=images, annotations=instances,
                    categories=categories))
    _dump_json(root / 'annotations' / f'captions_{split}.json',
               dict(info=info, licenses=[], images=images, annotations=captions))


def _dump_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, separators=(',', ':'))


MANIFEST = 'manifest.json'
_WORLD_ENTRIES = {'annotations', *SPLITS, MANIFEST}  # what a demo world folder holds


def world_manifest(seed: int, num_train: int, num_val: int, num_test: int,
                   image_size: int, style: Optional[WorldStyle] = None) -> dict:
    """What identifies a world: seed, sizes, style (as JSON reads back)."""
    style = style or DEFAULT_STYLE
    return json.loads(json.dumps(dict(
        seed=int(seed), num_train=int(num_train), num_val=int(num_val),
        num_test=int(num_test), image_size=int(image_size),
        style=dataclasses.asdict(style))))


def _count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def world_status(out_dir, manifest: dict) -> str:
    """'complete' (``out_dir`` holds the world ``manifest`` describes, every file
    there), 'missing', 'foreign' (a folder that is not a demo world) or why the world
    there is not the one asked for."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return 'missing'
    if not out_dir.is_dir() or not set(os.listdir(out_dir)) <= _WORLD_ENTRIES:
        return 'foreign'
    try:
        with open(out_dir / MANIFEST, encoding='utf-8') as f:
            written = json.load(f)
    except (OSError, ValueError):
        return 'incomplete (no readable manifest.json)'
    file_count = written.pop('file_count', None) if isinstance(written, dict) else None
    if written != manifest:
        return 'different (another seed, size or style)'
    if _count_files(out_dir) - 1 != file_count:  # every file but the manifest
        return 'incomplete (files missing or added)'
    return 'complete'


def generate_demo_world(out_dir, seed: int = 0, num_train: int = 8000, num_val: int = 300,
                        num_test: int = 500, image_size: int = 128,
                        overwrite: bool = False,
                        style: Optional[WorldStyle] = None,
                        progress: bool = False) -> Path:
    """Generate the demo world into ``out_dir`` (see the module docstring for the layout).

    Nothing is written when ``out_dir`` already holds the complete world of these
    arguments (its ``manifest.json``, written last, says so and the file count matches).
    An incomplete or different demo world there is replaced. The world is written into
    a temporary sibling folder and renamed into place at the end, so a failed or
    interrupted run never leaves a partial ``out_dir``.

    Args:
        out_dir: folder to create.
        seed: world seed; the same seed and sizes give byte-identical files.
        num_train, num_val, num_test: images per split (>= 0).
        image_size: square image side in pixels (>= 32).
        overwrite: regenerate even a complete world, and replace an ``out_dir`` that is
            not a demo world (otherwise FileExistsError).
        style: difficulty knobs (``WorldStyle``); None means ``DEFAULT_STYLE``.
        progress: print done/total images, images per second and the ETA to stderr
            every few seconds (the command line does; library calls stay quiet).

    Returns:
        ``Path(out_dir)``.
    """
    sizes = dict(train=num_train, val=num_val, test=num_test)
    checks = [(f'num_{split}', n) for split, n in sizes.items()]
    for name, value in [*checks, ('seed', seed), ('image_size', image_size)]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f'generate_demo_world: {name} must be an int >= 0, got {value!r}')
    if image_size < 32:
        raise ValueError(f'generate_demo_world: image_size must be >= 32, got {image_size}')
    out_dir = Path(out_dir)
    manifest = world_manifest(seed, num_train, num_val, num_test, image_size, style)
    status = world_status(out_dir, manifest)
    if status == 'complete' and not overwrite:
        return out_dir
    if status == 'foreign' and not overwrite:
        raise FileExistsError(f'{out_dir} exists and is not a demo world (it holds other '
                              'files): pass overwrite=True / --overwrite to replace it, or '
                              'choose another folder')
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.tmp-', dir=out_dir.parent))
    meter = GenerationProgress(sum(sizes.values())) if progress else None
    try:
        for split_index, split in enumerate(SPLITS):
            _write_split(tmp, split, split_index, sizes[split], int(seed), int(image_size),
                         style or DEFAULT_STYLE, meter)
        # last: the manifest (with the number of files besides it) marks a whole world
        write_json_atomic(dict(manifest, file_count=_count_files(tmp)), tmp / MANIFEST,
                          indent=1)
        if out_dir.exists():  # replace: move the old world aside first, then swap
            old = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.old-', dir=out_dir.parent))
            os.rename(out_dir, old / 'world')
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the synthetic COCO-format demo world of mlr_plugin.')
    parser.add_argument('--out', default='data/demo_world', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=8000)
    parser.add_argument('--num-val', type=int, default=300)
    parser.add_argument('--num-test', type=int, default=500)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--overwrite', action='store_true',
                        help='generate again even when a complete world is there, and '
                        'replace an output folder that is not a demo world')
    args = parser.parse_args(argv)
    start = time.time()
    sizes = f'{args.num_train}/{args.num_val}/{args.num_test} train/val/test images'
    manifest = world_manifest(args.seed, args.num_train, args.num_val, args.num_test,
                              args.image_size)
    status = world_status(args.out, manifest)
    if status == 'complete' and not args.overwrite:
        print(f'demo world already complete in {args.out} (seed {args.seed}, {sizes}, '
              f'{args.image_size} px): nothing to do')
        return Path(args.out)
    if status not in ('missing', 'complete', 'foreign'):
        print(f'demo world in {args.out} is {status}: generating it again')
    out = generate_demo_world(args.out, seed=args.seed, num_train=args.num_train,
                              num_val=args.num_val, num_test=args.num_test,
                              image_size=args.image_size, overwrite=args.overwrite,
                              progress=True)
    print(f'demo world written to {out} ({sizes}, {len(DEMO_CLASSES)} classes) '
          f'in {time.time() - start:.1f}s')
    return out


if __name__ == '__main__':
    main()
