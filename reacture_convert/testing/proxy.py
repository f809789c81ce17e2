"""A small HTTP proxy in front of an object store, for tests and benchmarks: it adds a fixed
latency to every request (as a cloud bucket's round trip does) and counts the requests, the
response bytes and the request body bytes by method and path, and the most requests it held at
once, so that a test can say what a reader fetched or how many uploads overlapped. ``refuse``, when
set, is asked about every request (method, path): those it says yes to are answered as S3 does a
write its policy denies (403 ``AccessDenied``), without reaching the store.

    with LatencyProxy("http://127.0.0.1:5000", delay=0.03) as proxy:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": proxy.url})

Plain HTTP/1.1 (what s3fs speaks to a local S3-compatible server); one thread per connection.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["LatencyProxy", "Traffic"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


@dataclass
class Traffic:
    """What went through the proxy: requests per (method, path), response body ``bytes``,
    request body bytes (``sent``), requests being served now (until their responses go out) and
    the most at once (``peak``);
    ``log``: every request in the order answered, as (seconds since the proxy started or was
    last reset, method, path with its query, status)."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes: int = 0
    sent: int = 0
    active: int = 0
    peak: int = 0
    log: list[tuple[float, str, str, int]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, method: str, target: str, size: int, sent: int = 0, status: int = 200) -> None:
        """One request answered: ``target`` its path and query (counted by path)."""
        with self.lock:
            self.requests[(method, target.split("?", 1)[0])] += 1
            self.log.append((time.monotonic() - self.started, method, target, status))
            self.bytes += size
            self.sent += sent

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1

    def by_method(self) -> dict[str, int]:
        """Requests per HTTP method."""
        with self.lock:
            counts: Counter[str] = Counter()
            for (m, _), n in self.requests.items():
                counts[m] += n
            return dict(counts)

    def gets(self, contains: str = "") -> int:
        """GET requests whose path contains ``contains``."""
        with self.lock:
            return sum(n for (m, p), n in self.requests.items() if m == "GET" and contains in p)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.log.clear()
            self.started = time.monotonic()
            self.bytes = self.sent = self.peak = 0


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: 32 clients connecting at once overflowed it,
    # and the dropped connections waited for the client's SYN to be sent again (~1 s)
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a reader done with a stream) is no error here."""


class LatencyProxy:
    """A proxy on 127.0.0.1 (a free port) to ``upstream``, adding ``delay`` seconds to every
    request; ``url`` is its endpoint, ``traffic`` what passed; ``refuse(method, path)``, when
    set, picks the requests denied (403 ``AccessDenied``). A context manager."""

    def __init__(
        self,
        upstream: str,
        delay: float = 0.0,
        refuse: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.delay = delay
        self.refuse = refuse
        self.traffic = Traffic()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out as two writes: with Nagle's algorithm the body waited
            # for the client's delayed ACK, 40 ms more than ``delay`` on every response
            disable_nagle_algorithm = True
            _in_flight = False  # counted in ``traffic.active`` (``_answered`` ends it)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _forward(self) -> None:
                proxy.traffic.enter()
                self._in_flight = True
                try:
                    self._relay()
                finally:
                    self._answered()

            def _answered(self) -> None:
                """The request no longer counts as in flight: called before its response is
                sent (a client that has it all may send its next request before this thread
                runs again, which would count one too many), else when the handler ends."""
                if self._in_flight:
                    self._in_flight = False
                    proxy.traffic.leave()

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                time.sleep(proxy.delay)
                refuse = proxy.refuse
                if refuse is not None and refuse(self.command, self.path.split("?", 1)[0]):
                    self._deny()
                    return
                up = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port, timeout=60
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    up.request(self.command, self.path, body=body, headers=headers)
                    reply = up.getresponse()
                    data = reply.read()
                finally:
                    up.close()
                proxy.traffic.count(self.command, self.path, len(data), length, reply.status)
                self.send_response(reply.status, reply.reason)
                head = self.command == "HEAD"  # its Content-Length is the object's
                for key, value in reply.getheaders():
                    if key.lower() not in _HOP and (head or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self._answered()
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _deny(self) -> None:
                proxy.traffic.count(self.command, self.path, 0, status=403)
                self.send_response(403, "Forbidden")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_DENIED)))
                self._answered()
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(_DENIED)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815

        return Handler
