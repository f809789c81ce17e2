"""How to write WebDataset shards: ``WdsOptions`` and its defaults.

Shard size. The default target of 256 MiB (about 5,000 frames of ~52 KB) follows WebDataset's
advice (shards of a few hundred MB). A shard that size reads at full sequential throughput from
object stores (each request is large next to its latency), and a dataset still has enough shards
for every worker and rank to get several. ``shard_count`` asks for exactly that many shards
instead, with the samples split as evenly as possible (sizes differ by at most one sample), for
one shard per rank. When it is given it wins: ``shard_size`` is then ignored, and the index
records it as null. A shard exceeds ``shard_size`` only when a single sample is bigger.

Compression. ``compression="gzip"`` stores each shard as ``.tar.gz``: the same tar as one gzip
member flushed after every run of 32 samples (``formats.wds.compression``), at
``compression_level``.
``shard_size`` bounds the tar bytes (before compression), so the same samples go into the
same shards, compressed or not; a compressed shard's file is smaller than the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reacture_convert.errors import ConfigError
from reacture_convert.formats.wds.compression import DEFAULT_LEVEL, check_compression
from reacture_convert.formats.wds.encodings import check_encoding
from reacture_convert.output.naming import is_safe_name

__all__ = ["DEFAULT_SHARD_SIZE", "WdsOptions"]

DEFAULT_SHARD_SIZE = 256 * 2**20


@dataclass(frozen=True)
class WdsOptions:
    """How to shard. ``shard_size`` is a byte limit per shard file; ``shard_count`` (when set,
    it wins over ``shard_size``) asks for exactly that many shards. ``shuffle_seed`` turns on
    the seeded interleave plus a ``shuffle_buffer``-sample buffer; ``shuffle_streams`` bounds
    how many sessions are open at once while interleaving. ``append``: add the sessions to the
    shard set already in ``wds/`` as new shards (``append_shards``) instead of replacing it; it
    does not shape the bytes, so ``effective`` leaves it out. ``compression`` (``none`` or
    ``gzip``) and ``compression_level`` (1-9): see the module doc. ``parts_dir``: where the
    sessions' parts wait for the merge, None for OUT's staging; ``run_convert`` sets a local
    folder when OUT is an object store and the sessions run on this machine
    (``writers.webdataset.scratch``), so the samples cross to the store once, as shards. Like
    ``append`` it does not shape the bytes.

    Messages name an option as the CLI (``--shard-size``) and a job file's ``[wds]`` table
    (``shard_size``) spell it; ``shuffle_buffer`` is a job-file key only."""

    shard_size: int = DEFAULT_SHARD_SIZE
    shard_count: int | None = None
    shuffle_seed: int | None = None
    encoding: str = "npy"
    name: str = "reacture"
    shuffle_buffer: int = 512
    shuffle_streams: int = 64
    append: bool = False
    compression: str = "none"
    compression_level: int = DEFAULT_LEVEL
    parts_dir: str | None = None

    def __post_init__(self) -> None:
        check_encoding(self.encoding)
        check_compression(self.compression, self.compression_level)
        if not is_safe_name(self.name):
            raise ConfigError(
                f"shard name {self.name!r} must be 1-128 characters of A-Z, a-z, 0-9, '_' and '-'"
            )
        if self.shard_size < 1:
            raise ConfigError(
                f"shard size {self.shard_size} is too small (--shard-size, [wds] "
                "shard_size): give at least 1 byte"
            )
        if self.shard_count is not None and self.shard_count < 1:
            raise ConfigError(
                f"shard count {self.shard_count} is too small (--shard-count, "
                "[wds] shard_count): give at least 1"
            )
        if self.shuffle_buffer < 1:
            raise ConfigError(
                f"shuffle buffer {self.shuffle_buffer} is too small ([wds] "
                "shuffle_buffer): give at least 1 sample"
            )
        if self.shuffle_streams < 1:
            raise ConfigError(
                f"shuffle_streams {self.shuffle_streams} is too small: give at least 1 session"
            )

    def effective(self) -> dict[str, Any]:
        """The options that shape the output (ignored ones as None): hashed into the tag and
        recorded in the index (the compression only when the shards are compressed)."""
        shuffled = self.shuffle_seed is not None
        return {
            "name": self.name,
            "encoding": self.encoding,
            "shuffle_seed": self.shuffle_seed,
            "shuffle_buffer": self.shuffle_buffer if shuffled else None,
            "shuffle_streams": self.shuffle_streams if shuffled else None,
            "shard_size": None if self.shard_count is not None else self.shard_size,
            "shard_count": self.shard_count,
            **(
                {"compression": self.compression, "compression_level": self.compression_level}
                if self.compression != "none"
                else {}
            ),
        }
