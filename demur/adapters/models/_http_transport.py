"""The HTTP clients OpenAICompatibleModel talks through: aiohttp (the default) and httpx.

Each transport is a pool of keep-alive connections on the event loop that opened it. It
sends JSON POSTs and hands back an `HttpReply`; a request that gets no HTTP answer raises one
of `RequestTimeout`, `ConnectFailed` or `ConnectionLost`, never the library's own exceptions.
aiohttp and httpx are imported only when a transport is chosen or opened.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from demur.errors import ConfigError, MissingDependencyError

TransportName = Literal["aiohttp", "httpx"]
TransportChoice = Literal["auto", "aiohttp", "httpx"]
TRANSPORT_CHOICES: tuple[str, ...] = get_args(TransportChoice)

_FEATURE = "OpenAICompatibleModel (OpenAI-compatible HTTP backends)"
KEEPALIVE_S = 30.0


@dataclass(frozen=True)
class HttpReply:
    """An HTTP response, read in full. `headers` look names up case-insensitively."""

    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return json.loads(self.text)


class TransportError(Exception):
    """A request that got no HTTP answer. `kind` names the HTTP library's own exception."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class RequestTimeout(TransportError):
    """No complete answer within the transport's timeout."""


class ConnectFailed(TransportError):
    """No connection could be opened: refused, unknown host, TLS failure."""


class ConnectionLost(TransportError):
    """The connection broke while the request was under way."""


def resolve(choice: str, *, http2: bool) -> TransportName:
    """The transport to use for `choice`, checked to be installed."""
    if choice not in TRANSPORT_CHOICES:
        raise ConfigError(
            f"transport must be one of {', '.join(map(repr, TRANSPORT_CHOICES))}, got {choice!r}"
        )
    if choice == "aiohttp":
        if http2:
            raise ConfigError(
                "http2=True needs transport='httpx' (or 'auto'): aiohttp speaks HTTP/1.1 only"
            )
        _import_aiohttp()
        return "aiohttp"
    if choice == "httpx" or http2:
        _import_httpx(http2=http2)
        return "httpx"
    try:
        _import_aiohttp()
    except MissingDependencyError:
        try:
            import httpx  # noqa: F401
        except ImportError:
            raise MissingDependencyError("aiohttp", "http", _FEATURE) from None
        return "httpx"
    return "aiohttp"


def _import_aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError:
        raise MissingDependencyError("aiohttp", "http", _FEATURE) from None
    return aiohttp


def _import_httpx(*, http2: bool = False) -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingDependencyError(
            "httpx", "http2" if http2 else "http", f"{_FEATURE} with transport='httpx'"
        ) from None
    return httpx


_BACKGROUND: set[asyncio.Task[None]] = set()


def in_background(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run `coroutine` on the running loop without waiting for it."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


class Transport(ABC):
    """Pooled connections on the running event loop, for JSON POSTs."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._busy = 0
        self._retiring = False

    async def post_json(self, url: str, body: dict[str, Any]) -> HttpReply:
        """POST `body` as JSON and read the whole answer, whatever its status."""
        self._busy += 1
        try:
            return await self._post(url, json.dumps(body).encode())
        finally:
            self._busy -= 1
            if self._retiring and not self._busy:
                in_background(self._close())

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether the connections are closed."""

    async def aclose(self) -> None:
        """Close the connections. Called from another loop, they close on their own loop once
        its calls are done (or are let go, when that loop is closed)."""
        if self.loop is asyncio.get_running_loop():
            await self._close()
        elif self.loop.is_closed():
            await self._forget()
        else:
            try:
                self.loop.call_soon_threadsafe(self._close_when_idle)
            except RuntimeError:  # the loop closed meanwhile
                await self._forget()

    def _close_when_idle(self) -> None:
        self._retiring = True
        if not self._busy:
            in_background(self._close())

    @abstractmethod
    async def _post(self, url: str, content: bytes) -> HttpReply: ...

    @abstractmethod
    async def _close(self) -> None:
        """Close the connections, on this transport's loop."""

    @abstractmethod
    async def _forget(self) -> None:
        """Let go of connections whose loop is closed, from another loop."""


class AiohttpTransport(Transport):
    """HTTP/1.1 through an aiohttp ClientSession."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        timeout_s: float,
        max_connections: int,
    ) -> None:
        super().__init__()
        aiohttp = _import_aiohttp()
        self._errors = aiohttp
        tls = urlsplit(base_url).scheme == "https"
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            keepalive_timeout=KEEPALIVE_S,
            ssl=_tls_context() if tls else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Content-Type": "application/json", **headers},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )
        self._proxy = _env_proxy(base_url)

    async def _post(self, url: str, content: bytes) -> HttpReply:
        aiohttp = self._errors
        try:
            async with self._session.post(
                url, data=content, allow_redirects=False, proxy=self._proxy
            ) as response:
                raw = await response.read()
                status, headers, charset = response.status, response.headers, response.charset
        except TimeoutError as exc:
            raise RequestTimeout(type(exc).__name__, str(exc)) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(type(exc).__name__, str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise ConnectionLost(type(exc).__name__, str(exc)) from exc
        try:
            text = raw.decode(charset or "utf-8", errors="replace")
        except LookupError:
            text = raw.decode("utf-8", errors="replace")
        return HttpReply(status, headers, text)

    @property
    def closed(self) -> bool:
        return bool(self._session.closed)

    async def _close(self) -> None:
        await self._session.close()

    async def _forget(self) -> None:
        # With its loop closed, closing waits on nothing; it keeps aiohttp from warning.
        await self._session.close()


class HttpxTransport(Transport):
    """HTTP/1.1, or HTTP/2 over TLS with `http2=True`, through an httpx AsyncClient."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        timeout_s: float,
        max_connections: int,
        http2: bool = False,
    ) -> None:
        super().__init__()
        httpx = _import_httpx(http2=http2)
        self._errors = httpx
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            headers={"Content-Type": "application/json", **headers},
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=KEEPALIVE_S,
            ),
            http2=http2,
        )

    async def _post(self, url: str, content: bytes) -> HttpReply:
        httpx = self._errors
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(url, content=content)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise RequestTimeout(type(exc).__name__, str(exc)) from exc
        except httpx.ConnectError as exc:
            raise ConnectFailed(type(exc).__name__, str(exc)) from exc
        except httpx.HTTPError as exc:
            raise ConnectionLost(type(exc).__name__, str(exc)) from exc
        return HttpReply(response.status_code, response.headers, response.text)

    @property
    def closed(self) -> bool:
        return bool(self._client.is_closed)

    async def _close(self) -> None:
        await self._client.aclose()

    async def _forget(self) -> None:
        # httpx cannot close connections off their loop; they go when the client is collected.
        pass


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Certificates as httpx checks them: SSL_CERT_FILE or SSL_CERT_DIR when set, else
    certifi's bundle when installed, else the system's."""
    if not (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")):
        try:
            import certifi
        except ImportError:
            pass
        else:
            return ssl.create_default_context(cafile=certifi.where())
    return ssl.create_default_context()


def _env_proxy(url: str) -> str | None:
    """The proxy that HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY name for `url`."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and urlsplit(proxy).scheme not in ("http", "https"):
        raise ConfigError(
            f"the environment names the proxy {proxy!r} for {url}; the aiohttp transport "
            "speaks only to http:// proxies: pass transport='httpx' to use it"
        )
    return proxy or None


__all__ = [
    "TRANSPORT_CHOICES",
    "AiohttpTransport",
    "ConnectFailed",
    "ConnectionLost",
    "HttpReply",
    "HttpxTransport",
    "RequestTimeout",
    "Transport",
    "TransportChoice",
    "TransportError",
    "TransportName",
]
