"""The shared HTTP engine: one pooled client, error mapping, stream framing.

Everything every adapter would otherwise repeat lives here once: building
the request, mapping transport failures and error statuses to the error tree,
``retry-after`` parsing, SSE and NDJSON framing, and end-of-stream checks.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from polyroute.errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigError,
    InvalidResponseError,
    ProviderError,
    StreamInterruptedError,
    status_error,
)
from polyroute.providers._base import HttpCall, Provider, WireProtocol

if TYPE_CHECKING:
    import httpx2

USER_AGENT = "polyroute/0.1"


class HttpPool:
    """The process's pooled async HTTP client, created on first use.

    ``transport`` is the test seam: pass ``httpx2.MockTransport`` (or any
    ``AsyncBaseTransport``) to run adapters without sockets. By default the client
    runs on :class:`~polyroute.providers._transport.LeanTransport` (measured several
    times cheaper per call than httpx2's own), or on httpx2's own transport when the
    environment names a proxy, which only httpx2's speaks.
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
        self._timeouts: dict[float, httpx2.Timeout] = {}

    @property
    def client(self) -> httpx2.AsyncClient:
        if self._client is None:
            import httpx2  # deferred: keeps `import polyroute` fast

            transport = self._transport
            if transport is None and not _proxy_in_env():
                from polyroute.providers._transport import LeanTransport

                transport = LeanTransport(max_idle_per_origin=self._max_connections)
            self._client = httpx2.AsyncClient(
                transport=transport,
                limits=httpx2.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                ),
                headers={"user-agent": USER_AGENT},
                follow_redirects=False,
            )
        return self._client

    def timeout(self, total_s: float) -> httpx2.Timeout:
        cached = self._timeouts.get(total_s)
        if cached is None:
            import httpx2

            cached = httpx2.Timeout(total_s, connect=min(self._connect_timeout_s, total_s))
            if len(self._timeouts) < 64:
                self._timeouts[total_s] = cached
        return cached

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy")


def _proxy_in_env() -> bool:
    return any(os.environ.get(n) or os.environ.get(n.upper()) for n in _PROXY_ENV)


class Exchange:
    """One provider's calls over the pool: send, map errors, frame streams."""

    __slots__ = ("_base", "_headers", "_urls", "pool", "protocol", "provider")

    def __init__(self, provider: Provider, protocol: WireProtocol, pool: HttpPool) -> None:
        self.provider = provider
        self.protocol = protocol
        self.pool = pool
        key = provider.api_key.reveal() if provider.api_key is not None else None
        self._headers = {**protocol.headers(key), **provider.headers}
        self._base = (provider.base_url or protocol.default_base_url).rstrip("/")
        if not self._base:
            raise ConfigError(f"provider {provider.id!r}: base_url is required for {protocol.type}")
        self._urls: dict[str, httpx2.URL] = {}

    def _url(self, path: str) -> httpx2.URL | str:
        """The URL of ``path``, parsed once (parsing is a good part of a request's cost)."""
        url = self._urls.get(path)
        if url is None:
            import httpx2

            try:
                url = httpx2.URL(self._base + path)
            except httpx2.InvalidURL:
                return self._base + path  # the send reports it, as for any bad URL
            if len(self._urls) < 64:  # the paths of one vendor's API: a handful
                self._urls[path] = url
        return url

    def _request(self, call: HttpCall, timeout_s: float | None) -> httpx2.Request:
        return self.pool.client.build_request(
            call.method,
            self._url(call.path),
            json=call.json,
            params=call.params,
            headers=self._headers,
            timeout=self.pool.timeout(timeout_s or self.provider.timeout_s),
        )

    async def send_json(
        self, call: HttpCall, timeout_s: float | None = None
    ) -> tuple[Any, str | None]:
        """Send and return ``(parsed JSON body, vendor request id)``; raise on any failure."""
        response = await self._send(call, timeout_s, stream=False)
        rid = self._request_id(response.headers)
        return _json_body(self._scrubbed(response.content), self.provider.id, rid), rid

    async def open_stream(self, call: HttpCall, timeout_s: float | None = None) -> httpx2.Response:
        """Send and return the open streaming response (status already checked)."""
        return await self._send(call, timeout_s, stream=True)

    async def _send(
        self, call: HttpCall, timeout_s: float | None, *, stream: bool
    ) -> httpx2.Response:
        import httpx2

        try:
            request = self._request(call, timeout_s)
            response = await self.pool.client.send(request, stream=stream)
        except httpx2.TimeoutException as exc:
            raise APITimeoutError(
                f"no answer within {timeout_s or self.provider.timeout_s:g}s ({type(exc).__name__})",
                provider=self.provider.id,
            ) from None
        except (httpx2.InvalidURL, httpx2.UnsupportedProtocol) as exc:
            raise ConfigError(f"provider {self.provider.id!r}: bad base_url: {exc}") from None
        except httpx2.TransportError as exc:
            raise APIConnectionError(
                f"cannot reach {self._base} ({type(exc).__name__}: {exc})",
                provider=self.provider.id,
            ) from None
        if response.status_code >= 400:
            try:
                if stream:
                    await response.aread()
            except httpx2.TransportError:
                pass  # the status alone still tells what happened
            finally:
                await response.aclose()
            raise self._status_error(response)
        return response

    def _scrubbed(self, content: bytes) -> bytes:
        """``content`` without our own key, should a vendor echo it back in a body."""
        key = self.provider.api_key
        secret = key.reveal().encode() if key is not None else b""
        return content.replace(secret, b"***") if secret and secret in content else content

    def _status_error(self, response: httpx2.Response) -> ProviderError:
        body: Any
        content = self._scrubbed(response.content)
        try:
            body = json.loads(content)
        except ValueError:
            body = content[:2000].decode("utf-8", "replace")
        try:
            vendor = self.protocol.parse_error(response.status_code, body)
        except (KeyError, TypeError, AttributeError, IndexError):
            vendor = None
        message = vendor.message if vendor else (str(body)[:500] or response.reason_phrase)
        return status_error(
            response.status_code,
            message or response.reason_phrase or "error",
            provider=self.provider.id,
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

    def request_id(self, response: httpx2.Response) -> str | None:
        return self._request_id(response.headers)

    async def messages(self, response: httpx2.Response) -> AsyncIterator[tuple[str, str | None]]:
        """Yield ``(data, event)`` per SSE event or NDJSON line; map broken transports."""
        import httpx2

        try:
            if self.protocol.stream_format == "ndjson":
                async for line in response.aiter_lines():
                    if line.strip():
                        yield line, None
            else:
                async for item in sse_events(response.aiter_lines()):
                    yield item
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


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str | None]]:
    """Frame Server-Sent Events: yield ``(data, event name)`` per dispatched event."""
    data: list[str] = []
    event: str | None = None
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data), event
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
    if data:  # a final event without its blank line
        yield "\n".join(data), event


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
        return json.loads(content)
    except ValueError:
        snippet = content[:120].decode("utf-8", "replace")
        raise InvalidResponseError(
            f"response is not JSON: {snippet!r}", provider=provider, request_id=request_id
        ) from None


def loads_event(data: str, provider: str = "") -> Any:
    """Parse one stream message's JSON, as an :class:`InvalidResponseError` if it is not."""
    try:
        return json.loads(data)
    except ValueError:
        raise InvalidResponseError(
            f"stream message is not JSON: {data[:120]!r}", provider=provider
        ) from None
