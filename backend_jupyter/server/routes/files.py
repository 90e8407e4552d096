"""A session's files: upload into its work directory, download as tar archives, list a directory.

Paths are relative to the work directory (or absolute under ``/home/work``); mounted folders are
reachable through their mount points.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.multipart import MultipartWriter

from .. import files
from ..params import (
    json_response,
    no_content,
    opt_str,
    read_params,
    req_str,
    req_str_list,
)
from ..sessions import LocalSession
from . import under
from .sessions import PREFIXES, session_of


def _paths(session: LocalSession, names: list[str]) -> list[Path]:
    return [
        files.confined(session.workdir, name, extra_roots=session.mount_roots(), must_exist=True)
        for name in names
    ]


async def upload(request: web.Request) -> web.Response:
    session = session_of(request)
    await files.save_request_uploads(request, session.workdir, extra_roots=session.mount_roots())
    return no_content()


async def download(request: web.Request) -> web.StreamResponse:
    """Each of ``files`` as a tar archive, in one multipart/mixed body."""
    session = session_of(request)
    params = await read_params(request)
    paths = _paths(session, req_str_list(params, "files", max_items=100))
    writer = MultipartWriter("mixed")
    for path in paths:
        payload = await asyncio.to_thread(files.tar_bytes, path)
        writer.append(payload, {"Content-Type": "application/x-tar", "Content-Encoding": "identity"})
    return web.Response(body=writer, status=200)


async def download_single(request: web.Request) -> web.Response:
    session = session_of(request)
    params = await read_params(request)
    (path,) = _paths(session, [req_str(params, "file")])
    payload = await asyncio.to_thread(files.tar_bytes, path)
    return web.Response(body=payload, content_type="application/x-tar")


async def list_files(request: web.Request) -> web.Response:
    session = session_of(request)
    params = await read_params(request)
    path = opt_str(params, "path", default=".")
    directory = files.confined(session.workdir, path, extra_roots=session.mount_roots(), must_exist=True)
    if not directory.is_dir():
        return json_response({"files": "[]", "errors": f"{path}: not a directory", "abspath": path})
    entries = files.listing(directory)
    return json_response({"files": files.files_json(entries), "errors": "", "abspath": path})


def add_routes(app: web.Application) -> None:
    routes = [
        web.post("/{name}/upload", upload),
        web.get("/{name}/download", download, allow_head=False), web.post("/{name}/download", download),
        web.get("/{name}/download_single", download_single),
        web.get("/{name}/files", list_files),
    ]
    for prefix in PREFIXES:
        app.router.add_routes(under(prefix, routes))
