"""API version negotiation and HMAC request verification for the embedded server."""

from __future__ import annotations

import re

from aiohttp import web

from .. import signing
from .errors import AuthorizationFailed, GenericBadRequest, InvalidAuthParameters
from .keys import KeyStore

# The newest API version served in full.  SDK 23.9.10 warns when a server is newer than its
# v7.20230615 and SDK 26.9.6 warns when it is older, so this is also the one neither warns about.
LATEST_API_VERSION = "v7.20230615"
VALID_VERSIONS = frozenset({
    "v2.20170315", "v3.20170615",
    "v4.20181215", "v4.20190115", "v4.20190315", "v4.20190615",
    "v5.20191215",
    "v6.20200815", "v6.20210815", "v6.20220315", "v6.20220615", "v6.20230315",
    "v7.20230615",
    "v8.20240315", "v8.20240915",
    "v9.20250722",
})
# Version assumed when a request has no version header: the newest of the path's major.
LATEST_REV_DATES = {
    2: "20170315", 3: "20170615", 4: "20190615", 5: "20191215", 6: "20230315", 7: "20230615",
    8: "20240915", 9: "20250722",
}
_PATH_VERSION = re.compile(r"^/v(\d+)/")
PUBLIC = "public"  # route attribute: no signature needed


def public(handler):
    setattr(handler, PUBLIC, True)
    return handler


def request_version(request: web.Request) -> tuple[str, str]:
    """``(version string, header name used in the signature)``."""
    for header, sign_name in (("X-BackendAI-Version", "x-backendai-version"),
                              ("X-Sorna-Version", "x-sorna-version")):
        value = request.headers.get(header)
        if value is not None:
            if value not in VALID_VERSIONS:
                raise GenericBadRequest("Unsupported API version.")
            return value, sign_name
    match = _PATH_VERSION.match(request.path)
    major = int(match.group(1)) if match else 5
    if major not in LATEST_REV_DATES:
        raise GenericBadRequest("Unsupported API version.")
    return f"v{major}.{LATEST_REV_DATES[major]}", "x-backendai-version"


def parse_version(version: str) -> tuple[int, str]:
    major, _, date = version[1:].partition(".")
    return int(major), date


def _host_variants(host: str, scheme: str) -> list[str]:
    """The Host header, plus the spelling with/without the scheme's default port
    (the SDK signs the endpoint's netloc as typed; HTTP clients may drop a default port)."""
    default = "443" if scheme == "https" else "80"
    if host.endswith(":" + default):
        return [host, host[: -len(default) - 1]]
    if re.search(r":\d+$", host) is None:
        return [host, f"{host}:{default}"]
    return [host]


async def authenticate(request: web.Request, keys: KeyStore) -> str:
    """Verify the request's signature; returns the caller's access key."""
    if not request.headers.get("Authorization"):  # as a real manager: 401 before any date check
        raise AuthorizationFailed("Unauthorized access")
    raw_date = (
        request.headers.get("Date")
        or request.headers.get("X-BackendAI-Date")
        or request.headers.get("X-Sorna-Date")
    )
    if not raw_date:
        raise InvalidAuthParameters("Date/time sync error (missing Date header)")
    try:
        date = signing.parse_date(raw_date)
        signing.check_date_window(date)
    except signing.SignatureError as e:
        raise InvalidAuthParameters(str(e)) from None
    header = request.headers.get("Authorization")
    if not header:
        raise AuthorizationFailed("Unauthorized access")
    try:
        credential = signing.parse_authorization(header)
    except signing.SignatureError as e:
        raise InvalidAuthParameters(str(e)) from None
    secret = keys.secret_for(credential.access_key)
    if secret is None:
        raise AuthorizationFailed("Access key not found")
    version = request["api_version_str"]
    body = b""
    if version < signing.BODY_HASH_CUTOFF and request.content_type != "multipart/form-data":
        body = await request.read()
    rel_urls = [request.raw_path]
    if version <= signing.BODY_HASH_CUTOFF and "?" in request.raw_path:
        rel_urls.append(request.raw_path.split("?", 1)[0])  # SDK 1.x signed the path only
    try:
        ok = signing.verify(
            credential, secret,
            method=request.method,
            rel_urls=rel_urls,
            raw_date=raw_date,
            date=date,
            hosts=_host_variants(request.host, request.scheme),
            content_type=request.content_type,
            api_version=version,
            version_header=request["api_version_header"],
            body=body,
        )
    except UnicodeError:
        # Header bytes that are not UTF-8 (kept as lone surrogates) cannot have been signed.
        ok = False
    if not ok:
        raise AuthorizationFailed("HMAC signature mismatch")
    return credential.access_key
