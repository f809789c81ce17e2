"""The on-disk formats that writers, readers, ``verify`` and the dataset card share.

``wds``: the WebDataset shards (USTAR tar bytes and their reader, ``wds/index.json``, the
sample ``.json`` member, the picture encodings, the shuffle buffer that orders shards);
``alignment``: the alignment table's schema and frame digests; ``rows``: rebuilding a source
row from the rows table; ``zarr``: the frame codecs of the Zarr arrays.

Writers build these bytes and readers take them apart; neither imports the other, only this
package. It imports ``ingest`` (the row schema, the archive member policy) and ``output``'s
layout and storage, never ``writers``, ``read`` or ``run``.
"""
