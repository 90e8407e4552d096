"""An asyncio client for the Backend.AI API (compute sessions and virtual folders)."""

from .api import CLIENT_API_VERSION, APIClient
from .errors import (
    AlreadyExists,
    APIVersionUnsupported,
    AuthenticationFailed,
    BackendAPIError,
    BackendError,
    BadRequest,
    CertificateNotTrusted,
    Forbidden,
    NotFound,
    NotSupported,
    QuotaExceeded,
    RateLimited,
    RequestTimeout,
    ServerError,
    ServerUnreachable,
    SessionNotFound,
    VFolderNotFound,
)
from .session import ComputeSession, FileEntry
from .vfolder import TransferFailed, VFolder

__all__ = [
    "APIClient", "CLIENT_API_VERSION", "ComputeSession", "FileEntry", "VFolder",
    "AlreadyExists", "APIVersionUnsupported", "AuthenticationFailed", "BackendAPIError", "BackendError",
    "BadRequest", "CertificateNotTrusted", "Forbidden", "NotFound", "NotSupported", "QuotaExceeded", "RateLimited", "RequestTimeout", "ServerError",
    "ServerUnreachable", "SessionNotFound", "TransferFailed", "VFolderNotFound",
]
