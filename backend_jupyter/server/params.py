"""Request parameters: reading them, checking them, and the JSON answers handlers give.

A handler reads the query string merged with the JSON body (:func:`read_params`), then takes each
value through an ``opt_*``/``req_*`` helper.  A value of the wrong type, too long, missing or not
sendable to a kernel or the OS is the client's mistake: an ``InvalidAPIParameters`` 400.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..fastjson import dumpb
from ..protocol import RUN_ID_RE, SESSION_NAME_RE
from .errors import GenericBadRequest, InvalidAPIParameters, RequestTooLarge

MAX_JSON_BODY = 4 * 1024 * 1024
MAX_UPLOAD = 1024**3
MULTIPART_OVERHEAD = 16 * 1024**2  # room for part headers and boundaries around MAX_UPLOAD bytes


async def read_params(request: web.Request) -> dict[str, Any]:
    """Query parameters merged with the JSON body (GET/DELETE carry JSON bodies in this API)."""
    params: dict[str, Any] = {}
    for key in request.query.keys():
        values = request.query.getall(key)
        params[key] = values if len(values) > 1 else values[0]
    if request.body_exists and request.content_type != "multipart/form-data":
        params.update(await _json_body(request))
    return params


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (empty if the body is blank)."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise RequestTooLarge(f"JSON bodies are limited to {MAX_JSON_BODY} bytes.")
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise GenericBadRequest("Malformed request body.") from None
    if not isinstance(body, dict):
        raise InvalidAPIParameters("The request body must be a JSON object.")
    return body


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """A JSON response encoded with orjson (execute results carry megabytes of output)."""
    return web.Response(body=dumpb(data), status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


def owner(request: web.Request) -> str:
    """The access key that signed the request: everything it names must belong to this key."""
    return request["access_key"]


def api_major(request: web.Request) -> int:
    return request["api_version"][0]


# -- single values --------------------------------------------------------------------------------

def _first(params: dict, keys: tuple[str, ...], kind: type, what: str) -> tuple[str, Any] | None:
    """``(key, value)`` of the first of ``keys`` present (a value's spellings across API
    versions), which must be a ``kind``; None if there is none."""
    for key in keys:
        value = params.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise InvalidAPIParameters(f"{key!r} must be {what}.")
        return key, value
    return None


def opt_str(params: dict, *keys: str, default: str | None = None, max_len: int = 1 << 20) -> str | None:
    found = _first(params, keys, str, "a string")
    if found is None:
        return default
    key, value = found
    if len(value) > max_len:
        raise InvalidAPIParameters(f"{key!r} is too long (at most {max_len} characters).")
    return value


def req_str(params: dict, *keys: str, max_len: int = 1 << 20) -> str:
    value = opt_str(params, *keys, max_len=max_len)
    if value is None:
        raise InvalidAPIParameters(f"{keys[0]!r} is missing.")
    return value


def opt_dict(params: dict, *keys: str) -> dict:
    found = _first(params, keys, dict, "an object")
    return found[1] if found is not None else {}


def opt_bool(params: dict, key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise InvalidAPIParameters(f"{key!r} must be a boolean.")


def str_list(params: dict, key: str, *, max_items: int = 1000, from_query: bool = True) -> list[str]:
    """A list of strings; a single string too when it may come from a query parameter."""
    value = params.get(key)
    if value is None:
        return []
    if isinstance(value, str) and from_query:
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidAPIParameters(f"{key!r} must be a list of strings.")
    if len(value) > max_items:
        raise InvalidAPIParameters(f"{key!r} has too many items (at most {max_items}).")
    return value


def req_str_list(params: dict, key: str, *, max_items: int) -> list[str]:
    """:func:`str_list` that must not be empty."""
    value = str_list(params, key, max_items=max_items)
    if not value:
        raise InvalidAPIParameters(f"{key!r} is missing.")
    return value


# -- text the kernel and the OS must accept ---------------------------------------------------------

def encodable(text: str) -> bool:
    """Whether ``text`` survives the UTF-8 (surrogateescape) encoding that kernel messages,
    commands and the OS use; lone surrogates from JSON ``\\ud800`` escapes do not."""
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeError:
        return False
    return True


def env_text_ok(text: str) -> bool:
    """Whether ``text`` can go into a process environment (no NUL, encodable for the OS)."""
    return "\x00" not in text and encodable(text)


def kernel_text(value: str | None, key: str) -> str | None:
    """``value`` if it can be sent to a kernel or shell, else a 400."""
    if value is not None and not encodable(value):
        raise InvalidAPIParameters(f"{key!r} is not valid Unicode text (lone surrogates).")
    return value


def validate_session_name(name: Any) -> str:
    if not isinstance(name, str) or not SESSION_NAME_RE.match(name):
        raise InvalidAPIParameters(
            "Invalid session name: use 4-64 letters, digits, '_', '.' or '-' "
            "(starting and ending with a letter or digit)."
        )
    return name


def validate_run_id(run_id: Any) -> str | None:
    if run_id is None:
        return None
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise InvalidAPIParameters("Invalid runId: use at most 64 letters, digits, '_', '.', ':' or '-'.")
    return run_id


def check_upload_length(request: web.Request) -> None:
    """Refuse a multipart upload whose declared length cannot fit the limit, before reading it."""
    if request.content_type != "multipart/form-data":
        raise InvalidAPIParameters("Uploads must be multipart/form-data with 'src' parts.")
    if request.content_length is not None and request.content_length > MAX_UPLOAD + MULTIPART_OVERHEAD:
        raise RequestTooLarge(f"Uploads are limited to {MAX_UPLOAD} bytes per request.")
