"""WebDataset shards for streaming training: one sample per frame, in two steps.

1. **Per session** (a Dask task, in parallel): ``write_session_samples`` writes a *session
   sample tar*, one sample per frame in frame order (``samples``: what a sample holds).
2. **Merge** (the driver): ``write_shards`` reads the session tars sequentially and writes
   ``wds/<name>-<tag>-NNNNNN.tar`` and ``wds/index.json`` (``merge``: order, shuffling,
   rollover and visibility; ``index``: the index file).

``options`` holds ``WdsOptions`` (shard size or count, shuffling, picture encoding); ``tar`` the
USTAR I/O both steps share, and the one reader that groups a tar's members into samples (the
PyTorch ``ShardDataset`` uses it too). The same inputs and options give byte-identical session
tars, shards and ``index.json``.
"""

from reacture_convert.writers.webdataset.index import (
    INDEX,
    WdsIndex,
    WdsSession,
    WdsShard,
    read_index,
)
from reacture_convert.writers.webdataset.merge import shuffle_buffer, write_shards
from reacture_convert.writers.webdataset.options import DEFAULT_SHARD_SIZE, ENCODINGS, WdsOptions
from reacture_convert.writers.webdataset.samples import (
    SessionTar,
    describe_session_tar,
    write_session_samples,
    write_session_tar,
)
from reacture_convert.writers.webdataset.tar import iter_tar_samples, tar_size

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "ENCODINGS",
    "INDEX",
    "SessionTar",
    "WdsOptions",
    "WdsShard",
    "WdsSession",
    "WdsIndex",
    "write_session_samples",
    "write_session_tar",
    "describe_session_tar",
    "write_shards",
    "read_index",
    "shuffle_buffer",
    "iter_tar_samples",
    "tar_size",
]
