"""Errors as the Backend.AI manager reports them: RFC 7807 ``application/problem+json`` bodies.

Each body carries ``type`` (``https://api.backend.ai/probs/<slug>``), ``title``, ``error_code`` and,
when there is more to say, ``msg`` and ``data`` (PROTOCOL.md §1 "Error response body", §7).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_BASE = "https://api.backend.ai/probs/"


class APIError(Exception):
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


def _error(name: str, status: int, slug: str, title: str, error_code: str) -> type[APIError]:
    return type(
        name,
        (APIError,),
        {"status": status, "slug": slug, "title": title, "error_code": error_code},
    )


GenericBadRequest = _error(
    "GenericBadRequest", 400, "generic-bad-request", "Bad request.", "backendai_generic_bad-request"
)
InvalidAPIParameters = _error(
    "InvalidAPIParameters", 400, "invalid-api-params", "Missing or invalid API parameters.",
    "api_parsing_invalid-parameters",
)
InvalidAuthParameters = _error(
    "InvalidAuthParameters", 400, "invalid-auth-params",
    "Missing or invalid authorization parameters.", "user_auth_bad-request",
)
AuthorizationFailed = _error(
    "AuthorizationFailed", 401, "auth-failed", "Credential/signature mismatch.",
    "user_auth_unauthorized",
)
URLNotFound = _error("URLNotFound", 404, "url-not-found", "Unknown URL path.", "api_url_not-found")
MethodNotAllowed = _error(
    "MethodNotAllowed", 405, "method-not-allowed", "Method not allowed.", "api_method_not-allowed"
)
SessionNotFound = _error(
    "SessionNotFound", 404, "session-not-found", "No such session.", "session_read_not-found"
)
VFolderNotFound = _error(
    "VFolderNotFound", 404, "vfolder-not-found", "No such virtual folder.", "vfolder_read_not-found"
)
ImageNotFound = _error(
    "ImageNotFound", 404, "image-not-found", "No such environment image.", "image_read_not-found"
)
FileNotFound = _error(
    "FileNotFound", 404, "object-not-found", "No such file or directory.", "storage_read_not-found"
)
SessionAlreadyExists = _error(
    "SessionAlreadyExists", 400, "session-already-exists", "The session already exists but you requested not to reuse existing one.",
    "session_create_already-exists",
)
VFolderAlreadyExists = _error(
    "VFolderAlreadyExists", 400, "vfolder-already-exists", "The virtual folder already exists with the same name.",
    "vfolder_create_already-exists",
)
VFolderOperationFailed = _error(
    "VFolderOperationFailed", 400, "vfolder-operation-failed", "Virtual folder operation has failed.",
    "vfolder_update_bad-request",
)
RequestTooLarge = _error(
    "RequestTooLarge", 413, "request-too-large", "The request body is too large.",
    "api_request_too-large",
)
InternalServerError = APIError
ServiceUnavailable = _error(
    "ServiceUnavailable", 503, "service-unavailable", "Service unavailable.",
    "backendai_generic_unavailable",
)
KernelExecutionFailed = _error(
    "KernelExecutionFailed", 500, "kernel-execution-failed", "Executing user code in the kernel has failed.",
    "session_execute_failed",
)
KernelCreationFailed = _error(
    "KernelCreationFailed", 500, "kernel-creation-failed", "Kernel creation has failed.",
    "session_create_failed",
)
