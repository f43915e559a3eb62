"""The proxy's HTTP/1.1 connections to an upstream, on asyncio's own transports (uvloop's under the proxy).

httpx's transport over httpcore's pool spent about 0.3 ms of CPU on each upstream call on the benchmark's machine
(its request and response models, the pool's anyio locks and checkpoints, h11's pure-Python parsing): more than the
rest of a pass-through request. The proxy needs none of what that buys (HTTP/2, proxies, redirects, cookies,
retries). Here a request's head and body go out in one send; the answer is parsed as it arrives by httptools
(llhttp, the parser uvicorn uses) and handed back as an `httpx.Response` whose stream yields the body, so its
callers, and httpx's decoding of a compressed body, are unchanged. Failures are httpx's `TransportError`s.

A `ConnectionPool` holds at most `max_connections` connections to one origin, each carrying one request at a time;
a request waits for a free one up to its pool timeout. A connection is kept for the next request once its answer
was read to the end, unless the answer said `connection: close` or answered a HEAD; a kept one is reused (the most
recent first) unless it has been idle past `keepalive_s`, or the server ended it or sent something unasked
meanwhile. Body bytes received and not yet read are buffered; past `READ_HIGH_WATER` the socket is not read from
until the reader catches up. A body read only partly, or a request cancelled, closes its connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import cast

import httptools
import httpx

READ_HIGH_WATER = 256 << 10  # bytes received and not yet read, past which the socket is not read from
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_IMPLIED = frozenset({"POST", "PUT", "PATCH"})  # methods sent with a content-length even when it is 0


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait: for a connection to open (TLS included), for each read, for a free connection."""

    connect: float
    read: float
    pool: float


class _Connection(asyncio.Protocol):
    """One connection: its transport, the answer being parsed, and whether it can carry another request."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.ended = False  # the server closed its side, or the connection is lost
        self.lost: Exception | None = None
        self.unasked = False  # bytes arrived while no answer was awaited: never reuse
        self.broken: httpx.TransportError | None = None  # the answer could not be parsed
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._answer(head_only=False)
        self.done = True  # no answer awaited yet

    def _answer(self, head_only: bool) -> None:
        """Expect a new answer (to a HEAD request when `head_only`: its head alone)."""
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.head_only = head_only
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.framed = False  # the body's end is given (content-length, chunked) rather than the connection's end
        self.keep_alive = False
        self.head_done = False
        self.done = False
        self.body: list[bytes] = []
        self.buffered = 0
        self._informational = False

    # --- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        if self.done or self.parser is None:
            self.unasked = True
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.broken = httpx.RemoteProtocolError(f"the upstream's answer is not valid HTTP/1.1: {exc}")
            self.parser = None
            self._close()
        # Paused only while more of the answer is due: a whole answer, read or not, leaves its connection reading.
        paused = self._reading_paused or self.done or not self.usable
        if self.buffered > READ_HIGH_WATER and not paused and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        self.ended = True
        self.lost = self.lost or exc
        if self.head_done and not self.done and not self.framed and exc is None and self.broken is None:
            self.done = True  # a body that ends with the connection
        self._wake()

    # --- httptools callbacks -----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:  # another answer after this one's end: nothing asked for it
            self.unasked = True
            raise httptools.HttpParserError("an answer nobody asked for")

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if status < 200:  # an informational answer (100 Continue): the real one follows
            self._informational = True
            self.reason, self.headers, self.framed = b"", [], False
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive() and not self.head_only
        self.head_done = True
        self.done = self.head_only

    def on_body(self, body: bytes) -> None:
        if not self.done:
            self.body.append(body)
            self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
        else:
            self.done = True

    # --- used by the pool and the body ---------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether the connection can still carry a request, as far as it knows."""
        return not (self.ended or self.unasked or self.broken)

    def send(self, data: Sequence[bytes], head_only: bool) -> None:
        assert self.transport is not None
        self._answer(head_only)
        self.transport.writelines(data)  # one send

    async def head(self, timeout: float) -> None:
        """Until the answer's head is in."""
        while not self.head_done:
            await self._wait(timeout)

    def take_body(self) -> bytes:
        """The body bytes received so far."""
        chunk = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.buffered = 0
        if self._reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        return chunk

    async def more_body(self, timeout: float) -> None:
        """Until more of the body is in, or its end."""
        await self._wait(timeout)

    async def _wait(self, timeout: float) -> None:
        if self.broken is not None:
            raise self.broken
        if self.ended:
            if self.lost is not None:
                raise httpx.ReadError(f"connection to the upstream lost: {self.lost}")
            raise httpx.RemoteProtocolError("the upstream closed the connection before the end of its answer")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer from the upstream within {timeout} s") from None
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; closing it hands the connection back to its pool."""

    def __init__(self, pool: ConnectionPool, connection: _Connection, timeout: float):
        self._pool = pool
        self._connection = connection
        self._timeout = timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        try:
            while True:
                if connection.body:
                    yield connection.take_body()
                elif connection.done:
                    break
                else:
                    await connection.more_body(self._timeout)
        finally:
            if not connection.done:
                self._release()  # left before its end: the connection cannot carry another request

    async def aclose(self) -> None:
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._connection)


class ConnectionPool:
    """HTTP/1.1 connections to one origin (`url`'s scheme, host and port), reused between requests."""

    def __init__(
        self, url: httpx.URL, max_connections: int, keepalive_s: float, ssl_context: ssl.SSLContext | None = None
    ):
        self._host = url.host
        self._port = url.port or _DEFAULT_PORTS[url.scheme]
        self._host_header = f"host: {url.netloc.decode('ascii')}\r\n"
        self._ssl = None if url.scheme != "https" else ssl_context or httpx.create_ssl_context()
        self._keepalive_s = keepalive_s
        self._slots = asyncio.Semaphore(max_connections)
        self.idle: list[_Connection] = []  # the longest idle first
        self._open: set[_Connection] = set()

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], content: bytes, timeouts: Timeouts
    ) -> httpx.Response:
        """Send a request (`target`: its path and query); the answer once its head is in, its body still to be read
        and the answer closed by the caller."""
        data = [_head(method, target, self._host_header, headers, content)]
        if content:
            data.append(content)
        connection = await self._acquire(timeouts)
        try:
            connection.send(data, head_only=method == "HEAD")
            await connection.head(timeouts.read)
        except BaseException:
            self.release(connection)
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_Body(self, connection, timeouts.read),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason},
        )

    def release(self, connection: _Connection) -> None:
        """Take back a connection whose request is over: kept if it can carry another, else closed."""
        if connection.done and connection.keep_alive and connection.usable:
            connection.idle_since = asyncio.get_running_loop().time()
            self.idle.append(connection)
        else:
            self._open.discard(connection)
            connection._close()
        self._slots.release()

    async def aclose(self) -> None:
        for connection in self._open:
            connection._close()
        self._open.clear()
        self.idle.clear()

    async def _acquire(self, timeouts: Timeouts) -> _Connection:
        if self._slots.locked():
            try:
                async with asyncio.timeout(timeouts.pool):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout(f"no free upstream connection within {timeouts.pool} s") from None
        else:
            await self._slots.acquire()  # free: returns at once
        try:
            return self._kept() or await self._connect(timeouts.connect)
        except BaseException:
            self._slots.release()
            raise

    def _kept(self) -> _Connection | None:
        """The most recently kept connection that can still be used; those that cannot are closed."""
        now = asyncio.get_running_loop().time()
        while self.idle:
            connection = self.idle.pop()
            if connection.usable and now - connection.idle_since <= self._keepalive_s:
                return connection
            self._open.discard(connection)
            connection._close()
        return None

    async def _connect(self, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        where = f"{self._host}:{self._port}"
        tls = {} if self._ssl is None else {"ssl": self._ssl, "server_hostname": self._host}
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(_Connection, self._host, self._port, **tls)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {where} within {timeout} s") from None
        except OSError as exc:  # ssl.SSLError included
            raise httpx.ConnectError(f"cannot connect to {where}: {exc}") from exc
        self._open.add(connection)
        return connection


def _head(method: str, target: str, host: str, headers: Sequence[tuple[str, str]], content: bytes) -> bytes:
    """A request's head; a header that would break it (a line break, a NUL, past Latin-1) is refused."""
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if fields.count("\n") != len(headers) or fields.count("\r") != len(headers) or "\0" in fields:
        raise httpx.LocalProtocolError("a header holds a line break or a NUL")
    length = f"content-length: {len(content)}\r\n" if content or method in _BODY_IMPLIED else ""
    try:
        return f"{method} {target} HTTP/1.1\r\n{host}{fields}{length}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a header holds a character outside Latin-1") from None
