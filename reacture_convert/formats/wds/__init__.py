"""The WebDataset shard format: ``tar`` (USTAR bytes, and the one reader that groups a tar's
members into samples), ``index`` (``wds/index.json``), ``sample_json`` (the ``.json`` member),
``encodings`` (the picture members) and ``shuffle`` (the bounded shuffle that orders samples).
The writers (``writers.webdataset``) and the readers (``read.shards``, ``read.verify``, the
dataset card) import them from here."""

from reacture_convert.formats.wds.encodings import ENCODINGS, check_encoding
from reacture_convert.formats.wds.index import (
    INDEX,
    WdsIndex,
    WdsSession,
    WdsShard,
    read_index,
)
from reacture_convert.formats.wds.shuffle import shuffle_buffer
from reacture_convert.formats.wds.tar import iter_tar_members, iter_tar_samples, tar_size

__all__ = [
    "ENCODINGS",
    "INDEX",
    "WdsIndex",
    "WdsSession",
    "WdsShard",
    "check_encoding",
    "iter_tar_members",
    "iter_tar_samples",
    "read_index",
    "shuffle_buffer",
    "tar_size",
]
