"""The proxy's upstream pool on asyncio's own transports (`serving/asyncio_network.py`), under asyncio's loop and
uvloop's, against real HTTP servers on 127.0.0.1: big bodies both ways on one kept connection, a connection the
server closed while idle, failures as httpx's transport errors, TLS."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Awaitable, Callable

import httpcore
import httpx
import pytest
import uvloop
from tierwise.serving.asyncio_network import READ_HIGH_WATER, WRITE_NOW, AsyncioBackend
from tierwise.serving.proxy_upstream import Upstream

from tests.helpers import closed_port
from tests.test_grpc_security import self_signed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=list(RUNNERS))
def run(request):
    return RUNNERS[request.param]


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's body (by its content-length), or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    return await reader.readexactly(length)


def answer(body: bytes, status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body


async def serving(handler: Handler, **kwargs: object) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)


def port_of(server: asyncio.Server) -> int:
    return server.sockets[0].getsockname()[1]


def test_big_bodies_cross_whole_both_ways_on_one_kept_connection(run):
    big_answer = bytes(range(256)) * (4 * READ_HIGH_WATER // 256)  # the reader pauses and resumes the socket
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while (body := await read_request(reader)) is not None:
            digest = hashlib.sha256(body).hexdigest().encode()
            writer.write(answer(digest + b"\n" + big_answer))
            await writer.drain()

    async def main() -> list[bytes]:
        server = await serving(handler)
        upstream = Upstream(f"http://127.0.0.1:{port_of(server)}", 10, 4)
        bodies = [b"a" * (2 * WRITE_NOW + 1), b"small"]  # one sent at once, one at the end of the step
        answers = [(await upstream.call("POST", "/v1/messages", body, [])).content for body in bodies]
        await upstream.aclose()
        server.close()
        return answers + bodies

    first, second, *bodies = run(main())
    for answered, body in zip((first, second), bodies, strict=True):
        assert answered == hashlib.sha256(body).hexdigest().encode() + b"\n" + big_answer
    assert len(connections) == 1, "the second request reused the kept connection"


def test_a_connection_the_server_closed_while_idle_is_not_reused(run):
    connections = []

    async def main() -> list[bytes]:
        idle = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)
            await read_request(reader)
            writer.write(answer(b"once"))
            await writer.drain()
            await idle.wait()
            writer.close()  # no `connection: close`: the client learns only from the end of the connection

        server = await serving(handler)
        pool = httpcore.AsyncConnectionPool(network_backend=AsyncioBackend())
        url = f"http://127.0.0.1:{port_of(server)}/"
        first = await pool.request("GET", url)
        [kept] = pool.connections
        idle.set()
        async with asyncio.timeout(10):
            while not kept.has_expired():  # until the end of the connection reaches the client
                await asyncio.sleep(0.01)
        second = await pool.request("GET", url)
        await pool.aclose()
        server.close()
        return [first.content, second.content]

    assert run(main()) == [b"once", b"once"] and len(connections) == 2


def test_failures_are_httpx_transport_errors(run):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"x" * 100)[:-90])
        await writer.drain()
        writer.close()

    async def attempt(url: str, timeout_s: float) -> type[Exception]:
        upstream = Upstream(url, timeout_s, 4)
        try:
            await upstream.call("POST", "/v1/messages", b"{}", [])
        except httpx.TransportError as exc:
            return type(exc)
        finally:
            await upstream.aclose()
        raise AssertionError("the call did not fail")

    async def main() -> list[type[Exception]]:
        servers = [await serving(silent), await serving(cut)]
        failures = [
            await attempt(f"http://127.0.0.1:{closed_port()}", 10),
            await attempt(f"http://127.0.0.1:{port_of(servers[0])}", 0.3),
            await attempt(f"http://127.0.0.1:{port_of(servers[1])}", 10),
        ]
        for server in servers:
            server.close()
        return failures

    refused, silence, cut_short = run(main())
    assert issubclass(refused, httpx.ConnectError)
    assert issubclass(silence, httpx.ReadTimeout)
    assert issubclass(cut_short, httpx.RemoteProtocolError)


def test_tls(run, tmp_path):
    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (body := await read_request(reader)) is not None:
            writer.write(answer(b"over TLS: " + body))
            await writer.drain()

    async def main() -> tuple[bytes, bool]:
        server = await serving(handler, ssl=server_side)
        pool = httpcore.AsyncConnectionPool(ssl_context=client_side, network_backend=AsyncioBackend())
        async with pool.stream("POST", f"https://localhost:{port_of(server)}/", content=b"hello") as response:
            body = await response.aread()
            encrypted = response.extensions["network_stream"].get_extra_info("ssl_object") is not None
        await pool.aclose()
        server.close()
        return body, encrypted

    assert run(main()) == (b"over TLS: hello", True)
