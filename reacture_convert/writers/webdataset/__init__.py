"""WebDataset shards for streaming training: one sample per frame, in two steps.

1. **Per session** (a task, in parallel): ``SessionSamples`` writes the session's samples as
   *parts*, complete tars that roll over where shards would, from the frames and rows that
   validation reads (``samples``: what a sample holds; ``sample_sink``: the pairing of rows
   with frames and the ``.json`` members built from the scanned rows).
2. **Shards** (the driver): ``write_shards`` plans the shards from the parts' sample sizes
   (``plan``: order, shuffling, rollover), moves a part that is exactly a shard into
   ``wds/<name>-<tag>-NNNNNN.tar`` and copies the others together, then writes
   ``wds/index.json`` (``merge``: visibility). ``append_shards`` adds sessions to a set as new
   shards.

``options`` holds ``WdsOptions`` (shard size or count, shuffling, picture encoding, append);
``sink`` the hashed block writer. The format itself (the tar bytes and their reader, the index,
the sample ``.json``, the encodings, the shuffle buffer) is ``formats.wds``, shared with the
readers. The same inputs and options give byte-identical parts, shards and ``index.json``.
"""

from reacture_convert.writers.webdataset.merge import append_shards, write_shards
from reacture_convert.writers.webdataset.options import DEFAULT_SHARD_SIZE, WdsOptions
from reacture_convert.writers.webdataset.samples import (
    SessionPart,
    SessionSamples,
    SessionTar,
    describe_session_tar,
    write_session_samples,
)

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "SessionPart",
    "SessionSamples",
    "SessionTar",
    "WdsOptions",
    "append_shards",
    "write_session_samples",
    "describe_session_tar",
    "write_shards",
]
