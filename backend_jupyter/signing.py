"""Backend.AI request signing (HMAC keypair auth), for every API era.

The client signs with :func:`sign_request`; the embedded server checks with :func:`verify`.
Both build the same string to sign::

    METHOD\\npath?query\\ndate\\nhost:<host>\\ncontent-type:<mime>\\nx-backendai-version:<ver>\\n<body hash>

and derive the key chain ``HMAC(HMAC(secret, yyyymmdd), host)``.  Era rules (docs/protocol.md, "Signing"):

* API versions below ``v4.20181215`` hash the real request body (multipart bodies hash as b'');
  later versions always hash ``b''``.
* SDK 1.4.x signs ``/v2/<path>`` without the query string; 18.12+ signs path and query as sent.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

BODY_HASH_CUTOFF = "v4.20181215"
DATE_WINDOW = timedelta(minutes=15)
SIGN_METHOD_PREFIX = "HMAC-"


class SignatureError(ValueError):
    """The Authorization or Date header cannot be used to authenticate the request."""


@dataclass(frozen=True)
class Credential:
    """What an ``Authorization: BackendAI ...`` header carries."""

    hash_type: str
    access_key: str
    signature: str


def body_for_hash(api_version: str, content_type: str, body: bytes) -> bytes:
    """The bytes hashed into the signature: the real body only for the oldest API versions."""
    if api_version < BODY_HASH_CUTOFF and content_type != "multipart/form-data":
        return body
    return b""


def string_to_sign(
    method: str,
    rel_url: str,
    date: str,
    host: str,
    content_type: str,
    api_version: str,
    body: bytes = b"",
    *,
    hash_type: str = "sha256",
    version_header: str = "x-backendai-version",
) -> str:
    body_hash = hashlib.new(hash_type, body).hexdigest()
    return (
        f"{method.upper()}\n{rel_url}\n{date}\nhost:{host}\n"
        f"content-type:{content_type.lower()}\n{version_header}:{api_version}\n{body_hash}"
    )


def signing_key(secret_key: str, date: datetime, host: str, hash_type: str = "sha256") -> bytes:
    k1 = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hash_type).digest()
    return hmac.new(k1, host.encode(), hash_type).digest()


def signature(
    secret_key: str,
    sign_str: str,
    date: datetime,
    host: str,
    hash_type: str = "sha256",
) -> str:
    return hmac.new(signing_key(secret_key, date, host, hash_type), sign_str.encode(), hash_type).hexdigest()


def authorization_header(access_key: str, sig: str, hash_type: str = "sha256") -> str:
    return f"BackendAI signMethod=HMAC-{hash_type.upper()}, credential={access_key}:{sig}"


def sign_request(
    *,
    method: str,
    rel_url: str,
    date: datetime,
    host: str,
    content_type: str,
    api_version: str,
    access_key: str,
    secret_key: str,
    body: bytes = b"",
    hash_type: str = "sha256",
) -> dict[str, str]:
    """Headers (Date, X-BackendAI-Version, Authorization) that sign one request."""
    date_str = date.isoformat()
    hashed = body_for_hash(api_version, content_type, body)
    sign_str = string_to_sign(
        method, rel_url, date_str, host, content_type, api_version, hashed, hash_type=hash_type
    )
    sig = signature(secret_key, sign_str, date, host, hash_type)
    return {
        "Date": date_str,
        "X-BackendAI-Version": api_version,
        "Authorization": authorization_header(access_key, sig, hash_type),
    }


def parse_authorization(header: str) -> Credential:
    """Parse ``BackendAI signMethod=HMAC-SHA256, credential=AK:SIG`` (``Sorna`` is accepted too)."""
    kind, _, params = header.strip().partition(" ")
    if kind not in ("BackendAI", "Sorna"):
        raise SignatureError("Invalid authorization type name")
    fields = {}
    for part in params.split(","):
        key, eq, value = part.strip().partition("=")
        if eq:
            fields[key.strip()] = value.strip()
    method = fields.get("signMethod", "")
    access_key, colon, sig = fields.get("credential", "").partition(":")
    if not method.upper().startswith(SIGN_METHOD_PREFIX) or not colon or not access_key or not sig:
        raise SignatureError("Missing or malformed authorization parameters")
    hash_type = method[len(SIGN_METHOD_PREFIX):].lower()
    if hash_type not in hashlib.algorithms_guaranteed or hash_type.startswith("shake"):
        raise SignatureError(f"Unsupported signature hash type {hash_type!r}")
    return Credential(hash_type, access_key, sig)


def parse_date(raw: str) -> datetime:
    """Parse an ISO-8601 (SDK) or RFC-1123 date; naive dates are UTC."""
    raw = raw.strip()
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            raise SignatureError("Date/time sync error (unparsable Date header)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def check_date_window(date: datetime, now: datetime | None = None) -> None:
    now = now or datetime.now(timezone.utc)
    if not (now - DATE_WINDOW < date < now + DATE_WINDOW):
        raise SignatureError("Date/time sync error (the request date is more than 15 minutes off)")


def verify(
    credential: Credential,
    secret_key: str,
    *,
    method: str,
    rel_urls: list[str],
    raw_date: str,
    date: datetime,
    hosts: list[str],
    content_type: str,
    api_version: str,
    version_header: str,
    body: bytes,
) -> bool:
    """Constant-time check of a signature against every acceptable (path, host) spelling."""
    hashed = body_for_hash(api_version, content_type, body)
    ok = False
    for rel_url in rel_urls:
        for host in hosts:
            sign_str = string_to_sign(
                method, rel_url, raw_date, host, content_type, api_version, hashed,
                hash_type=credential.hash_type, version_header=version_header,
            )
            expected = signature(secret_key, sign_str, date, host, credential.hash_type)
            ok |= hmac.compare_digest(expected.encode(), credential.signature.lower().encode())
    return ok
