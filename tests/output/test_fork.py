"""A forked child that drops the object-store connection pool it inherited leaves its parent's
connections working (``output.fork``): the child shares the parent's ``epoll`` instance, and
closing a pooled connection there unregistered the parent's socket, whose next request never
heard its reply and failed over to a new connection after ~15 s (a second DataLoader over a
bucket in one process, after a first one with workers). Real fork, moto's server behind
``LatencyProxy`` (HTTP/1.1 keep-alive, so the connection is pooled)."""

from __future__ import annotations

import gc
import os
import threading

import aiohttp
import s3fs

from reacture_convert.output import fork  # (the hook under test)
from reacture_convert.testing.proxy import LatencyProxy
from tests.helpers.s3 import S3


def test_a_child_dropping_its_inherited_pool_leaves_the_parents_connections_alone(
    moto_s3: S3,
) -> None:
    with LatencyProxy(moto_s3.endpoint) as proxy:
        fs = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs={"endpoint_url": proxy.url})
        fs.pipe_file("datasets/fork/a", b"first")
        assert fs.cat_file("datasets/fork/a") == b"first"  # a connection now waits in the pool

        pid = os.fork()
        if pid == 0:  # the child drops every pool it inherited, as its garbage collector would
            try:
                for obj in gc.get_objects():
                    if isinstance(obj, aiohttp.BaseConnector):
                        obj.__del__()
            finally:
                os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0

        got: list[bytes] = []
        parent = threading.Thread(target=lambda: got.append(fs.cat_file("datasets/fork/a")))
        parent.start()
        parent.join(8)  # without the fix the reply is never heard: ~15 s, then a new connection
        assert not parent.is_alive() and got == [b"first"]


def test_disarming_warns_about_nothing_it_looks_at() -> None:
    """The hook looks at every object in the child; with torch imported, asking some of them
    for their class warned (``torch.distributed.reduce_op`` is deprecated) in every worker."""
    import warnings

    import torch.distributed  # noqa: F401  (its deprecated names are among the objects)

    connector = aiohttp.TCPConnector.__new__(aiohttp.TCPConnector)  # (no loop needed)
    connector._closed = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fork._disarm_inherited_connectors()
    assert [str(w.message) for w in caught] == []
    assert connector._closed
