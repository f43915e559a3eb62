"""The proxy's HTTP/1.1 pool on asyncio's own transports (`serving/asyncio_network.py`), under asyncio's loop and
uvloop's, against real HTTP servers on 127.0.0.1: big bodies both ways on one kept connection, the ways an answer's
body may end, which connections are kept, the pool's limit, failures as httpx's transport errors, TLS."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import ssl
from collections.abc import Awaitable, Callable

import httpx
import pytest
import uvloop
from tierwise.serving.asyncio_network import READ_HIGH_WATER, ConnectionPool, Timeouts
from tierwise.serving.proxy_upstream import Upstream

from tests.helpers import closed_port
from tests.test_grpc_security import self_signed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}
TIMEOUTS = Timeouts(connect=10, read=10, pool=10)


@pytest.fixture(params=list(RUNNERS))
def run(request):
    return RUNNERS[request.param]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and body (by its content-length), or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    return head, await reader.readexactly(length)


def answer(body: bytes, status: str = "200 OK", headers: bytes = b"") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n".encode() + headers + b"\r\n" + body


async def serving(handler: Handler, **kwargs: object) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)


def url_of(server: asyncio.Server, scheme: str = "http", host: str = "127.0.0.1") -> str:
    return f"{scheme}://{host}:{server.sockets[0].getsockname()[1]}"


def pool_of(server: asyncio.Server, max_connections: int = 4, **kwargs: object) -> ConnectionPool:
    return ConnectionPool(httpx.URL(url_of(server)), max_connections, keepalive_s=5.0, **kwargs)  # type: ignore[arg-type]


async def read_whole(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    finally:
        await response.aclose()


def test_big_bodies_cross_whole_both_ways_on_one_kept_connection(run):
    big_answer = bytes(range(256)) * (4 * READ_HIGH_WATER // 256)  # the reader pauses and resumes the socket
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while (request := await read_request(reader)) is not None:
            digest = hashlib.sha256(request[1]).hexdigest().encode()
            writer.write(answer(digest + b"\n" + big_answer))
            await writer.drain()

    async def main() -> list[bytes]:
        server = await serving(handler)
        upstream = Upstream(url_of(server), 10, 4)
        bodies = [b"a" * (4 << 20), b"small"]
        answers = [(await upstream.call("POST", "/v1/messages", body, [])).content for body in bodies]
        await upstream.aclose()
        server.close()
        return answers + bodies

    first, second, *bodies = run(main())
    for answered, body in zip((first, second), bodies, strict=True):
        assert answered == hashlib.sha256(body).hexdigest().encode() + b"\n" + big_answer
    assert len(connections) == 1, "the second request reused the kept connection"


def test_the_request_goes_below_the_base_path_with_its_host_headers_and_length(run):
    heads = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            heads.append(request[0])
            writer.write(answer(b"ok"))

    async def main() -> None:
        server = await serving(handler)
        upstream = Upstream(url_of(server) + "/base/", 10, 4)
        await upstream.call("POST", "/v1/messages?beta=true", b"{}", [("x-api-key", "sk-1")])
        await upstream.call("GET", "/v1/models", b"", [])
        await upstream.aclose()
        server.close()

    run(main())
    post, get = (head.decode().split("\r\n") for head in heads)
    assert post[0] == "POST /base/v1/messages?beta=true HTTP/1.1"
    assert {"x-api-key: sk-1", "content-length: 2"} <= set(post) and post[1].startswith("host: 127.0.0.1:")
    assert get[0] == "GET /base/v1/models HTTP/1.1" and not any(line.startswith("content-length") for line in get)


@pytest.mark.parametrize(
    ("answered", "body", "kept"),
    [
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
            True,
        ),
        (answer(b"by its length"), b"by its length", True),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"after a 100"), b"after a 100", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
        (answer(b"then closed", headers=b"connection: close\r\n"), b"then closed", False),
        (b"HTTP/1.1 200 OK\r\n\r\nup to the end of the connection", b"up to the end of the connection", False),
    ],
    ids=["chunked", "by its length", "after a 100 Continue", "204", "connection close", "to the connection's end"],
)
def test_an_answer_ends_as_http_says_and_its_connection_is_kept_only_when_it_can_be(run, answered, body, kept):
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await read_request(reader) is not None:
            writer.write(answered)
            await writer.drain()
            if b"content-length" not in answered and b"chunked" not in answered and b" 204 " not in answered:
                writer.close()

    async def main() -> list[bytes]:
        server = await serving(handler)
        pool = pool_of(server)
        bodies = [await read_whole(await pool.request("POST", "/", [], b"{}", TIMEOUTS)) for _ in range(2)]
        await pool.aclose()
        server.close()
        return bodies

    assert run(main()) == [body, body]
    assert len(connections) == (1 if kept else 2)


def test_a_compressed_answer_is_read_decoded(run):
    plain = b'{"type": "message"}' * 100

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(gzip.compress(plain), headers=b"content-encoding: gzip\r\n"))

    async def main() -> httpx.Response:
        server = await serving(handler)
        upstream = Upstream(url_of(server), 10, 4)
        response = await upstream.call("POST", "/v1/messages", b"{}", [("accept-encoding", "gzip")])
        await upstream.aclose()
        server.close()
        return response

    response = run(main())
    assert response.content == plain and response.headers["content-encoding"] == "gzip"


def test_a_head_answer_has_no_body_and_a_body_left_unread_closes_its_connection(run):
    connections = []
    big = b"x" * (4 * READ_HIGH_WATER)  # more than the client reads before its reader takes some

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while (request := await read_request(reader)) is not None:
            writer.write(answer(big)[: -len(big) if request[0].startswith(b"HEAD") else None])

    async def main() -> list[bytes]:
        server = await serving(handler)
        pool = pool_of(server)
        head = await read_whole(await pool.request("HEAD", "/", [], b"", TIMEOUTS))
        unread = await pool.request("GET", "/", [], b"", TIMEOUTS)
        await unread.aclose()
        whole = await read_whole(await pool.request("GET", "/", [], b"", TIMEOUTS))
        await pool.aclose()
        server.close()
        return [head, whole]

    assert run(main()) == [b"", big]
    assert len(connections) == 3, "neither the HEAD's connection nor the unread one was reused"


def test_an_answer_that_arrived_whole_but_unread_leaves_its_connection_reading(run):
    big = b"x" * (READ_HIGH_WATER + 40_000)  # its last piece takes the buffer over the mark that pauses reading
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while (request := await read_request(reader)) is not None:
            writer.write(answer(big if request[0].startswith(b"GET /big") else b"ok"))

    async def main() -> bytes:
        server = await serving(handler)
        pool = pool_of(server, max_connections=1)
        unread = await pool.request("GET", "/big", [], b"", TIMEOUTS)
        while len(b"".join(unread.stream._connection.body)) < len(big):  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        await unread.aclose()  # whole, so the connection is kept
        small = await read_whole(await pool.request("GET", "/small", [], b"", Timeouts(connect=10, read=2, pool=10)))
        await pool.aclose()
        server.close()
        return small

    assert run(main()) == b"ok"
    assert len(connections) == 1, "the whole answer's connection was kept and read the next one"


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
        pool = pool_of(server)
        first = await read_whole(await pool.request("GET", "/", [], b"", TIMEOUTS))
        [kept] = pool.idle
        idle.set()
        async with asyncio.timeout(10):
            while kept.usable:  # until the end of the connection reaches the client
                await asyncio.sleep(0.01)
        second = await read_whole(await pool.request("GET", "/", [], b"", TIMEOUTS))
        await pool.aclose()
        server.close()
        return [first, second]

    assert run(main()) == [b"once", b"once"] and len(connections) == 2


def test_a_request_waits_for_a_free_connection_and_a_cancelled_one_frees_its_own(run):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            if request[1] != b"silent":
                writer.write(answer(request[1]))

    async def main() -> list[object]:
        server = await serving(handler)
        pool = pool_of(server, max_connections=1)
        held = await pool.request("POST", "/", [], b"held", TIMEOUTS)
        short = Timeouts(connect=10, read=10, pool=0.2)
        try:
            await pool.request("POST", "/", [], b"waits", short)
        except httpx.PoolTimeout as exc:
            waited: object = type(exc)
        waiting = asyncio.ensure_future(pool.request("POST", "/", [], b"after", TIMEOUTS))
        await asyncio.sleep(0)
        after = await read_whole((await asyncio.gather(read_whole(held), waiting))[1])
        silent = asyncio.ensure_future(pool.request("POST", "/", [], b"silent", TIMEOUTS))
        await asyncio.sleep(0.05)
        silent.cancel()
        await asyncio.gather(silent, return_exceptions=True)
        last = await read_whole(await pool.request("POST", "/", [], b"last", short))
        await pool.aclose()
        server.close()
        return [waited, after, last]

    assert run(main()) == [httpx.PoolTimeout, b"after", b"last"]


def test_failures_are_httpx_transport_errors(run):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"x" * 100)[:-90])
        await writer.drain()
        writer.close()

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"<html>not HTTP</html>\r\n\r\n")
        await writer.drain()

    async def attempt(url: str, timeout_s: float, headers: list[tuple[str, str]]) -> type[Exception]:
        upstream = Upstream(url, timeout_s, 4)
        try:
            await upstream.call("POST", "/v1/messages", b"{}", headers)
        except httpx.TransportError as exc:
            return type(exc)
        finally:
            await upstream.aclose()
        raise AssertionError("the call did not fail")

    async def main() -> list[type[Exception]]:
        servers = [await serving(silent), await serving(cut), await serving(garbled)]
        failures = [
            await attempt(f"http://127.0.0.1:{closed_port()}", 10, []),
            await attempt(url_of(servers[0]), 0.3, []),
            await attempt(url_of(servers[1]), 10, []),
            await attempt(url_of(servers[2]), 10, []),
            await attempt(url_of(servers[1]), 10, [("x-api-key", "sk-1\r\nx-injected: 1")]),
        ]
        for server in servers:
            server.close()
        return failures

    refused, silence, cut_short, not_http, injected = run(main())
    assert issubclass(refused, httpx.ConnectError)
    assert issubclass(silence, httpx.ReadTimeout)
    assert issubclass(cut_short, httpx.RemoteProtocolError)
    assert issubclass(not_http, httpx.RemoteProtocolError)
    assert issubclass(injected, httpx.LocalProtocolError)


def test_tls(run, tmp_path):
    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            writer.write(answer(b"over TLS: " + request[1]))
            await writer.drain()

    async def main() -> list[object]:
        server = await serving(handler, ssl=server_side)
        url = httpx.URL(url_of(server, "https", "localhost"))
        trusting = ConnectionPool(url, 4, 5.0, ssl.create_default_context(cafile=str(cert)))
        body = await read_whole(await trusting.request("POST", "/", [], b"hello", TIMEOUTS))
        untrusting = ConnectionPool(url, 4, 5.0, ssl.create_default_context())
        try:
            await untrusting.request("POST", "/", [], b"hello", TIMEOUTS)
        except httpx.ConnectError as exc:
            refused: object = type(exc)
        await trusting.aclose()
        server.close()
        return [body, refused]

    assert run(main()) == [b"over TLS: hello", httpx.ConnectError]
