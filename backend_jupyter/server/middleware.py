"""The middlewares every request passes, outermost first: the access log, errors as problem
bodies, and API version plus signature checks."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .auth import PUBLIC, authenticate, parse_version, request_version
from .errors import (
    APIError,
    GenericBadRequest,
    InternalServerError,
    MethodNotAllowed,
    RequestTooLarge,
    URLNotFound,
)
from .state import KEYS

log = logging.getLogger("backend_jupyter.server")
access_log = logging.getLogger("backend_jupyter.server.access")


@web.middleware
async def log_access(request: web.Request, handler) -> web.StreamResponse:
    """One line per request: method, path, status and time taken."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        # The path only: query strings may carry transfer tokens.
        access_log.info(
            "%s %s %d %.1fms", request.method, request.path, status,
            (time.perf_counter() - started) * 1000,
        )


@web.middleware
async def problems(request: web.Request, handler) -> web.StreamResponse:
    """Errors as the manager's problem bodies; anything unexpected is logged and becomes a 500."""
    try:
        response = await handler(request)
    except APIError as e:
        return e.response()
    except web.HTTPNotFound:
        return URLNotFound(data=request.path).response()
    except web.HTTPMethodNotAllowed:
        return MethodNotAllowed().response()
    except web.HTTPRequestEntityTooLarge:
        return RequestTooLarge().response()
    except HttpProcessingError as e:  # a malformed body, found while a handler read it
        return GenericBadRequest(f"Malformed request: {str(e.message)[:200]}").response()
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return InternalServerError().response()
    return response


async def server_header(request: web.Request, response: web.StreamResponse) -> None:
    """``Server: BackendAI`` on every answer, as a manager sends it: errors, streamed downloads and
    websocket upgrades too (an ``on_response_prepare`` signal, so it reaches responses a handler
    prepares itself)."""
    response.headers["Server"] = "BackendAI"


@web.middleware
async def authenticated(request: web.Request, handler) -> web.StreamResponse:
    """The request's API version; then, unless the route is public, its signature's access key."""
    version, header = request_version(request)
    request["api_version_str"] = version
    request["api_version_header"] = header
    request["api_version"] = parse_version(version)
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    if getattr(request.match_info.handler, PUBLIC, False):
        return await handler(request)
    request["access_key"] = await authenticate(request, request.app[KEYS])
    return await handler(request)


MIDDLEWARES = (log_access, problems, authenticated)
