"""A forked child (a DataLoader worker, a local Dask process) must not close its parent's
object-store connections.

s3fs talks HTTP through aiohttp on an asyncio loop whose ``epoll`` instance a forked child
shares with its parent. When the child drops the connection pools it inherited (their
``__del__`` closes each pooled connection), asyncio unregisters those sockets from that shared
``epoll``: the parent no longer hears their replies, and its next request on one of them hangs
until a timeout (~15 s, measured: a second ``to_pytorch_dataloader`` over a bucket in one
process, after a first one with 2 workers). So in the child every inherited connector is marked
closed, without closing anything: its sockets are the parent's, and the child opens its own.
"""

from __future__ import annotations

import gc
import os
import sys

__all__: list[str] = []


def _disarm_inherited_connectors() -> None:
    connector = sys.modules.get("aiohttp.connector")
    if connector is None:  # (nothing to disarm: no HTTP pool was ever made)
        return
    base = connector.BaseConnector
    for obj in gc.get_objects():
        # type(), not isinstance(): that asks some objects for __class__, which warns on
        # deprecated ones (torch.distributed's reduce_op, in every DataLoader worker)
        if issubclass(type(obj), base):
            obj._closed = True  # its __del__ then leaves the parent's sockets alone


os.register_at_fork(after_in_child=_disarm_inherited_connectors)
