"""The picture member of a sample: ``<key>.npy`` (a standard NPY file) or ``<key>.png``
(lossless RGB PNG); ``wds/index.json`` records which one a shard set holds."""

from __future__ import annotations

from reacture_convert.errors import ConfigError

__all__ = ["ENCODINGS", "check_encoding"]

ENCODINGS = ("npy", "png")


def check_encoding(encoding: str) -> None:
    """Raise ConfigError unless ``encoding`` is one of ``ENCODINGS``."""
    if encoding not in ENCODINGS:
        raise ConfigError(
            f"unknown WebDataset encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}"
        )
