"""Typed errors of the Backend.AI client, each with a plain-words message and the fix.

Every error raised by :mod:`backend_jupyter.client` is a :class:`BackendError`.  Errors answered by
the server carry its ``status``, ``title``, ``msg``, ``error_code`` and ``type``.  No message ever
contains the secret key.
"""

from __future__ import annotations

import json
from typing import Any


class BackendError(Exception):
    """Base of all client errors.  ``str()`` is one line a user can act on."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return self.args[0]

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ServerUnreachable(BackendError):
    hint = "check BACKEND_ENDPOINT and that the server is running"


class CertificateNotTrusted(BackendError):
    """The server's TLS certificate failed verification (the server was reached)."""

    hint = ("trust its CA with BACKEND_CA_BUNDLE=/path/to/ca.pem (SSL_CERT_FILE works too), or, knowingly, "
            "set BACKEND_SKIP_SSLCERT_VALIDATION=true")


class RequestTimeout(BackendError):
    hint = "the server is slow or unreachable; raise BACKEND_READ_TIMEOUT/BACKEND_CONNECTION_TIMEOUT if it is just slow"


class APIVersionUnsupported(BackendError):
    hint = "use a server (manager) version that offers this, or pin another BACKEND_API_VERSION"


class BackendAPIError(BackendError):
    """The server answered with an error status."""

    status: int = 0
    summary = "The Backend.AI server refused the request"

    def __init__(self, status: int, body: dict[str, Any], *, method: str = "", path: str = ""):
        self.status = status
        self.body = body
        self.title = str(body.get("title") or "")
        self.msg = str(body.get("msg") or "")
        self.error_code = str(body.get("error_code") or "")
        self.type = str(body.get("type") or "")
        self.data = body.get("data")
        self.method, self.path = method, path
        detail = "; ".join(x for x in (self.title, self.msg) if x)
        code = f", {self.error_code}" if self.error_code else ""
        super().__init__(f"{self.summary} (HTTP {status}{code}): {detail}" if detail
                         else f"{self.summary} (HTTP {status}{code})")

    @property
    def slug(self) -> str:
        return self.type.rsplit("/", 1)[-1]


class BadRequest(BackendAPIError):
    summary = "The Backend.AI server rejected the request as invalid"


class AuthenticationFailed(BackendAPIError):
    summary = "Backend.AI rejected the access key or signature"
    hint = "check BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY (and that this machine's clock is right)"


class Forbidden(BackendAPIError):
    summary = "The access key is not allowed to do this"
    hint = "ask the cluster administrator for the needed permission or project membership"


class NotFound(BackendAPIError):
    summary = "Not found on the Backend.AI server"


class SessionNotFound(NotFound):
    summary = "The compute session does not exist (it may have been terminated by an idle or execution timeout)"
    hint = "run the cell again to start a new session"


class VFolderNotFound(NotFound):
    summary = "The virtual folder does not exist"
    hint = "create it first, or check the name in BACKEND_VFOLDER_MOUNTS / -m"


class AlreadyExists(BackendAPIError):
    summary = "It already exists"


class QuotaExceeded(BackendAPIError):
    summary = "A quota of this access key is exhausted"
    hint = "free resources (destroy idle sessions, delete files) or ask for a larger quota"


class RateLimited(BackendAPIError):
    summary = "Too many requests: the Backend.AI server is rate-limiting this access key"

    def __init__(self, status: int, body: dict[str, Any], *, retry_after: float | None = None, **kw):
        super().__init__(status, body, **kw)
        self.retry_after = retry_after


class NotSupported(BackendAPIError):
    summary = "The Backend.AI server does not support this operation"
    hint = "it is not available on this manager version"


class ServerError(BackendAPIError):
    summary = "The Backend.AI server failed while handling the request"
    hint = "the session is usually still usable; retry, and report the error if it persists"


def parse_body(text: str) -> dict[str, Any]:
    """The error body as a dict (problem+json); any other body becomes ``{"title": text}``."""
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"title": (text or "").strip()[:500]}
    return body


def error_from_response(status: int, text: str, *, retry_after: float | None = None,
                        method: str = "", path: str = "") -> BackendAPIError:
    body = parse_body(text)
    slug = str(body.get("type") or "").rsplit("/", 1)[-1]
    code = str(body.get("error_code") or "")
    kw = {"method": method, "path": path}
    if status == 401:
        return AuthenticationFailed(status, body, **kw)
    if status == 403:
        return Forbidden(status, body, **kw)
    if status == 404:
        if "vfolder" in slug or "folder" in slug or code.startswith("vfolder"):
            return VFolderNotFound(status, body, **kw)
        if "session" in slug or "kernel" in slug or code.startswith("session"):
            return SessionNotFound(status, body, **kw)
        if "/session/" in path or "/kernel/" in path:
            return SessionNotFound(status, body, **kw)
        if "/folders/" in path:
            return VFolderNotFound(status, body, **kw)
        return NotFound(status, body, **kw)
    if status == 412:
        return QuotaExceeded(status, body, **kw)
    if status == 429:
        return RateLimited(status, body, retry_after=retry_after, **kw)
    if status == 501 or slug == "not-implemented":
        return NotSupported(status, body, **kw)
    if status >= 500:
        return ServerError(status, body, **kw)
    if "already-exists" in slug or "already-exists" in code:
        return AlreadyExists(status, body, **kw)
    if status in (400, 409) and "already exists" in str(body.get("msg") or "").lower():
        # 26.9.6: a duplicate vfolder name is a generic 400 (api_generic_invalid-parameters), said in msg.
        return AlreadyExists(status, body, **kw)
    if status == 400:
        return BadRequest(status, body, **kw)
    return BackendAPIError(status, body, **kw)
