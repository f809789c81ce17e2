"""The picture member of a sample: ``<key>.npy`` (a standard NPY file), ``<key>.png`` (lossless
RGB PNG) or ``<key>.webp`` (lossless RGB WebP); ``wds/index.json`` records which one a shard set
holds. All three give back the frame's exact bytes; plain ``webdataset`` and Hugging Face
``datasets`` decode each of them without project code (docs/output-layout.md has the sizes and
decode times that chose between them)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final

from reacture_convert.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["ENCODINGS", "IMAGE_ENCODINGS", "check_encoding", "decode_image", "encode_image"]

ENCODINGS = ("npy", "png", "webp")
IMAGE_ENCODINGS = ("png", "webp")  # decoded by Pillow; the others are NPY files


def check_encoding(encoding: str) -> None:
    """Raise ConfigError unless ``encoding`` is one of ``ENCODINGS``."""
    if encoding not in ENCODINGS:
        raise ConfigError(
            f"unknown WebDataset encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}"
        )


# PNG: zlib level 6, no optimize pass (smaller by ~3 % at 3-5x the time).
_PNG_LEVEL: Final = 6
# WebP lossless: ``quality`` is the effort in lossless mode and ``method`` the speed/size trade;
# 80 / 4 are Pillow's defaults. Higher methods win < 3 % on game frames at 10-100x the time
# (benchmarks/shard_encodings.py).
_WEBP_QUALITY: Final = 80
_WEBP_METHOD: Final = 4
_PIL_FORMAT: Final = {"png": "PNG", "webp": "WEBP"}


def encode_image(frame: npt.NDArray[np.uint8], encoding: str) -> bytes:
    """A (H, W, 3) uint8 frame as a lossless ``png`` or ``webp`` file, rows in stored order."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(frame))
    buf = io.BytesIO()
    if encoding == "png":
        image.save(buf, format="PNG", compress_level=_PNG_LEVEL, optimize=False)
    elif encoding == "webp":
        image.save(buf, format="WEBP", lossless=True, quality=_WEBP_QUALITY, method=_WEBP_METHOD)
    else:
        raise ConfigError(f"{encoding!r} is not an image encoding ({', '.join(IMAGE_ENCODINGS)})")
    return buf.getvalue()


def decode_image(data: bytes | memoryview, encoding: str) -> npt.NDArray[np.uint8]:
    """The RGB pixels of a ``png`` or ``webp`` member (Pillow, only that format's decoder).
    Raises ``ValueError`` or ``OSError`` when the bytes are not such a picture."""
    import numpy as np
    from PIL import Image

    fmt = _PIL_FORMAT.get(encoding)
    if fmt is None:
        raise ValueError(f"{encoding!r} is not an image encoding ({', '.join(IMAGE_ENCODINGS)})")
    with Image.open(io.BytesIO(data), formats=(fmt,)) as image:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8)
