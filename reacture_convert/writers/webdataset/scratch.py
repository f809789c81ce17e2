"""Where the sessions' parts wait for the shard merge when OUT is an object store (and, on S3,
where the sessions are staged: ``Output.stage_dir``, uploaded by each commit).

A shard's name holds a tag over every session's samples, so no shard can be named, or
uploaded under its name, before the last session is written. Staged in the bucket, a session's
samples would cross to the store three times: its parts uploaded, copied server-side into
``wds/`` (there is no rename) or read back into a shard of several parts. When the sessions run
on this machine (every scheduler but a remote Dask cluster, whose workers share no disk with
the driver) they are written to a local folder instead, and the merge uploads each shard once,
straight to its name: what "convert locally, then upload" does, in one command.

The folder is ``<tempdir>/reacture-convert-parts-<uid>/<OUT's digest>-<pid>/`` (``TMPDIR`` moves
it): one per run, since the same URL can name two stores (an ``s3://`` bucket on two endpoints)
whose runs each hold their own lock. A run removes it when it ends, and when it starts, the
folders of earlier runs into the same URL whose processes are gone (a killed run's leftovers).
When the temporary folder's filesystem has less free space than the bundles take (plus a
margin), the parts stay in OUT's staging.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Final

from reacture_convert.output.storage import Output
from reacture_convert.writers.webdataset.options import WdsOptions

__all__ = ["MARGIN", "folder_of", "parts_dir", "parts_output"]

MARGIN: Final = 1 << 30  # free space kept besides the parts (bytes)


def folder_of(out: Output, pid: int | None = None) -> str:
    """The local folder of the parts of process ``pid``'s run into ``out`` (default: this
    process's), under a folder per user (another user's would not be ours to write)."""
    return f"{_base(out)}-{os.getpid() if pid is None else pid}"


def _base(out: Output) -> str:
    digest = hashlib.sha256(out.url.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"reacture-convert-parts-{os.getuid()}", digest)


def _leftovers(out: Output) -> list[str]:
    """The parts folders of earlier runs into ``out`` whose processes are gone."""
    found = []
    for path in glob.glob(f"{glob.escape(_base(out))}-*"):
        pid = path.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            found.append(path)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # (another user's process with that number)
        return True
    return True


def _room(folder: str, need: int) -> bool:
    return shutil.disk_usage(folder).free >= need + MARGIN


@contextlib.contextmanager
def parts_dir(out: Output, local_tasks: bool, nbytes: int) -> Iterator[str | None]:
    """The local folder for the parts of a run into ``out`` (call while holding OUT's lock),
    or None: OUT is local, the tasks run elsewhere, the folder cannot be made, or the ``nbytes``
    the bundles take do not fit. The folder is empty on entry and removed on exit."""
    if out.is_local or not local_tasks:
        yield None
        return
    folder = folder_of(out)
    for leftover in [folder, *_leftovers(out)]:  # killed runs'
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # (a file in the way, no permission: the store's staging will do)
        yield None
        return
    if not _room(folder, nbytes):
        shutil.rmtree(folder, ignore_errors=True)
        yield None
        return
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def parts_output(out: Output, options: WdsOptions) -> Output:
    """Where the sessions' parts are written and the merge reads them: ``out``, or the local
    ``options.parts_dir``."""
    return out if options.parts_dir is None else Output(options.parts_dir)
