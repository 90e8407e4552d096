"""The HTTP core of the client: signing, version negotiation, endpoint failover, retries.

One :class:`APIClient` owns one aiohttp session.  It negotiates the API version with ``GET /``
(``BACKEND_API_VERSION`` pins one instead) and picks the path family itself: ``/kernel`` up to
API v4, ``/session`` from v5.  Idempotent calls are retried with bounded exponential backoff and
jitter; a call that may run user code (execute) is never re-sent once it may have reached the server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from .. import __version__, signing
from ..config import API_VERSION_RE, Config, tls_context
from ..fastjson import dumpb, loads
from .errors import (
    APIVersionUnsupported,
    BackendAPIError,
    CertificateNotTrusted,
    RateLimited,
    RequestTimeout,
    ServerUnreachable,
    error_from_response,
)

log = logging.getLogger("backend_jupyter.client")

CLIENT_API_VERSION = "v9.20250722"  # the newest API this client speaks
MIN_API_VERSION = "v4.20190615"  # the oldest: /kernel paths, clientSessionToken
MAX_ATTEMPTS = 4
BACKOFF_BASE = 0.25
BACKOFF_CAP = 5.0
RETRY_AFTER_CAP = 30.0
RETRYABLE_STATUS = frozenset({502, 503, 504})


def version_tuple(version: str) -> tuple[int, str]:
    match = API_VERSION_RE.match(version)
    if not match:
        raise APIVersionUnsupported(f"Unparsable API version {version!r}")
    return int(match.group(1)), match.group(2)


def format_version(version: tuple[int, str]) -> str:
    return f"v{version[0]}.{version[1]}"


def backoff_delay(attempt: int) -> float:
    base = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** attempt))
    return base / 2 + random.uniform(0, base / 2)


def _retry_after(headers) -> float | None:
    for name in ("Retry-After", "X-RateLimit-Reset", "X-RateLimit-Window"):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, min(RETRY_AFTER_CAP, float(value)))
            except ValueError:
                continue
    return None


def upload_form(entries: list[tuple[Path, str]]) -> Callable[[], aiohttp.FormData]:
    """A factory (re-callable for retries) of the multipart body that uploads ``(local, remote)``
    files as ``src`` parts, the way Backend.AI upload routes expect them."""

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData(quote_fields=False)
        for local, remote in entries:
            data.add_field("src", local.read_bytes(), filename=remote, content_type="application/octet-stream")
        return data

    return form


class APIClient:
    """An asyncio Backend.AI API client.  Use ``async with APIClient(config) as api: ...``."""

    def __init__(self, config: Config | None = None, *, user_agent: str | None = None):
        self.config = config or Config.from_env()
        if not self.config.endpoints:
            raise ServerUnreachable("No Backend.AI endpoint is configured", hint="set BACKEND_ENDPOINT")
        self.user_agent = user_agent or f"backend_jupyter/{__version__}"
        self._endpoint_index = 0
        self._http: aiohttp.ClientSession | None = None
        self.api_version: str | None = None
        self.server_info: dict[str, Any] = {}
        self._tls: ssl.SSLContext | bool | None = None

    def __repr__(self) -> str:
        return f"APIClient(endpoint={self.endpoint!r}, access_key={self.config.access_key!r}, api_version={self.api_version!r})"

    # -- life cycle ------------------------------------------------------------------------------
    async def __aenter__(self) -> APIClient:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _new_http(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.config.connection_timeout or None,
            sock_read=self.config.read_timeout or None,
        )
        return aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": self.user_agent})

    async def _reset_connections(self) -> None:
        """Drop pooled connections after a connection failure: a restarted server would otherwise
        see the next request on a stale keep-alive connection fail too."""
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = self._new_http()

    async def open(self) -> None:
        if self._http is None or self._http.closed:
            self._http = self._new_http()
        if self.api_version is None:
            try:
                await self.negotiate()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            raise RuntimeError("APIClient is not open; use `async with APIClient(...)` or await open()")
        return self._http

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        """aiohttp's ``ssl=`` for every request and websocket: verification by default, with
        ``BACKEND_CA_BUNDLE`` trusted too; False when ``BACKEND_SKIP_SSLCERT_VALIDATION``."""
        if self._tls is None:
            self._tls = tls_context(self.config)
        return self._tls

    # -- endpoints and versions ------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self.config.endpoints[self._endpoint_index % len(self.config.endpoints)]

    def _rotate_endpoint(self) -> None:
        if len(self.config.endpoints) > 1:
            self._endpoint_index = (self._endpoint_index + 1) % len(self.config.endpoints)
            log.info("switching to endpoint %s", self.endpoint)

    @property
    def version(self) -> tuple[int, str]:
        if self.api_version is None:
            raise RuntimeError("the API version has not been negotiated yet")
        return version_tuple(self.api_version)

    @property
    def session_prefix(self) -> str:
        """``kernel`` (API ≤ v4) or ``session`` (v5+)."""
        return "kernel" if self.version[0] <= 4 else "session"

    async def negotiate(self) -> str:
        """Agree on an API version with ``GET /`` (tries every endpoint in order)."""
        if self.config.api_version:
            self.api_version = self.config.api_version
            return self.api_version
        last_error: Exception | None = None
        for _ in range(len(self.config.endpoints)):
            try:
                async with self.http.get(self.endpoint + "/", ssl=self.ssl) as resp:
                    if resp.status != 200:
                        raise error_from_response(resp.status, await resp.text(), method="GET", path="/")
                    self.server_info = await resp.json(content_type=None)
                break
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as e:
                last_error = e
                self._rotate_endpoint()
        else:
            raise self._connection_error(last_error)
        server = str(self.server_info.get("version", ""))
        if not API_VERSION_RE.match(server):
            raise APIVersionUnsupported(f"The server at {self.endpoint} reported no usable API version ({server!r})")
        negotiated = min(version_tuple(server), version_tuple(CLIENT_API_VERSION))
        if negotiated < version_tuple(MIN_API_VERSION):
            raise APIVersionUnsupported(
                f"The server speaks API {server}, older than the oldest this client supports ({MIN_API_VERSION})"
            )
        self.api_version = format_version(negotiated)
        return self.api_version

    def _connection_error(self, error: Exception | None) -> Exception:
        if isinstance(error, aiohttp.ClientConnectorCertificateError):
            return certificate_error(error)
        if isinstance(error, asyncio.TimeoutError):
            return RequestTimeout(f"The Backend.AI server at {self.endpoint} did not answer in time")
        reason = getattr(error, "strerror", None) or type(error).__name__
        return ServerUnreachable(f"Cannot reach the Backend.AI server at {self.endpoint} ({reason})")

    # -- requests --------------------------------------------------------------------------------
    def sign(self, method: str, rel_url: str, content_type: str, body: bytes = b"") -> dict[str, str]:
        return signing.sign_request(
            method=method,
            rel_url=rel_url,
            date=datetime.now(timezone.utc),
            host=urlsplit(self.endpoint).netloc,
            content_type=content_type,
            api_version=self.api_version or CLIENT_API_VERSION,
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            body=body,
        )

    @staticmethod
    def rel_url(path: str, params: dict | None = None) -> str:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
        return f"{path}?{query}" if query else path

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        idempotent: bool | None = None,
        expect: str = "json",
        read_timeout: float | None = None,
    ) -> Any:
        """Send a signed request; returns decoded JSON (``expect="json"``), ``bytes``, nothing
        (``"none"``) or multipart parts (``"parts"``).  Raises a :class:`BackendError`.  Idempotent
        calls are retried with backoff on connection errors and retryable statuses."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "OPTIONS", "DELETE")
        rel = self.rel_url(path, params)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connection_timeout or None,
                                        sock_read=read_timeout) if read_timeout else None
        attempt = 0
        while True:
            body, headers = self._signed_body(method, rel, json, form)
            url = URL(self.endpoint + rel, encoded=True)
            try:
                async with self.http.request(method, url, data=body, headers=headers, ssl=self.ssl,
                                             **({"timeout": timeout} if timeout else {})) as resp:
                    if resp.status >= 400:
                        raise error_from_response(resp.status, await resp.text(errors="replace"),
                                                  retry_after=_retry_after(resp.headers), method=method, path=path)
                    return await _read_response(resp, expect)
            except (BackendAPIError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                delay = await self._retry_delay(e, attempt, idempotent)
            log.debug("retrying %s %s in %.2fs (attempt %d)", method, path, delay, attempt + 2)
            await asyncio.sleep(delay)
            attempt += 1

    def _signed_body(self, method: str, rel: str, json: Any, form) -> tuple[Any, dict[str, str]]:
        """The request body (built anew for each attempt) and its signed headers."""
        if form is not None:
            return form(), self.sign(method, rel, "multipart/form-data")
        if json is not None:
            body, ctype = dumpb(json), "application/json"
            return body, {**self.sign(method, rel, ctype, body), "Content-Type": ctype}
        return None, {**self.sign(method, rel, "text/plain"), "Content-Type": "text/plain"}

    async def _retry_delay(self, error: Exception, attempt: int, idempotent: bool) -> float:
        """Seconds to wait before trying ``error``'s request again, or raise what the caller sees."""
        last = attempt + 1 >= MAX_ATTEMPTS
        if isinstance(error, RateLimited):
            if last:
                raise error
            return error.retry_after if error.retry_after is not None else backoff_delay(attempt)
        if isinstance(error, BackendAPIError):
            if not (idempotent and error.status in RETRYABLE_STATUS) or last:
                raise error
            return backoff_delay(attempt)
        if isinstance(error, aiohttp.ClientConnectorCertificateError):  # the same next time: say it now
            raise self._connection_error(error) from None
        if isinstance(error, aiohttp.ClientConnectorError):
            # Never connected: the request did not reach any server, so any call may be re-sent.
            self._rotate_endpoint()
            if last:
                raise self._connection_error(error) from None
            return backoff_delay(attempt)
        if not isinstance(error, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError,
                                  OSError)):
            raise error
        if not isinstance(error, asyncio.TimeoutError):
            await self._reset_connections()
        if not idempotent or last:
            failure = self._connection_error(error)
            if not idempotent:
                failure.hint = ("the request may or may not have been carried out; "
                                "it was not repeated so that nothing runs twice")
            raise failure from None
        return backoff_delay(attempt)

    async def ws_connect(self, path: str, params: dict | None = None) -> aiohttp.ClientWebSocketResponse:
        rel = self.rel_url(path, params)
        headers = self.sign("GET", rel, "application/octet-stream")
        ws_url = re.sub(r"^http", "ws", self.endpoint) + rel
        try:
            # No client heartbeat: the server pings every 30 s, and a per-run socket's own heartbeat
            # timer would keep it alive long after it closed.
            return await self.http.ws_connect(URL(ws_url, encoded=True), headers=headers, ssl=self.ssl,
                                              max_msg_size=64 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as e:
            # aiohttp keeps no body of a refused handshake, only its own "Invalid response status".
            raise error_from_response(e.status, "", method="GET", path=path) from None
        except aiohttp.ClientConnectorError as e:
            raise self._connection_error(e) from None
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as e:
            raise self._connection_error(e) from None


# OpenSSL's verification codes (X509_V_ERR_*) → why, in words
_CERTIFICATE_REASONS = {
    18: "its certificate is self-signed", 19: "its certificate chain ends in a self-signed CA this machine "
    "does not trust", 20: "its certificate is signed by a CA this machine does not trust",
    21: "its certificate is signed by a CA this machine does not trust", 2: "its certificate's issuer is unknown here",
    10: "its certificate has expired", 9: "its certificate is not valid yet",
    62: "its certificate is for another name", 64: "its certificate is for another address",
}


def certificate_error(error: aiohttp.ClientConnectorCertificateError) -> CertificateNotTrusted:
    """One plain sentence: which host, why its certificate was refused, and the two fixes."""
    cause = error.certificate_error
    code = getattr(cause, "verify_code", None)
    why = _CERTIFICATE_REASONS.get(code) or getattr(cause, "verify_message", None) or str(cause)
    host = error.host + (f":{error.port}" if error.port not in (None, 443) else "")
    return CertificateNotTrusted(f"The TLS certificate of {host} was refused: {why}")


async def _read_response(resp: aiohttp.ClientResponse, expect: str) -> Any:
    """A successful response's body as ``expect`` says."""
    if expect == "parts":  # multipart/mixed: [(part headers, bytes)]
        reader = aiohttp.MultipartReader.from_response(resp)
        parts = []
        while (part := await reader.next()) is not None:
            parts.append((dict(part.headers), bytes(await part.read(decode=False))))
        return parts
    if resp.status == 204 or expect == "none":
        await resp.read()
        return None
    raw = await resp.read()
    if expect == "bytes":
        return raw
    if not raw:
        return None
    try:
        return loads(raw)
    except ValueError:
        return raw.decode(resp.get_encoding(), errors="replace")
