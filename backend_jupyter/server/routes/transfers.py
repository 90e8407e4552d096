"""Token transfers, the embedded server's "storage proxy": ``/storage/upload`` (tus 1.0.0) and
``/storage/download``.

``request-upload`` and ``request-download`` on a vfolder hand out a :class:`TransferToken` and the
URL to use it at.  These routes are public: the token in the query string is the credential, valid
for one file, one direction and :data:`TRANSFER_TOKEN_TTL` seconds.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .. import files
from ..auth import public
from ..errors import FileNotFound
from ..params import MAX_UPLOAD, owner
from ..state import FOLDERS
from ..vfolders import LocalFolder

TRANSFER_TOKEN_TTL = 3600.0
TUS_HEADERS = {"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0", "Tus-Max-Size": str(MAX_UPLOAD)}


@dataclass
class TransferToken:
    kind: str  # "upload" | "download"
    owner: str
    folder_id: str
    path: str
    size: int
    expires: float


TOKENS = web.AppKey("transfer_tokens", dict[str, TransferToken])


def issue_token(request: web.Request, kind: str, folder: LocalFolder, path: str, size: int) -> dict:
    """A new token for ``path`` in ``folder``, and the URL to use it at."""
    token = secrets.token_urlsafe(32)
    request.app[TOKENS][token] = TransferToken(
        kind, owner(request), folder.id, path, size, time.monotonic() + TRANSFER_TOKEN_TTL
    )
    url = f"{request.scheme}://{request.host}/storage/{kind}"
    return {"token": token, "url": url}


def expire_tokens(tokens: dict[str, TransferToken]) -> None:
    now = time.monotonic()
    for token, info in list(tokens.items()):
        if info.expires < now:
            del tokens[token]


def _redeem(request: web.Request, kind: str) -> tuple[TransferToken, Path]:
    """The request's valid ``kind`` token and the file it is for; a 403 otherwise."""
    token = request.app[TOKENS].get(request.query.get("token", ""))
    if token is None or token.kind != kind or token.expires < time.monotonic():
        raise web.HTTPForbidden(text="Invalid or expired transfer token.")
    folders = request.app[FOLDERS]
    root = folders.path(folders.get(token.owner, token.folder_id))
    return token, files.confined(root, token.path, allow_work_prefix=False)


@public
async def tus_upload(request: web.Request) -> web.StreamResponse:
    """tus: ``OPTIONS`` (capabilities), ``HEAD`` (how much has arrived), ``PATCH`` (more bytes)."""
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={**TUS_HEADERS, "Tus-Extension": ""})
    token, target = _redeem(request, "upload")
    partial_size = files.regular_size(files.partial_path(target))  # symlinks are never followed
    offset = partial_size if partial_size is not None else (token.size if target.exists() else 0)
    if request.method == "HEAD":
        return web.Response(status=200, headers={
            **TUS_HEADERS, "Upload-Offset": str(offset), "Upload-Length": str(token.size),
            "Cache-Control": "no-store",
        })
    if request.method != "PATCH":
        raise web.HTTPMethodNotAllowed(request.method, ["OPTIONS", "HEAD", "PATCH"])
    return await _append(request, token, target, offset, resumable=partial_size is not None)


def _conflict(offset: int) -> web.Response:
    return web.Response(status=409, headers={**TUS_HEADERS, "Upload-Offset": str(offset)})


async def _append(request: web.Request, token: TransferToken, target: Path, offset: int, *,
                  resumable: bool) -> web.Response:
    """A PATCH: the body's bytes at ``offset`` of the partial file; the file is done at its size."""
    if request.content_type != "application/offset+octet-stream":
        return web.Response(status=415, text="Content-Type must be application/offset+octet-stream")
    try:
        claimed = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        return web.Response(status=400, text="Missing or invalid Upload-Offset header")
    if claimed != offset or not resumable:  # not resumable: complete, or never requested
        return _conflict(offset)
    if request.content_length is not None and offset + request.content_length > token.size:
        return web.Response(status=413, text="More data than the announced size")
    partial = files.partial_path(target)
    fd = files.open_append(partial)
    if fd is None:
        return _conflict(offset)
    with os.fdopen(fd, "ab") as f:
        async for chunk in request.content.iter_chunked(files.CHUNK):
            offset += len(chunk)
            if offset > token.size:
                return web.Response(status=413, text="More data than the announced size")
            f.write(chunk)
    if offset == token.size:
        partial.replace(target)
    return web.Response(status=204, headers={**TUS_HEADERS, "Upload-Offset": str(offset)})


@public
async def token_download(request: web.Request) -> web.StreamResponse:
    _token, target = _redeem(request, "download")
    if not target.is_file():
        raise FileNotFound()
    return web.FileResponse(
        target, headers={"Content-Disposition": f"attachment; filename={files.quoted_filename(target.name)}"}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_routes([
        web.route("*", "/storage/upload", tus_upload),
        web.get("/storage/download", token_download),
    ])
