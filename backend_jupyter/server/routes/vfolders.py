"""Virtual folders: ``/folders`` (also under the legacy ``/v2``-``/v4``), a folder by name or id.

Create, list, info and delete folders; make directories, upload, download, list and delete files in
one; and ``request-upload``/``request-download``, which hand out transfer tokens (see transfers.py).
Paths are relative to the folder's root.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from aiohttp import web
from aiohttp.multipart import MultipartWriter

from .. import files
from ..errors import InvalidAPIParameters, VFolderOperationFailed
from ..params import (
    MAX_UPLOAD,
    json_response,
    no_content,
    opt_bool,
    opt_str,
    owner,
    read_params,
    req_str,
    req_str_list,
    str_list,
)
from ..state import FOLDERS
from ..vfolders import LocalFolder
from . import under
from .transfers import issue_token

PREFIXES = ("/folders", "/v2/folders", "/v3/folders", "/v4/folders")


def folder_of(request: web.Request) -> LocalFolder:
    """The caller's folder the path names (by name or id)."""
    return request.app[FOLDERS].get(owner(request), request.match_info["name"])


def _root(request: web.Request, folder: LocalFolder) -> Path:
    return request.app[FOLDERS].path(folder)


def _inside(root: Path, path: str, *, must_exist: bool = False) -> Path:
    """``path`` in a folder whose root is ``root`` (absolute paths are refused)."""
    return files.confined(root, path, allow_work_prefix=False, must_exist=must_exist)


# -- folders ------------------------------------------------------------------------------------------

async def create(request: web.Request) -> web.Response:
    params = await read_params(request)
    store = request.app[FOLDERS]
    folder = store.create(
        owner(request),
        req_str(params, "name", max_len=64),
        permission=opt_str(params, "permission", default="rw"),
        usage_mode=opt_str(params, "usage_mode", "usageMode", default="general"),
        cloneable=opt_bool(params, "cloneable", False),
    )
    return json_response(folder.summary(store.path(folder)), status=201)


async def list_folders(request: web.Request) -> web.Response:
    store = request.app[FOLDERS]
    return json_response([f.summary(store.path(f)) for f in store.list(owner(request))])


async def folder_id(request: web.Request) -> web.Response:
    params = await read_params(request)
    folder = request.app[FOLDERS].get(owner(request), req_str(params, "name"))
    return json_response({"id": folder.id})


async def info(request: web.Request) -> web.Response:
    folder = folder_of(request)
    store = request.app[FOLDERS]
    num_files, used = await asyncio.to_thread(store.usage, folder)
    body = folder.summary(store.path(folder))
    body.update(numFiles=num_files, num_files=num_files, used_bytes=used, last_used=None)
    return json_response(body)


async def delete(request: web.Request) -> web.Response:
    request.app[FOLDERS].delete(folder_of(request))
    return no_content()


async def delete_by_id(request: web.Request) -> web.Response:
    params = await read_params(request)
    store = request.app[FOLDERS]
    store.delete(store.get(owner(request), req_str(params, "id", "name")))
    return no_content()


async def hosts(request: web.Request) -> web.Response:
    return json_response({"default": "local", "allowed": ["local"]})


async def allowed_types(request: web.Request) -> web.Response:
    return json_response(["user"])


# -- files in a folder --------------------------------------------------------------------------------

async def mkdir(request: web.Request) -> web.Response:
    folder = folder_of(request)
    params = await read_params(request)
    raw = params.get("path")
    paths = raw if isinstance(raw, list) else [raw]
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise InvalidAPIParameters("'path' must be a path or a list of paths.")
    parents = opt_bool(params, "parents", True)
    exist_ok = opt_bool(params, "exist_ok", False)
    root = _root(request, folder)
    success, failed = [], []
    for path in paths:
        target = _inside(root, path)
        try:
            target.mkdir(parents=parents, exist_ok=exist_ok)
            success.append({"item": path, "msg": None})
        except OSError as e:
            failed.append({"item": path, "msg": e.strerror or str(e)})
    if failed and len(paths) == 1:
        raise VFolderOperationFailed(f"mkdir {paths[0]!r} failed: {failed[0]['msg']}")
    return json_response({"results": {"success": success, "failed": failed}}, status=201)


async def upload(request: web.Request) -> web.Response:
    folder = folder_of(request)
    await files.save_request_uploads(request, _root(request, folder))
    return web.Response(status=201)


async def download(request: web.Request) -> web.StreamResponse:
    """Each of ``files`` (files only) as a part of one multipart/mixed body."""
    folder = folder_of(request)
    params = await read_params(request)
    names = req_str_list(params, "files", max_items=100)
    root = _root(request, folder)
    paths = [_inside(root, n, must_exist=True) for n in names]
    if any(not p.is_file() for p in paths):
        raise InvalidAPIParameters("Only files can be downloaded this way.")
    writer = MultipartWriter("mixed")
    total = 0
    for path in paths:
        data = await asyncio.to_thread(path.read_bytes)
        total += len(data)
        part = writer.append(data, {"Content-Type": "application/octet-stream",
                                    "Content-Encoding": "identity"})
        part.set_content_disposition("attachment", filename=files.display_name(path.name))
    return web.Response(body=writer, headers={"X-TOTAL-PAYLOADS-LENGTH": str(total)})


async def request_upload(request: web.Request) -> web.Response:
    """A token to upload ``path`` (``size`` bytes) with tus; an empty partial file waits for it."""
    folder = folder_of(request)
    params = await read_params(request)
    path = req_str(params, "path", max_len=4096)
    size = params.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > MAX_UPLOAD:
        raise InvalidAPIParameters(f"'size' must be an integer between 0 and {MAX_UPLOAD}.")
    target = _inside(_root(request, folder), path)
    if target.is_dir():
        raise InvalidAPIParameters(f"{path!r} is a directory.")
    files.make_parents(target, path)
    partial = files.partial_path(target)
    os.close(files.open_new(partial))  # never through a planted symlink
    if size == 0:  # tus clients send nothing for an empty file
        partial.replace(target)
    return json_response(issue_token(request, "upload", folder, path, size))


async def request_download(request: web.Request) -> web.Response:
    folder = folder_of(request)
    params = await read_params(request)
    path = req_str(params, "path", "file", max_len=4096)
    target = _inside(_root(request, folder), path, must_exist=True)
    if not target.is_file():
        raise InvalidAPIParameters(f"{path!r} is not a file (archive downloads are not supported).")
    return json_response(issue_token(request, "download", folder, path, target.stat().st_size))


async def list_files(request: web.Request) -> web.Response:
    folder = folder_of(request)
    params = await read_params(request)
    path = opt_str(params, "path", default=".")
    directory = _inside(_root(request, folder), path, must_exist=True)
    if not directory.is_dir():
        raise InvalidAPIParameters(f"{path!r} is not a directory.")
    entries = files.listing(directory)
    return json_response({
        "items": files.items(entries), "files": files.files_json(entries), "folder_path": path,
    })


async def delete_files(request: web.Request) -> web.Response:
    folder = folder_of(request)
    params = await read_params(request)
    names = str_list(params, "files", max_items=1000)
    recursive = opt_bool(params, "recursive", False)
    root = _root(request, folder)
    targets = [_inside(root, n, must_exist=True) for n in names]
    for target, name in zip(targets, names, strict=True):
        if target == root:
            raise InvalidAPIParameters("The folder itself cannot be deleted this way.")
        if target.is_dir() and not target.is_symlink():
            if not recursive:
                raise InvalidAPIParameters(f"{name!r} is a directory; pass recursive=true.")
            await asyncio.to_thread(shutil.rmtree, target)
        else:
            target.unlink()
    return json_response({})


def add_routes(app: web.Application) -> None:
    routes = [
        web.post("", create), web.post("/", create), web.get("", list_folders), web.delete("", delete_by_id),
        web.get("/_/hosts", hosts), web.get("/_/all_hosts", hosts),
        web.get("/_/allowed-types", allowed_types), web.get("/_/allowed_types", allowed_types),
        web.get("/_/id", folder_id),
        web.get("/{name}", info), web.delete("/{name}", delete),
        web.post("/{name}/mkdir", mkdir),
        web.post("/{name}/upload", upload),
        web.get("/{name}/download", download, allow_head=False), web.post("/{name}/download", download),
        web.post("/{name}/request-upload", request_upload),
        web.post("/{name}/request-download", request_download),
        web.get("/{name}/files", list_files),
        web.delete("/{name}/delete-files", delete_files), web.post("/{name}/delete-files", delete_files),
        web.delete("/{name}/delete_files", delete_files), web.post("/{name}/delete_files", delete_files),
    ]
    for prefix in PREFIXES:
        app.router.add_routes(under(prefix, routes))
