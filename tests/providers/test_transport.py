"""LeanTransport against a raw loopback server: framings, keep-alive, stale connections, faults."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from polyroute.providers import HttpPool
from polyroute.providers._transport import LeanTransport, _Connection

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Answers each request with the next scripted reply; counts connections."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/x"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                await self.replies.pop(0)(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def fixed(raw: bytes, *, close: bool = False) -> Reply:
    async def reply(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return reply


async def _trickled(writer: asyncio.StreamWriter, parts: Iterable[bytes], gap_s: float) -> None:
    """A chunked reply whose parts are sent one at a time, ``gap_s`` apart."""
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    for part in parts:
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()
        await asyncio.sleep(gap_s)
    writer.write(b"0\r\n\r\n")
    await writer.drain()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with RawServer() as s:
        yield s


@pytest.fixture
async def lean() -> AsyncIterator[LeanTransport]:
    transport = LeanTransport()
    yield transport
    await transport.aclose()


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=LeanTransport(), timeout=2) as c:
        yield c


async def test_keep_alive_reuses_one_connection(
    server: RawServer, client: httpx2.AsyncClient
) -> None:
    server.replies = [fixed(OK) for _ in range(3)]
    for _ in range(3):
        r = await client.post(server.url, json={"a": 1})
        assert (r.status_code, r.text, r.reason_phrase) == (200, "ok", "OK")
    assert server.connections == 1


async def test_chunked_with_trailers_close_delimited_and_no_body(
    server: RawServer, client: httpx2.AsyncClient
) -> None:
    server.replies = [
        fixed(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: t\r\n\r\n"
        ),
        fixed(b"HTTP/1.1 204 No Content\r\n\r\n"),
        fixed(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end", close=True),
    ]
    assert (await client.get(server.url)).text == "abcde"
    assert (await client.get(server.url)).status_code == 204
    assert (await client.get(server.url)).text == "until the end"
    assert server.connections == 1  # the close came last
    server.replies = [fixed(OK)]
    assert (await client.get(server.url)).text == "ok"
    assert server.connections == 2


async def test_streamed_body_arrives_in_parts(
    server: RawServer, client: httpx2.AsyncClient
) -> None:
    async def slow(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _trickled(writer, (b"data: 1\n\n", b"data: 2\n\n"), 0.05)

    server.replies = [slow]
    async with client.stream("GET", server.url) as r:
        lines = [line async for line in r.aiter_lines() if line]
    assert lines == ["data: 1", "data: 2"]


async def test_an_abandoned_body_closes_its_connection(
    server: RawServer, client: httpx2.AsyncClient
) -> None:
    big = b"HTTP/1.1 200 OK\r\ncontent-length: 200000\r\n\r\n" + b"x" * 200000
    server.replies = [fixed(big), fixed(OK)]
    async with client.stream("GET", server.url) as r:
        async for _ in r.aiter_bytes():
            break
    assert (await client.get(server.url)).text == "ok"
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    server: RawServer, client: httpx2.AsyncClient
) -> None:
    server.replies = [fixed(OK, close=True)]  # answers, then closes the kept-alive socket
    await client.get(server.url)
    await asyncio.sleep(0.05)
    server.replies = [fixed(OK)]
    assert (await client.get(server.url)).text == "ok"
    assert server.connections == 2


async def test_faults_are_httpx2_errors(server: RawServer, client: httpx2.AsyncClient) -> None:
    async def hang(_: asyncio.StreamReader, __: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1)

    server.replies = [hang]
    with pytest.raises(httpx2.ReadTimeout):
        await client.get(server.url, timeout=0.1)
    server.replies = [fixed(b"SPDY/9 nope\r\n\r\n")]
    with pytest.raises(httpx2.RemoteProtocolError, match="bad status line"):
        await client.get(server.url)
    server.replies = [fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", close=True)]
    with pytest.raises(httpx2.RemoteProtocolError, match="broken off"):
        await client.get(server.url)
    server.replies = [fixed(b"", close=True)]  # closed without a response: tried once more
    with pytest.raises(httpx2.RemoteProtocolError, match="without a response"):
        await client.get(server.url)
    with pytest.raises(httpx2.ConnectError):
        await client.get("http://127.0.0.1:9/x")
    with pytest.raises(httpx2.UnsupportedProtocol):
        await LeanTransport().handle_async_request(httpx2.Request("GET", "ftp://127.0.0.1/x"))


async def test_the_pool_uses_it_unless_a_proxy_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    pool = HttpPool()
    assert isinstance(pool.lean, LeanTransport)  # calls go straight to it
    assert pool.client._transport is pool.lean  # and httpx2's API, when asked for, runs on it
    await pool.aclose()
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    pool = HttpPool()
    assert pool.lean is None
    assert not isinstance(pool.client._transport, LeanTransport)
    await pool.aclose()
    mock = httpx2.MockTransport(lambda _: httpx2.Response(200))
    pool = HttpPool(transport=mock)  # the test seam: calls go through a client on it
    assert pool.lean is None
    assert pool.client._transport is mock
    await pool.aclose()


LIMITS: dict[str, float | None] = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


async def test_open_directly_reads_heads_bodies_and_keeps_the_connection(
    server: RawServer, lean: LeanTransport
) -> None:
    url = httpx2.URL(server.url)
    big = b"y" * 100_000  # over one read: read in parts
    server.replies = [
        fixed(b"HTTP/1.1 201 Created\r\nX-Id: a\r\nx-id: b\r\ncontent-length: 2\r\n\r\nok"),
        fixed(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(big), big)),
        fixed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
    ]
    r = await lean.open("POST", url, [("content-type", "text/plain")], b"body", LIMITS)
    assert (r.status, r.reason, r.headers["x-id"]) == (201, b"Created", "a, b")
    assert r.items[:2] == [("X-Id", "a"), ("x-id", "b")]
    assert await r.read() == b"ok"
    assert await r.read() == b"ok"  # kept
    r = await lean.open("GET", url, [], b"", LIMITS)
    assert await r.read() == big
    r = await lean.open("GET", url, [], b"", LIMITS)
    assert [part async for part in r.aiter_bytes()] == [b"hi"]
    assert server.connections == 1


async def test_open_directly_raises_the_same_httpx2_errors(
    server: RawServer, lean: LeanTransport
) -> None:
    url = httpx2.URL(server.url)
    server.replies = [fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", close=True)]
    r = await lean.open("GET", url, [], b"", LIMITS)
    with pytest.raises(httpx2.RemoteProtocolError, match="broken off"):
        await r.read()

    async def stall(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nsh")
        await writer.drain()
        await asyncio.sleep(1)

    server.replies = [stall]
    r = await lean.open("GET", url, [], b"", {**LIMITS, "read": 0.1})
    with pytest.raises(httpx2.ReadTimeout, match="body"):
        await r.read()
    with pytest.raises(httpx2.UnsupportedProtocol):
        await lean.open("GET", httpx2.URL("ftp://127.0.0.1/x"), [], b"", LIMITS)
    with pytest.raises(httpx2.ConnectError):
        await lean.open("GET", httpx2.URL("http://127.0.0.1:9/x"), [], b"", LIMITS)


async def test_a_response_head_over_64_kib_is_refused(
    server: RawServer, client: httpx2.AsyncClient
) -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + b"x-junk: " + b"j" * 70_000 + b"\r\n\r\n"
    server.replies = [fixed(huge)]
    with pytest.raises(httpx2.RemoteProtocolError, match="head too large"):
        await client.get(server.url)


async def test_a_peer_that_stops_reading_is_a_write_timeout(client: httpx2.AsyncClient) -> None:
    async def deaf(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2)
        writer.close()

    server = await asyncio.start_server(deaf, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(httpx2.WriteTimeout):
            await client.post(f"http://127.0.0.1:{port}/x", content=b"z" * 50_000_000, timeout=0.2)
    finally:
        server.close()


async def test_an_empty_post_says_its_length_and_a_get_does_not() -> None:
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
            except asyncio.IncompleteReadError:
                break
            writer.write(OK)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = httpx2.URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x")
    lean = LeanTransport()
    try:
        for method in ("POST", "GET"):
            await (await lean.open(method, url, [], b"", LIMITS)).read()
    finally:
        await lean.aclose()
        server.close()
    post, get = (h.decode().lower() for h in heads)
    assert "content-length: 0\r\n" in post
    assert "content-length" not in get


async def test_a_reused_head_frames_each_body_and_other_urls_and_headers_get_theirs() -> None:
    """Heads are serialized once per (method, URL, header tuple) reused; each request still
    says its own length, and another URL or header set (even past the cache's bound) its own."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = [
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if b"length:" in line
            ]
            requests.append(head + await reader.readexactly(length[0] if length else 0))
            writer.write(OK)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    url, other = httpx2.URL(base + "/x"), httpx2.URL(base + "/y?q=1")
    headers = (("user-agent", "t"), ("content-type", "application/json"))
    lean = LeanTransport()
    sent: list[tuple[httpx2.URL, tuple[tuple[str, str], ...], bytes]] = [
        (url, headers, b'{"a":1}'),
        (url, headers, b'{"a":12}'),
        (other, headers, b""),
        *((url, (("x-n", str(i)),), b"{}") for i in range(70)),
        (url, headers, b"[]"),
    ]
    try:
        for u, h, body in sent:
            await (await lean.open("POST", u, h, body, LIMITS)).read()
    finally:
        await lean.aclose()
        server.close()
    host = base.removeprefix("http://")
    for (u, h, body), got in zip(sent, requests, strict=True):
        lines = [f"POST {u.raw_path.decode()} HTTP/1.1", f"host: {host}"]
        lines += [f"{n}: {v}" for n, v in h] + [f"content-length: {len(body)}"]
        assert got == ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_a_body_read_to_its_end_frees_its_connection_even_if_closed_at_its_last_part(
    server: RawServer, lean: LeanTransport
) -> None:
    """A stream decoder stops at its end marker, before asking past the body's last part:
    the connection still goes back to the pool, whatever frames the body."""
    sse = b"data: 1\n\ndata: [DONE]\n\n"
    url = httpx2.URL(server.url)
    server.replies = [
        fixed(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(sse), sse)),
        fixed(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (len(sse), sse)
        ),
        fixed(OK),
    ]
    for _ in range(2):
        response = await lean.open("GET", url, (), b"", {})
        parts = response.aiter_bytes()
        assert await anext(parts) == sse
        await response.aclose()  # not resumed past its last part
        await parts.aclose()
    again = await lean.open("GET", url, (), b"", {})
    assert await again.read() == b"ok"
    assert server.connections == 1


async def test_a_chunked_body_whose_end_has_not_arrived_is_dropped_without_waiting(
    server: RawServer, lean: LeanTransport
) -> None:
    async def unended(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(5)  # the last chunk never comes in time

    url = httpx2.URL(server.url)
    server.replies = [unended, fixed(OK)]
    response = await lean.open("GET", url, (), b"", {})
    parts = response.aiter_bytes()
    assert await anext(parts) == b"hello"
    async with asyncio.timeout(1):  # it does not wait for the rest
        await response.aclose()
    assert await anext(parts, None) is None  # nothing more is read from a freed body
    again = await lean.open("GET", url, (), b"", {})
    assert await again.read() == b"ok"
    assert server.connections == 2


async def test_a_read_that_must_wait_times_out_and_one_that_need_not_sets_no_timer(
    server: RawServer, lean: LeanTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def head_then_stall(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await writer.drain()
        await asyncio.sleep(1)

    url = httpx2.URL(server.url)
    timers = 0
    timeout = asyncio.timeout

    def counted(delay: float | None) -> asyncio.Timeout:
        nonlocal timers
        timers += 1
        return timeout(delay)

    monkeypatch.setattr(asyncio, "timeout", counted)
    server.replies = [fixed(OK), fixed(OK), head_then_stall]
    response = await lean.open("GET", url, (), b"", {"read": 0.1})
    assert await response.read() == b"ok"  # connecting has its timer
    timers = 0
    response = await lean.open("GET", url, (), b"", {"read": 0.1})
    assert await response.read() == b"ok"
    assert timers == 0  # the head's wait has a plain timer (below); the body came with it
    response = await lean.open("GET", url, (), b"", {"read": 0.1})
    with pytest.raises(httpx2.ReadTimeout, match="body"):
        await response.read()  # the rest of the body never comes


async def test_a_head_that_comes_as_its_timer_fires_is_a_timeout_and_its_connection_goes(
    server: RawServer, lean: LeanTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head's timer spends the connection: if it fires in the turn the head arrives,
    the head is parsed but the wait has timed out, so the call is a timeout."""
    parsed = _Connection.on_headers_complete

    def late(self: _Connection) -> None:
        parsed(self)
        self.expire()

    monkeypatch.setattr(_Connection, "on_headers_complete", late)
    server.replies = [fixed(OK), fixed(OK)]
    url = httpx2.URL(server.url)
    with pytest.raises(httpx2.ReadTimeout, match="waiting for the response"):
        await lean.open("GET", url, (), b"", {"read": 5})
    monkeypatch.undo()
    response = await lean.open("GET", url, (), b"", {"read": 5})
    assert await response.read() == b"ok"
    assert server.connections == 2  # the spent connection was closed, not reused


async def test_an_informational_reply_before_the_response_is_skipped(
    server: RawServer, lean: LeanTransport
) -> None:
    server.replies = [fixed(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK)]
    response = await lean.open("GET", httpx2.URL(server.url), (), b"", LIMITS)
    assert (response.status, response.items[0]) == (200, ("content-length", "2"))
    assert await response.read() == b"ok"


async def test_a_second_response_to_one_request_spends_the_connection(
    server: RawServer, lean: LeanTransport
) -> None:
    server.replies = [fixed(OK + OK), fixed(OK)]
    url = httpx2.URL(server.url)
    assert await (await lean.open("GET", url, (), b"", LIMITS)).read() == b"ok"
    assert await (await lean.open("GET", url, (), b"", LIMITS)).read() == b"ok"
    assert server.connections == 2  # the first was not trusted again


async def test_bytes_on_an_idle_connection_spend_it(server: RawServer, lean: LeanTransport) -> None:
    async def chatty(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"unasked")  # while the connection sits in the pool

    server.replies = [chatty, fixed(OK)]
    url = httpx2.URL(server.url)
    assert await (await lean.open("GET", url, (), b"", LIMITS)).read() == b"ok"
    await asyncio.sleep(0.2)
    assert await (await lean.open("GET", url, (), b"", LIMITS)).read() == b"ok"
    assert server.connections == 2


async def test_a_reply_to_head_has_no_body_and_its_connection_is_not_reused(
    server: RawServer, lean: LeanTransport
) -> None:
    server.replies = [fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"), fixed(OK)]
    url = httpx2.URL(server.url)
    response = await lean.open("HEAD", url, (), b"", LIMITS)
    async with asyncio.timeout(1):  # never waits for the 5 bytes that are not coming
        assert await response.read() == b""
    assert response.headers["content-length"] == "5"
    assert await (await lean.open("GET", url, (), b"", LIMITS)).read() == b"ok"
    assert server.connections == 2


async def test_a_large_body_read_slowly_arrives_whole(
    server: RawServer, lean: LeanTransport
) -> None:
    """Reading pauses while unread body piles up, and resumes as it is taken; the body is
    handed on in parts of at most 64 KiB, whatever came in one read."""
    big = bytes(range(256)) * 8192  # 2 MiB
    server.replies = [fixed(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(big), big))]
    response = await lean.open("GET", httpx2.URL(server.url), (), b"", LIMITS)
    await asyncio.sleep(0.1)  # all of it could have come: at most the high-water mark did
    got = bytearray()
    async for part in response.aiter_bytes():
        assert 0 < len(part) <= 64 * 1024  # handed on a bounded part at a time
        got += part
        await asyncio.sleep(0)
    assert got == big


async def test_a_reused_connection_reset_before_any_reply_byte_is_retried_on_a_new_one(
    lean: LeanTransport,
) -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        if connections == 1:  # the next request on it is met by a reset
            await reader.readuntil(b"\r\n\r\n")
            writer.transport.abort()
            return
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = httpx2.URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x")
    try:
        assert await (await lean.open("GET", url, (), b"", LIMITS)).read() == b"ok"
        assert await (await lean.open("GET", url, (), b"", LIMITS)).read() == b"ok"
    finally:
        server.close()
    assert connections == 2


def _tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a new self-signed certificate for 127.0.0.1, and a client
    context that trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = tmp_path / "key.pem"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pem, key_pem)
    return server, ssl.create_default_context(cafile=str(pem))


async def test_https_reads_bodies_and_streams_and_keeps_the_connection(tmp_path: Path) -> None:
    """Vendors are HTTPS: the same exchange over TLS, a JSON body and a trickled stream."""
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for _ in range(2):
            await reader.readuntil(b"\r\n\r\n")
            await _trickled(writer, (b"data: 1\n\n", b"data: 2\n\n"), 0.02)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    url = httpx2.URL(f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/x")
    lean = LeanTransport(ssl_context=client_ctx)
    try:
        response = await lean.open("POST", url, (), b"{}", LIMITS)
        assert await response.read() == b"data: 1\n\ndata: 2\n\n"
        response = await lean.open("POST", url, (), b"{}", LIMITS)
        assert b"".join([part async for part in response.aiter_bytes()]) == (
            b"data: 1\n\ndata: 2\n\n"
        )
    finally:
        await lean.aclose()
        server.close()
    assert connections == 1
    with pytest.raises(httpx2.ConnectError):  # a certificate nobody vouches for
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            await LeanTransport().open(
                "GET", httpx2.URL(f"https://127.0.0.1:{port}/"), (), b"", LIMITS
            )
        finally:
            server.close()


class _Echo:
    """Answers each request with its own body; one whose body is ``wait`` is answered only
    once :attr:`go` is set."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.connections = 0
        self.url = httpx2.URL("http://127.0.0.1/")
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _Echo:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = httpx2.URL(f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/x")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if b"length:" in h]
                body = await reader.readexactly(length[0])
                if body == b"wait":
                    await self.go.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_requests_made_while_others_wait_go_at_the_turns_end_each_to_its_own_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While an exchange waits for its answer, a small request is held for the turn's end and
    sent with the turn's others (one wakeup of an idle upstream for them all); a request over
    64 KiB, or one made alone, goes at once with its write timeout."""
    at_once: list[bytes] = []
    send = _Connection.send

    async def spied(self: _Connection, payload: bytes, timeout: float | None) -> None:
        at_once.append(payload.rpartition(b"\r\n\r\n")[2])
        await send(self, payload, timeout)

    monkeypatch.setattr(_Connection, "send", spied)
    lean = LeanTransport()
    large = b"x" * (64 * 1024 + 1)
    bodies = [b"wait", *(b'{"n":%d}' % i for i in range(8)), large]

    async def answer(body: bytes) -> bytes:
        return await (await lean.open("POST", echo.url, (), body, LIMITS)).read()

    async with _Echo() as echo:
        try:
            waiting = asyncio.create_task(answer(b"wait"))
            while not at_once:  # sent alone, at once; now it waits for its answer
                await asyncio.sleep(0.01)
            others = asyncio.gather(*(answer(b) for b in bodies[1:]))
            assert await asyncio.wait_for(others, 5) == bodies[1:]
            echo.go.set()
            assert await waiting == b"wait"
        finally:
            await lean.aclose()
    assert at_once == [b"wait", large]  # the eight small ones were held for their turn's end


async def test_a_held_request_whose_connection_closed_before_the_turns_end_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A held request's connection that closed before the turn's end is not written to: on a
    reused connection the request is sent again on a new one (as when the server closed it
    while we chose it); on a new one it fails as a connection closed without a response."""
    held = LeanTransport._send_held
    closes = 0

    def closing_first(self: LeanTransport) -> None:
        nonlocal closes
        if closes:
            closes -= 1
            for conn, _ in self._held:
                conn.close()
        held(self)

    monkeypatch.setattr(LeanTransport, "_send_held", closing_first)
    lean = LeanTransport()

    async def answer(body: bytes) -> bytes:
        return await (await lean.open("POST", echo.url, (), body, LIMITS)).read()

    async with _Echo() as echo:
        try:
            # two idle connections, so that of the next two requests the second reuses one
            first = asyncio.create_task(answer(b"wait"))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(answer(b"warm"))
            await asyncio.sleep(0.05)
            echo.go.set()
            assert await asyncio.gather(first, second) == [b"wait", b"warm"]
            echo.go.clear()
            connections, closes = echo.connections, 1
            waiting = asyncio.create_task(answer(b"wait"))
            await asyncio.sleep(0.05)
            assert await asyncio.wait_for(answer(b"again"), 5) == b"again"
            assert echo.connections == connections + 1  # sent again, on a new connection
            await lean.aclose()  # no idle connection: the next request opens a new one
            closes = 1
            with pytest.raises(httpx2.RemoteProtocolError, match="without a response"):
                await asyncio.wait_for(answer(b"lost"), 5)
            echo.go.set()
            assert await waiting == b"wait"
        finally:
            await lean.aclose()
