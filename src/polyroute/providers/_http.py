"""The shared HTTP engine: one pooled client, error mapping, stream framing.

Everything every adapter would otherwise repeat lives here once: building
the request, mapping transport failures and error statuses to the error tree,
``retry-after`` parsing, SSE and NDJSON framing, and end-of-stream checks.
"""

from __future__ import annotations

import codecs
import email.utils
import json
import os
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

import msgspec

from polyroute.errors import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    ConfigError,
    InvalidResponseError,
    JSONTooDeepError,
    PoolTimeoutError,
    ProviderError,
    ResponseTooLargeError,
    StreamInterruptedError,
    UnsupportedError,
    status_error,
)
from polyroute.providers._base import MB, HttpCall, Provider, WireProtocol
from polyroute.providers._gate import Gate
from polyroute.providers._json import MAX_DEPTH, loads_bounded

if TYPE_CHECKING:
    import httpx2

    from polyroute.providers._transport import LeanTransport

T = TypeVar("T")
_decode = msgspec.json.decode

USER_AGENT = "polyroute/0.1"
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_BASE_HEADERS = {"user-agent": USER_AGENT, "accept": "*/*"}
_JSON_HEADERS = {**_BASE_HEADERS, "content-type": "application/json"}


class Received(Protocol):
    """A response whose head has arrived, from either way of sending (:meth:`HttpPool.send`).

    ``headers`` are looked up by lower-case name.
    """

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncGenerator[bytes, None]: ...

    async def aclose(self) -> None: ...


def path_segment(name: str) -> str:
    """``name`` (a model id) as one URL path segment: everything but unreserved characters
    percent-encoded, ``/``, ``?``, ``#`` and ``%`` included, so no name can change the
    path or query it goes into. A name of dots alone (``..``) has no safe encoding (URL
    parsers read ``%2E%2E`` as ``..``): a :class:`BadRequestError`."""
    if not name.strip("."):
        raise BadRequestError(f"model name {name!r} cannot be used in a URL path")
    return quote(name, safe="")


class _Open:
    """A streaming response that holds its provider's connection slot until it is closed
    or read to its end, and fails once more than ``limit`` bytes have come."""

    __slots__ = ("_left", "_release", "_response", "_too_large")

    def __init__(
        self,
        response: Received,
        release: Callable[[], None],
        limit: int,
        too_large: Callable[[Received], ResponseTooLargeError],
    ) -> None:
        self._response = response
        self._release: Callable[[], None] | None = release
        self._left = limit  # bytes the body may still bring
        self._too_large = too_large

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def reason(self) -> bytes:
        return self._response.reason

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        return b"".join([part async for part in self.aiter_bytes()])

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        try:
            async with aclosing(self.parts()) as parts:
                async for part in parts:
                    self.took(len(part))
                    yield part
        finally:
            self._free()

    def parts(self) -> AsyncGenerator[bytes, None]:
        """The body's parts as they come, unbounded: their reader calls :meth:`took` for
        each (a generator less on every read of a stream than :meth:`aiter_bytes`), and
        closes the response after."""
        return self._response.aiter_bytes()

    def took(self, size: int) -> None:
        """``size`` more bytes of the body came: :class:`ResponseTooLargeError` past the
        limit."""
        self._left -= size
        if self._left < 0:
            raise self._too_large(self._response)

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        finally:
            self._free()

    def _free(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class _ViaClient:
    """An ``httpx2.Response`` seen as :class:`Received`."""

    __slots__ = ("_response",)

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def reason(self) -> bytes:
        return self._response.reason_phrase.encode("latin-1", "replace")

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        return await self._response.aread()

    def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        return self._response.aiter_bytes()

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpPool:
    """The process's pooled async HTTP client, created on first use.

    ``transport`` is the test seam: pass ``httpx2.MockTransport`` (or any
    ``AsyncBaseTransport``) to run adapters without sockets; calls then go through an
    ``httpx2.AsyncClient`` on it. By default they go straight to
    :class:`~polyroute.providers._transport.LeanTransport` (measured several times
    cheaper per call than httpx2's client on its own transport), or through httpx2's
    client and transport when the environment names a proxy, which only httpx2 speaks.
    """

    def __init__(
        self,
        transport: httpx2.AsyncBaseTransport | None = None,
        *,
        max_connections: int = 200,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._transport = transport
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._client: httpx2.AsyncClient | None = None
        self._lean: LeanTransport | None = None
        self._direct = transport is None and not _proxy_in_env()
        self._timeouts: dict[float, dict[str, float | None]] = {}

    @property
    def lean(self) -> LeanTransport | None:
        """The transport calls go straight to, or ``None`` when they go through :attr:`client`."""
        if self._lean is None and self._direct:
            from polyroute.providers._transport import LeanTransport  # deferred: fast import

            self._lean = LeanTransport(max_idle_per_origin=self._max_connections)
        return self._lean

    @property
    def client(self) -> httpx2.AsyncClient:
        """The httpx2 client, on the injected transport (or on the direct one, for callers
        that want httpx2's API)."""
        if self._client is None:
            import httpx2  # deferred: keeps `import polyroute` fast

            self._client = httpx2.AsyncClient(
                transport=self._transport or self.lean,
                limits=httpx2.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                ),
                headers={"user-agent": USER_AGENT},
                follow_redirects=False,
            )
        return self._client

    def timeout(self, total_s: float) -> dict[str, float | None]:
        """Per-operation limits for a call of ``total_s``, as httpx2's ``timeout`` extension."""
        cached = self._timeouts.get(total_s)
        if cached is None:
            connect = min(self._connect_timeout_s, total_s)
            cached = {"connect": connect, "read": total_s, "write": total_s, "pool": total_s}
            if len(self._timeouts) < 64:
                self._timeouts[total_s] = cached
        return cached

    async def send(
        self,
        method: str,
        url: httpx2.URL,
        headers: Iterable[tuple[str, str]],
        content: bytes,
        timeout: dict[str, float | None],
    ) -> Received:
        """Send one request; return once its head has arrived. Raises httpx2's errors.

        ``timeout``: per-operation limits, from :meth:`timeout`."""
        lean = self.lean
        if lean is not None:
            return await lean.open(method, url, headers, content, timeout)
        client = self.client
        request = client.build_request(method, url, content=content, headers=list(headers))
        request.extensions["timeout"] = timeout
        return _ViaClient(await client.send(request, stream=True))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()  # closes the direct transport too when it runs on it
            self._client = None
        if self._lean is not None:
            await self._lean.aclose()
            self._lean = None


_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy")


def _proxy_in_env() -> bool:
    return any(os.environ.get(n) or os.environ.get(n.upper()) for n in _PROXY_ENV)


class Exchange:
    """One provider's calls over the pool: send, map errors, frame streams."""

    __slots__ = (
        "_base",
        "_gate",
        "_json_headers",
        "_plain_headers",
        "_urls",
        "pool",
        "protocol",
        "provider",
    )

    def __init__(self, provider: Provider, protocol: WireProtocol, pool: HttpPool) -> None:
        self.provider = provider
        self.protocol = protocol
        self.pool = pool
        key = provider.api_key.reveal() if provider.api_key is not None else None
        own = {**protocol.headers(key), **provider.headers}
        self._plain_headers = _merged(_BASE_HEADERS, own)
        self._json_headers = _merged(_JSON_HEADERS, own)
        self._base = (provider.base_url or protocol.default_base_url).rstrip("/")
        if not self._base:
            raise ConfigError(f"provider {provider.id!r}: base_url is required for {protocol.type}")
        self._urls: dict[object, httpx2.URL] = {}
        self._gate = Gate(provider.max_connections)

    def _url(self, call: HttpCall) -> httpx2.URL:
        """The URL of ``call``, parsed once (parsing is a good part of a request's cost)."""
        key = call.path if not call.params else (call.path, *call.params.items())
        url = self._urls.get(key)
        if url is None:
            import httpx2

            try:
                url = httpx2.URL(self._base + call.path)
                if call.params:
                    url = url.copy_merge_params(call.params)
            except httpx2.InvalidURL as exc:
                raise self._bad_base_url(exc) from None
            if len(self._urls) < 64:  # the paths of one vendor's API: a handful
                self._urls[key] = url
        return url

    async def send_json(
        self, call: HttpCall, timeout_s: float | None = None
    ) -> tuple[Any, str | None]:
        """Send and return ``(parsed JSON body, vendor request id)``; raise on any failure."""
        limits = self.pool.timeout(timeout_s or self.provider.timeout_s)
        await self._enter(limits)
        try:
            response = await self._send(call, timeout_s, limits)
            rid = self._request_id(response.headers)
            content = await self._receive(self._read(response), timeout_s)
        finally:
            self._gate.release()
        return _json_body(self._scrubbed(content), self.provider.id, rid), rid

    async def open_stream(self, call: HttpCall, timeout_s: float | None = None) -> _Open:
        """Send and return the open streaming response (status already checked). It holds
        one of the provider's connections until it is closed or read to its end."""
        limits = self.pool.timeout(timeout_s or self.provider.timeout_s)
        await self._enter(limits)
        opened = False
        try:
            response = await self._send(call, timeout_s, limits)
            opened = True
        finally:
            if not opened:
                self._gate.release()
        return _Open(
            response, self._gate.release, self.provider.max_response_bytes, self._too_large
        )

    async def _enter(self, limits: Mapping[str, float | None]) -> None:
        """Take one of the provider's ``max_connections``, waiting up to the pool timeout."""
        if not await self._gate.acquire(limits["pool"]):
            raise PoolTimeoutError(
                f"all {self._gate.limit} connections (max_connections) stayed busy for "
                f"{limits['pool']:g}s",
                provider=self.provider.id,
            )

    async def _send(
        self, call: HttpCall, timeout_s: float | None, limits: dict[str, float | None]
    ) -> Received:
        if call.json is None:
            content, headers = b"", self._plain_headers
        else:
            content, headers = _dumps(call.json, self.provider.id), self._json_headers
        if call.headers:
            headers = _joined(headers, call.headers)
        response = await self._receive(
            self.pool.send(call.method, self._url(call), headers, content, limits),
            timeout_s,
        )
        if response.status >= 400:
            import httpx2

            try:
                content = await self._read(response)
            except (httpx2.TransportError, ResponseTooLargeError):
                content = b""  # the status alone still tells what happened
            finally:
                await response.aclose()
            raise self._status_error(response, content)
        return response

    async def _read(self, response: Received) -> bytes:
        """The whole body, or :class:`ResponseTooLargeError` as soon as it passes the limit
        (before reading anything when its length says so)."""
        limit = self.provider.max_response_bytes
        headers = response.headers
        length = headers.get("content-length", "")
        if length.isdigit() and not headers.get("content-encoding"):  # else it may inflate
            if int(length) > limit:
                await response.aclose()
                raise self._too_large(response)
            return await response.read()
        parts = []
        left = limit
        async with aclosing(response.aiter_bytes()) as body:
            async for part in body:
                left -= len(part)
                if left < 0:
                    break
                parts.append(part)
            else:
                return b"".join(parts)
        await response.aclose()
        raise self._too_large(response)

    def _too_large(self, response: Received) -> ResponseTooLargeError:
        limit = self.provider.max_response_bytes
        return ResponseTooLargeError(
            f"the answer is larger than {limit / MB:g} MB (max_response_mb); reading stopped",
            provider=self.provider.id,
            request_id=self._request_id(response.headers),
        )

    async def _receive(self, pending: Awaitable[T], timeout_s: float | None) -> T:
        """``pending``, with transport failures as the error tree's."""
        import httpx2

        try:
            return await pending
        except httpx2.TimeoutException as exc:
            raise APITimeoutError(
                f"no answer within {timeout_s or self.provider.timeout_s:g}s ({type(exc).__name__})",
                provider=self.provider.id,
            ) from None
        except httpx2.UnsupportedProtocol as exc:  # a bad URL fails sooner, in _url
            raise self._bad_base_url(exc) from None
        except httpx2.TransportError as exc:
            raise APIConnectionError(
                f"cannot reach {self._base} ({type(exc).__name__}: {exc})",
                provider=self.provider.id,
            ) from None

    def _bad_base_url(self, exc: Exception) -> ConfigError:
        return ConfigError(f"provider {self.provider.id!r}: bad base_url: {exc}")

    def _scrubbed(self, content: bytes) -> bytes:
        """``content`` without our own key, should a vendor echo it back in a body."""
        key = self.provider.api_key
        secret = key.reveal().encode() if key is not None else b""
        if not secret or content.find(secret) < 0:  # find: see `_dumps`
            return content
        return content.replace(secret, b"***")

    def _status_error(self, response: Received, content: bytes) -> ProviderError:
        body: Any
        content = self._scrubbed(content)
        status = response.status
        reason = response.reason.decode("latin-1") or _REASONS.get(status, "")
        try:
            body = loads_bounded(content)
        except (ValueError, JSONTooDeepError):
            body = content[:2000].decode("utf-8", "replace")
        try:
            vendor = self.protocol.parse_error(status, body)
        except (KeyError, TypeError, AttributeError, IndexError):
            vendor = None
        message = vendor.message if vendor else (str(body)[:500] or reason)
        return status_error(
            status,
            message or reason or "error",
            provider=self.provider.id,
            kind=vendor.kind if vendor else None,
            vendor_type=vendor.vendor_type if vendor else None,
            request_id=self._request_id(response.headers),
            retry_after=parse_retry_after(response.headers)
            or (vendor.retry_after if vendor else None),
            body=body,
        )

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        for name in self.protocol.request_id_headers:
            value = headers.get(name)
            if value:
                return value
        return None

    def request_id(self, response: Received) -> str | None:
        return self._request_id(response.headers)

    async def messages(self, response: _Open) -> AsyncGenerator[tuple[str, str | None], None]:
        """Yield ``(data, event)`` per SSE event or NDJSON line; map broken transports."""
        async with aclosing(self.message_batches(response)) as batches:
            async for batch in batches:
                for item in batch:
                    yield item

    async def message_batches(
        self, response: _Open
    ) -> AsyncGenerator[list[tuple[str, str | None]], None]:
        """:meth:`messages` as a list per network read that completed any (one resumption
        per read, not per message); map broken transports. The framing and the size limit
        are method calls a read, not generators stacked on the transport's: each of those
        cost a resumption a read. Closing it closes the transport's generator at once (left
        to the event loop, that would cost a task); the caller closes the response."""
        import httpx2

        framer = NdjsonFramer() if self.protocol.stream_format == "ndjson" else SseFramer()
        try:
            async with aclosing(response.parts()) as body:
                async for chunk in body:
                    response.took(len(chunk))
                    batch = framer.feed(chunk)
                    if batch:
                        yield batch
            batch = framer.end()
            if batch:
                yield batch
        except httpx2.TimeoutException:
            raise APITimeoutError(
                "stream stalled: no data in time", provider=self.provider.id
            ) from None
        except httpx2.TransportError as exc:
            raise StreamInterruptedError(
                f"stream broken before its end ({type(exc).__name__})",
                provider=self.provider.id,
                request_id=self.request_id(response),
            ) from None


def _merged(*layers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Headers with later layers overriding earlier ones, names compared case-blind."""
    out: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer.items():
            out[name.lower()] = (name, value)
    return tuple(out.values())


def _joined(
    base: tuple[tuple[str, str], ...], extra: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """``base`` with a call's own headers; a name in both keeps both values, comma-joined (a
    provider's configured ``anthropic-beta`` and a request's betas)."""
    out = {name.lower(): (name, value) for name, value in base}
    for name, value in extra.items():
        had = out.get(name.lower())
        out[name.lower()] = (name, value if had is None else f"{had[1]},{value}")
    return tuple(out.values())


# msgspec writes a NaN as null where a request must refuse it: a body with a null in it
# (rare: adapters leave unset fields out) is written again by json, which refuses a NaN.
# One json encoder: json.dumps builds a new one per call for these options (8k instructions).
_FAST = msgspec.json.encode
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _dumps(body: Mapping[str, Any], provider: str) -> bytes:
    try:
        content = _FAST(body)
    except (TypeError, UnicodeEncodeError, RecursionError):
        pass  # json's error (or, for a key msgspec cannot write, its text), as before
    else:
        # find, not `in`: that first tries the operand as an integer, and formats the
        # TypeError it gets (CPython 3.11)
        if content.find(b"null") < 0:
            return content
    try:
        return _ENCODE(body).encode()
    except ValueError as exc:  # NaN or infinity: JSON has no way to say it
        raise UnsupportedError(
            f"the request cannot be sent as JSON: {exc}", provider=provider
        ) from None
    except RecursionError:  # the C encoder unwinds cleanly: the request is just too deep
        raise JSONTooDeepError(
            "the request nests too deep to be sent as JSON", provider=provider
        ) from None


_EOL = re.compile(r"\r\n|\r|\n")


def _split_lines(text: str) -> list[str]:
    """``text`` split at CRLF, LF or CR; by ``str.split`` when it holds no CR (vendors end
    lines with LF alone), many times the regular expression's speed."""
    return _EOL.split(text) if "\r" in text else text.split("\n")


class _Lines:
    """Text lines of a UTF-8 byte stream, split at CRLF, LF or CR (as SSE defines lines),
    fed one network read at a time."""

    __slots__ = ("_decode", "_rest")

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self._rest = ""

    def feed(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes."""
        text = self._rest + self._decode(chunk)
        held = ""
        if text.endswith("\r"):  # its LF may open the next chunk: one line end, not two
            text, held = text[:-1], "\r"
        done = _split_lines(text)
        self._rest = done.pop() + held
        return done

    def end(self) -> list[str]:
        """The lines left at the stream's end (a last one without its line end too)."""
        *done, last = _split_lines(self._rest + self._decode(b"", True))
        self._rest = ""
        if last:
            done.append(last)
        return done


class NdjsonFramer:
    """NDJSON messages from a byte stream: ``(line, None)`` per line that is not blank."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines = _Lines()

    def feed(self, chunk: bytes) -> list[tuple[str, str | None]]:
        return [(line, None) for line in self._lines.feed(chunk) if line.strip()]

    def end(self) -> list[tuple[str, str | None]]:
        return [(line, None) for line in self._lines.end() if line.strip()]


class SseFramer:
    """Server-Sent Events from a byte stream: ``(data, event name)`` per dispatched event."""

    __slots__ = ("_data", "_event", "_lines")

    def __init__(self) -> None:
        self._lines = _Lines()
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[str, str | None]]:
        """The events ``chunk`` completes."""
        return self._frame(self._lines.feed(chunk))

    def end(self) -> list[tuple[str, str | None]]:
        """The events left at the stream's end (a last one without its blank line too)."""
        out = self._frame(self._lines.end())
        if self._data:
            out.append(("\n".join(self._data), self._event))
            self._data = []
        return out

    def _frame(self, lines: list[str]) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        data, event = self._data, self._event
        for line in lines:
            if line[:6] == "data: ":  # the usual line, taken at once
                data.append(line[6:])
                continue
            if not line:
                if data:
                    out.append(("\n".join(data), event))
                data, event = [], None
                continue
            if line.startswith(":"):
                continue  # comment / keep-alive
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
        self._data, self._event = data, event
        return out


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _json_body(content: bytes, provider: str, request_id: str | None) -> Any:
    try:
        return loads_bounded(content)
    except JSONTooDeepError as exc:
        raise InvalidResponseError(
            f"response {exc.message}", provider=provider, request_id=request_id
        ) from None
    except ValueError:
        snippet = content[:120].decode("utf-8", "replace")
        raise InvalidResponseError(
            f"response is not JSON: {snippet!r}", provider=provider, request_id=request_id
        ) from None


def loads_event(data: str, provider: str = "") -> Any:
    """Parse one stream message's JSON, as an :class:`InvalidResponseError` if it is not."""
    if data.count("{") + data.count("[") <= MAX_DEPTH:  # too few brackets to nest too deep
        try:
            return _decode(data)  # loads_bounded's first step, without its two calls
        except ValueError:
            pass  # what msgspec refuses goes the whole way: the stdlib may take it
    try:
        return loads_bounded(data)
    except JSONTooDeepError as exc:
        raise InvalidResponseError(f"stream message {exc.message}", provider=provider) from None
    except ValueError:
        raise InvalidResponseError(
            f"stream message is not JSON: {data[:120]!r}", provider=provider
        ) from None
