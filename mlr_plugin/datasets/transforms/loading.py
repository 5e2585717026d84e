"""Fast image loading with OpenCV, with reduced-resolution JPEG decoding."""
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmpretrain.registry import TRANSFORMS

# JPEG start-of-frame markers (hold the image size); C4/C8/CC are not frames.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                0xCE, 0xCF}
_REDUCED_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                  (2, cv2.IMREAD_REDUCED_COLOR_2))


def _exif_orientation(segment: bytes) -> int:
    """EXIF orientation (1..8) from an APP1 segment's payload; 1 when absent/unreadable."""
    if segment[:6] != b'Exif\x00\x00':
        return 1
    tiff = segment[6:]
    order = {b'II': 'little', b'MM': 'big'}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    count = int.from_bytes(tiff[ifd:ifd + 2], order)
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if len(entry) < 12:
            break
        if int.from_bytes(entry[0:2], order) == 0x0112:  # Orientation, a SHORT
            value = int.from_bytes(entry[8:10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """Displayed (height, width) from a JPEG header without decoding; None if not a JPEG.

    Honours the EXIF orientation as OpenCV's decoder does: orientations 5..8 (a 90 degree
    turn) swap the stored frame's height and width.
    """
    header = jpeg_header(data)
    if header is None:
        return None
    height, width, orientation = header
    return (width, height) if orientation >= 5 else (height, width)


def jpeg_header(data: bytes) -> Optional[Tuple[int, int, int]]:
    """(stored height, stored width, EXIF orientation 1..8) of a JPEG; None if not one."""
    if data[:2] != b'\xff\xd8':
        return None
    pos = 2
    orientation = 1
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], 'big')
        if marker == 0xE1 and orientation == 1:  # APP1: EXIF (comes before the frame)
            orientation = _exif_orientation(data[pos + 4:pos + 2 + length])
        if marker in _SOF_MARKERS:
            height = int.from_bytes(data[pos + 5:pos + 7], 'big')
            width = int.from_bytes(data[pos + 7:pos + 9], 'big')
            return height, width, orientation
        if marker == 0xDA:  # start of scan before any frame header: give up
            return None
        pos += 2 + length
    return None


@TRANSFORMS.register_module()
class LoadImageCV2(BaseTransform):
    """Load ``results['img_path']`` with ``cv2.imdecode`` (bytes via mmengine.fileio).

    A drop-in for ``LoadImageFromFile``: the image is BGR uint8 (H, W, 3) unless
    ``to_rgb=True`` (then let the data preprocessor not swap channels again).

    Reduced decoding: when ``target_size`` is given and a JPEG is at least 2x larger
    than it on both sides, libjpeg decodes directly at 1/2, 1/4 or 1/8 scale (the
    largest factor keeping both sides >= the target), which makes huge JPEGs decode
    several times faster. The later Resize brings it to the exact size.

    Added keys: ``img``, ``img_shape`` (decoded (h, w)), ``ori_shape`` (the file's full
    (h, w)), ``decode_scale`` (1, 2, 4 or 8).

    Args:
        to_rgb (bool): convert BGR -> RGB. Default False (mmpretrain convention).
        target_size (int | (w, h) | None): the size the pipeline resizes to later.
        backend_args (dict | None): mmengine file backend arguments.

    Raises:
        FileNotFoundError: missing file. OSError: unreadable / corrupt image (the
        message names the file).
    """

    def __init__(self, to_rgb: bool = False,
                 target_size: Union[None, int, Sequence[int]] = None,
                 backend_args: Optional[dict] = None):
        self.to_rgb = to_rgb
        if isinstance(target_size, int):
            target_size = (target_size, target_size)
        self.target_size = None if target_size is None else tuple(int(s) for s in target_size)
        self.backend_args = backend_args

    def _decode_flag(self, data: bytes):
        """IMREAD flag and scale for ``data``; full color decode unless much bigger."""
        if self.target_size is None:
            return cv2.IMREAD_COLOR, 1, None
        size = jpeg_size(data)
        if size is None:
            return cv2.IMREAD_COLOR, 1, None
        height, width = size
        target_w, target_h = self.target_size
        for scale, flag in _REDUCED_FLAGS:
            if width // scale >= target_w and height // scale >= target_h:
                return flag, scale, size
        return cv2.IMREAD_COLOR, 1, size

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        data = fileio.get(path, backend_args=self.backend_args)
        flag, scale, size = self._decode_flag(data)
        try:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        except cv2.error as e:
            raise OSError(f'cannot decode image {path}: {e}') from None
        if img is None:
            raise OSError(f'cannot decode image {path} (corrupt or not an image)')
        if self.to_rgb:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = size if size is not None else img.shape[:2]
        results['decode_scale'] = scale
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(to_rgb={self.to_rgb}, '
                f'target_size={self.target_size})')
