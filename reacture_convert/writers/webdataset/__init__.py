"""WebDataset shards for streaming training: one sample per frame, in two steps.

1. **Per session** (a task, in parallel): ``SessionSamples`` writes the session's samples as
   *parts*, complete tars that roll over where shards would, from the frames and rows that
   validation reads (``samples``: what a sample holds; ``sample_sink``: the pairing of rows
   with frames; ``sample_json``: the ``.json`` member).
2. **Shards** (the driver): ``write_shards`` plans the shards from the parts' sample sizes
   (``plan``: order, shuffling, rollover), moves a part that is exactly a shard into
   ``wds/<name>-<tag>-NNNNNN.tar`` and copies the others together, then writes
   ``wds/index.json`` (``merge``: visibility; ``index``: the index file). ``append_shards`` adds
   sessions to a set as new shards.

``options`` holds ``WdsOptions`` (shard size or count, shuffling, picture encoding, append);
``tar`` the USTAR bytes, and the one reader that groups a tar's members into samples (the
PyTorch ``ShardDataset`` and ``verify`` use it too); ``sink`` the hashed block writer. The same
inputs and options give byte-identical parts, shards and ``index.json``.
"""

from reacture_convert.writers.webdataset.index import (
    INDEX,
    WdsIndex,
    WdsSession,
    WdsShard,
    read_index,
)
from reacture_convert.writers.webdataset.merge import append_shards, write_shards
from reacture_convert.writers.webdataset.options import DEFAULT_SHARD_SIZE, ENCODINGS, WdsOptions
from reacture_convert.writers.webdataset.plan import shuffle_buffer
from reacture_convert.writers.webdataset.samples import (
    SessionPart,
    SessionSamples,
    SessionTar,
    describe_session_tar,
    write_session_samples,
)
from reacture_convert.writers.webdataset.tar import iter_tar_samples, tar_size

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "ENCODINGS",
    "INDEX",
    "SessionPart",
    "SessionSamples",
    "SessionTar",
    "WdsOptions",
    "WdsShard",
    "WdsSession",
    "WdsIndex",
    "append_shards",
    "write_session_samples",
    "describe_session_tar",
    "write_shards",
    "read_index",
    "shuffle_buffer",
    "iter_tar_samples",
    "tar_size",
]
