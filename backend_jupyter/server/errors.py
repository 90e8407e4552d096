"""Errors as the Backend.AI manager reports them: RFC 7807 ``application/problem+json`` bodies.

Each body carries ``type`` (``https://api.backend.ai/probs/<slug>``), ``title``, ``error_code`` and,
when there is more to say, ``msg`` and ``data`` (see docs/protocol.md, "Errors").  The slugs, titles,
codes and statuses are the manager's own, so a client tells the embedded server's errors apart
exactly as it does a real manager's.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_BASE = "https://api.backend.ai/probs/"


class APIError(Exception):
    """A request the server refuses or cannot serve; :meth:`response` is what the client sees."""

    status = 500
    slug = "internal-server-error"
    title = "Internal server error."
    error_code = "backendai_generic_internal-error"

    def __init__(self, msg: str | None = None, *, data: Any = None):
        super().__init__(msg or self.title)
        self.msg = msg
        self.data = data

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "error_code": self.error_code,
        }
        if self.msg:
            body["msg"] = self.msg
        if self.data is not None:
            body["data"] = self.data
        return body

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body()),
            content_type="application/problem+json",
        )


# The manager's problems this server answers (NoSuchSession and NoSuchFolder are its session-not-found
# and vfolder-not-found; the names say they are the server's, apart from the client's errors).
class GenericBadRequest(APIError):
    status, slug, error_code = 400, "generic-bad-request", "backendai_generic_bad-request"
    title = "Bad request."


class InvalidAPIParameters(APIError):
    status, slug, error_code = 400, "invalid-api-params", "api_parsing_invalid-parameters"
    title = "Missing or invalid API parameters."


class InvalidAuthParameters(APIError):
    status, slug, error_code = 400, "invalid-auth-params", "user_auth_bad-request"
    title = "Missing or invalid authorization parameters."


class GenericForbidden(APIError):
    status, slug, error_code = 403, "generic-forbidden", "backendai_generic_forbidden"
    title = "Forbidden operation."


class AuthorizationFailed(APIError):
    status, slug, error_code = 401, "auth-failed", "user_auth_unauthorized"
    title = "Credential/signature mismatch."


class URLNotFound(APIError):
    status, slug, error_code = 404, "url-not-found", "api_url_not-found"
    title = "Unknown URL path."


class MethodNotAllowed(APIError):
    status, slug, error_code = 405, "method-not-allowed", "api_method_not-allowed"
    title = "Method not allowed."


class NoSuchSession(APIError):
    status, slug, error_code = 404, "session-not-found", "session_read_not-found"
    title = "No such session."


class NoSuchFolder(APIError):
    status, slug, error_code = 404, "vfolder-not-found", "vfolder_read_not-found"
    title = "No such virtual folder."


class ImageNotFound(APIError):
    status, slug, error_code = 404, "image-not-found", "image_read_not-found"
    title = "No such environment image."


class FileNotFound(APIError):
    status, slug, error_code = 404, "object-not-found", "storage_read_not-found"
    title = "No such file or directory."


class SessionAlreadyExists(APIError):
    status, slug, error_code = 400, "session-already-exists", "session_create_already-exists"
    title = "The session already exists but you requested not to reuse existing one."


class VFolderAlreadyExists(APIError):
    status, slug, error_code = 400, "vfolder-already-exists", "vfolder_create_already-exists"
    title = "The virtual folder already exists with the same name."


class VFolderOperationFailed(APIError):
    status, slug, error_code = 400, "vfolder-operation-failed", "vfolder_update_bad-request"
    title = "Virtual folder operation has failed."


class RequestTooLarge(APIError):
    status, slug, error_code = 413, "request-too-large", "api_request_too-large"
    title = "The request body is too large."


class ServiceUnavailable(APIError):
    status, slug, error_code = 503, "service-unavailable", "backendai_generic_unavailable"
    title = "Service unavailable."


class KernelExecutionFailed(APIError):
    status, slug, error_code = 500, "kernel-execution-failed", "session_execute_failed"
    title = "Executing user code in the kernel has failed."


class KernelCreationFailed(APIError):
    status, slug, error_code = 500, "kernel-creation-failed", "session_create_failed"
    title = "Kernel creation has failed."


InternalServerError = APIError
