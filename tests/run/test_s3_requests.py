"""The requests a conversion into a bucket makes besides its data (#30): each is a round trip
to the store, and most of them come one after another (the lease, the catalog, the checks, the
commit, the card), so their number is the time a bucket OUT takes over a local one.

moto's server behind ``LatencyProxy`` (no delay: it only counts). Bounds below what the code
made before: a HEAD before every whole read (s3fs asks for the size first), an existence
check as a HEAD and a listing, OUT looked at three ways twice, the catalog's log listed twice,
the card's files read one after another. A re-run of an unchanged dataset writes nothing but
its lease.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.s3 import S3

SPEC = BundleSpec(prefix="reacture_1795600000077", seed=77, n_frames=40)


def _convert(bundle: Path, endpoint: str, out: str) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "convert",
            str(bundle),
            "--out",
            out,
            "--format",
            "zarr",
            "--scheduler",
            "sync",
            "--quiet",
            "--storage-option",
            f"client_kwargs.endpoint_url={endpoint}",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output


def _metadata(log: list[tuple[float, str, str, int]]) -> Counter[str]:
    """Requests by method, the data's left out: the session's objects staged and copied."""
    return Counter(
        m
        for _, m, path, _ in log
        if not (
            m == "PUT"
            and ("/.staging/" in path or "/zarr/" in path or "/rows/" in path or "/frames/" in path)
        )
    )


def test_a_bucket_output_takes_few_metadata_requests(moto_s3: S3, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", SPEC)
    with LatencyProxy(moto_s3.endpoint) as proxy:
        _convert(bundle, proxy.url, "s3://datasets/requests/v1")
        first = _metadata(proxy.traffic.log)
        proxy.traffic.reset()
        _convert(bundle, proxy.url, "s3://datasets/requests/v1")
        again = list(proxy.traffic.log)
    # before: 19 HEAD, 27 GET (48 requests besides the data)
    assert first["HEAD"] <= 12, first
    assert sum(first.values()) <= 36, first
    # before: 13 HEAD, 16 GET, 31 in all
    rerun = Counter(m for _, m, _, _ in again)
    assert rerun["HEAD"] <= 6, rerun
    assert sum(rerun.values()) <= 22, rerun
    writes = [(m, p) for _, m, p, _ in again if m in ("PUT", "POST", "DELETE")]
    assert writes == [
        ("PUT", "/datasets/requests/v1/.lock"),
        ("DELETE", "/datasets/requests/v1/.lock"),
    ]


def test_the_requests_before_the_first_write_take_few_round_trips(
    moto_s3: S3, tmp_path: Path
) -> None:
    """What must be known before a session is written (OUT, the lease, the interrupted run's
    note, the catalog and its log, the removal note, staging) goes out in few rounds: the
    requests of a round complete together, one round trip (100 ms here) apart from the next:
    OUT's check, the lease, the rest. Before: 10 rounds, one request after another; then 4
    (OUT checked by the command line for its usage error, then again by the library)."""
    bundle = write_bundle(tmp_path / "bundle", SPEC)
    with LatencyProxy(moto_s3.endpoint, 0.1) as proxy:
        _convert(bundle, proxy.url, "s3://datasets/requests/rounds")
        log = list(proxy.traffic.log)
    # the first request about a session's outputs: its writes (or, staged on local disk, its
    # commit's look at their destinations)
    first = next(
        i for i, (_, _, p, _) in enumerate(log) if any(f in p for f in ("/zarr/", "zarr%2F"))
    )
    done = [t for t, *_ in log[:first]]
    rounds = 1 + sum(1 for a, b in zip(done, done[1:], strict=False) if b - a > 0.05)
    assert rounds <= 3, log[:first]
