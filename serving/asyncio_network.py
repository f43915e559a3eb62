"""httpcore's network backend on asyncio's own transports, for the proxy's upstream pool.

httpcore's default backend under asyncio goes through anyio (a cancel scope and a checkpoint around every read
and write) and sends a request's head and body in two system calls. On loopback each send wakes the receiver, and
that wake-up, not the bytes, is what a send costs: this backend keeps the writes a request makes in one step of
its task and sends them together, on the next read or at the end of the step, whichever comes first. Reads are
buffered by the protocol and paused past `READ_HIGH_WATER` bytes until the reader catches up; a write waits while
the transport's buffer is over its own limit. Failures are httpcore's exceptions, which httpx turns into its
`TransportError`s.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore

READ_HIGH_WATER = 256 << 10  # bytes received and not yet read, past which the socket is not read from
WRITE_NOW = 64 << 10  # pending bytes past which they are sent at once instead of at the end of the step
SocketOption = tuple[int, int, int | bytes] | tuple[int, int, None, int]


class _Connection(asyncio.Protocol):
    """One connection's received bytes, its end, and whether writing should wait."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.ended = False
        self.error: Exception | None = None
        self.reading_paused = False
        self.writing_paused = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > READ_HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self.writing_paused = False
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    async def wait(self, timeout: float | None) -> None:
        """Until something happens on the connection (bytes, its end, room to write); TimeoutError past `timeout`."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """A connection as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, connection: _Connection):
        self._transport = transport
        self._connection = connection
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._send_pending()
        connection = self._connection
        while not connection.received and not connection.ended:
            try:
                await connection.wait(timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout(f"no answer within {timeout} s") from None
        if connection.received:
            data = bytes(connection.received[:max_bytes])
            del connection.received[:max_bytes]
            if connection.reading_paused and len(connection.received) < READ_HIGH_WATER // 2:
                self._transport.resume_reading()
                connection.reading_paused = False
            return data
        if connection.error is not None:
            raise httpcore.ReadError(f"connection lost: {connection.error}")
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._send_pending)
        self._pending.append(buffer)
        self._pending_bytes += len(buffer)
        if self._pending_bytes < WRITE_NOW:
            return
        self._send_pending()
        while self._connection.writing_paused:
            try:
                await self._connection.wait(timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout(f"could not send within {timeout} s") from None

    async def aclose(self) -> None:
        self._send_pending()
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        self._send_pending()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                secure = await loop.start_tls(
                    self._transport, self._connection, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake not done within {timeout} s") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(f"TLS handshake failed: {exc}") from exc
        assert secure is not None
        self._connection.transport = secure
        return AsyncioStream(secure, self._connection)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # httpcore asks before reusing an idle connection: anything now means it is done
            return self._connection.ended or bool(self._connection.received)
        names = {"client_addr": "sockname", "server_addr": "peername", "socket": "socket", "ssl_object": "ssl_object"}
        return self._transport.get_extra_info(names[info]) if info in names else None

    def _send_pending(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            if not self._transport.is_closing():
                self._transport.write(data)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """TCP connections on the running asyncio loop (uvloop's, under the proxy)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port, local_addr=None if local_address is None else (local_address, 0)
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} within {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
