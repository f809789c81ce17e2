"""A session name long enough that its shard members' names (``<session>/NNNNNN.<ext>``) pass
100 bytes: USTAR then splits them into its prefix and name fields, and the header checksum
covers both. Such shards must read back everywhere: the shard reader, ``verify`` and Python's
``tarfile``."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.output.naming import is_safe_name
from reacture_convert.read.sources.shards import ShardSource

# 120 characters (the longest allowed is 128): members are named with 132 and 131 bytes
LONG = "reacture_" + "1795600000000" * 8 + "x" * 7


def test_a_session_named_with_120_characters_converts_to_shards_that_read_back(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    assert len(LONG) == 120 and is_safe_name(LONG)
    bundle = make_bundle(n_frames=5, seed=3, prefix=LONG)
    out = tmp_path / "out"
    runner = CliRunner()
    done = runner.invoke(cli, ["convert", str(bundle), "--out", str(out), "--format", "wds"])
    assert done.exit_code == 0, done.output
    checked = runner.invoke(cli, ["verify", str(out)])
    assert checked.exit_code == 0, checked.output

    (shard,) = sorted((out / "wds").glob("*.tar"))
    with tarfile.open(shard) as tf:  # tarfile checks every header's checksum
        members = tf.getmembers()
        names = [m.name for m in members]
        assert names == [f"{LONG}/{i:06d}.{ext}" for i in range(5) for ext in ("json", "npy")]
        assert all(len(n.encode()) > 100 for n in names)
        pictures = [read_npy(tf, m) for m in members[1::2]]

    frames = np.fromfile(next(bundle.glob("*_frames.npy")), np.uint8, offset=129)
    frames = frames.reshape(5, 128, 128, 3)
    assert all(np.array_equal(p, f) for p, f in zip(pictures, frames, strict=True))

    source = ShardSource(str(out))
    assert list(source.sessions) == [LONG]
    (batch,) = list(source.iter_batches(10))
    assert batch["session"] == [LONG] * 5
    assert batch["frame_index"].tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(batch["frame"], frames)


def read_npy(tf: tarfile.TarFile, member: tarfile.TarInfo) -> np.ndarray:
    f = tf.extractfile(member)
    assert f is not None
    return np.lib.format.read_array(io.BytesIO(f.read()))
