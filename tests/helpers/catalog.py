"""Catalog rows for the catalog's tests: one by hand, and Hypothesis' strategy of them."""

from __future__ import annotations

from hypothesis import strategies as st

from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.status import LIVE, Status


def entry(
    source: str, status: str, hashes: str = "h1", prefix: str = "reacture_1", **kw: object
) -> CatalogEntry:
    """A catalog row; ``hashes`` stands for the five sha256 values (one letter per content)."""
    outputs = (f"zarr/{prefix}.zarr",) if status in LIVE else ()
    return CatalogEntry(
        session=prefix,
        source=source,
        prefix=prefix,
        status=status,
        hashes={"frames.npy": hashes},
        outputs=outputs,
        **kw,
    )  # type: ignore[arg-type]


entries_strategy = st.builds(
    entry,
    source=st.sampled_from(["a", "b", "c"]),
    status=st.sampled_from(list(Status)),
    hashes=st.sampled_from(["h1", "h2", "h3"]),
    prefix=st.sampled_from(["reacture_1", "reacture_2"]),
)


def forget_digests(out: str) -> None:
    """Rewrite OUT's catalog as a version before the ``files`` column wrote it: no digests (so
    ``verify`` checks the outputs by decoding them only)."""
    from dataclasses import replace

    from reacture_convert.output.catalog import read_catalog, write_catalog
    from reacture_convert.output.storage import Output

    target = Output(out)
    write_catalog(target, [replace(e, files=()) for e in read_catalog(target)])
