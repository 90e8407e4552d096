"""``backendai://FOLDER/PATH``: the user's vfolders as an fsspec filesystem.

Registered through the ``fsspec.specs`` entry point, so ``fsspec.open("backendai://data/x.csv")``,
``pandas.read_csv("backendai://data/train.csv")``, ``df.to_parquet("backendai://out/df.parquet")``
and ``UPath("backendai://data")`` work once the package is installed.  It is configured like the
rest of the package: the ``BACKEND_*`` variables, else the embedded server (started if needed);
``BackendAIFileSystem(config=Config(...))`` takes an explicit one.

The root lists the folders; ``FOLDER/PATH`` is a file or directory inside one.  Reads stream: a
file opened for reading fetches blocks with HTTP ranges from the transfer URL the server grants
(fsspec's read-ahead cache, so memory stays flat whatever the size).  Writes go to a local temporary
file and are uploaded with tus when the file is closed (the upload protocol needs the size first),
resumed from the server's offset if the connection breaks.  Downloads are written under a
temporary name and renamed at the end.  Errors are the built-in ones fsspec users expect, with the
server's message: FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
PermissionError.
"""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
import weakref
from datetime import datetime
from pathlib import Path

from fsspec.asyn import AsyncFileSystem, sync
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractBufferedFile

from .client import APIClient, VFolder
from .client.errors import (
    AlreadyExists,
    AuthenticationFailed,
    BackendAPIError,
    BackendError,
    Forbidden,
    NotFound,
)
from .config import Config

LISTING_SECONDS = 5.0  # a folder listing is reused this long (sessions and other clients change folders)


def _oserror(e: BackendAPIError, path: str) -> OSError:
    """The built-in error an fsspec user expects for the server's refusal."""
    if isinstance(e, NotFound):
        return FileNotFoundError(errno.ENOENT, f"{path}: {e.msg or e.title or 'not found'}", path)
    if isinstance(e, AlreadyExists):
        return FileExistsError(errno.EEXIST, f"{path}: {e.msg or e.title}", path)
    if isinstance(e, (Forbidden, AuthenticationFailed)):
        return PermissionError(errno.EACCES, f"{path}: {e.msg or e.title}", path)
    text = f"{e.title} {e.msg}"
    if "outside the allowed directory" in text:  # '..' or a symlink leading out of the folder
        return PermissionError(errno.EACCES, f"{path}: {e.msg or e.title}", path)
    if "File exists" in text or "already exists" in text:
        return FileExistsError(errno.EEXIST, f"{path}: {e.msg or e.title}", path)
    if "is a directory" in text or "not a regular file" in text:
        return IsADirectoryError(errno.EISDIR, f"{path}: {e.msg or e.title}", path)
    if "is not a directory" in text:
        return NotADirectoryError(errno.ENOTDIR, f"{path}: {e.msg or e.title}", path)
    return OSError(errno.EIO, f"{path}: {e}", path)


def _timestamp(value) -> float | None:
    """A listing's modification time as seconds since the epoch, as fsspec and pyarrow take it."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def split(path: str) -> tuple[str, str]:
    """``FOLDER/PATH`` → ``(FOLDER, PATH)``; ``..``, empty and absolute parts are refused by name."""
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PermissionError(errno.EACCES, f"{path}: '..' leads out of the folder", path)
    return (parts[0] if parts else ""), "/".join(parts[1:])


class BackendAIFileSystem(AsyncFileSystem):
    """The vfolders of one Backend.AI user (one access key) as a filesystem."""

    protocol = ("backendai",)
    root_marker = ""
    async_impl = True

    def __init__(self, *, config: Config | None = None, block_size: int | None = None, **kwargs):
        kwargs.setdefault("listings_expiry_time", LISTING_SECONDS)  # others write the folders too
        super().__init__(**kwargs)
        self.config = config
        self.blocksize = block_size or 4 * 1024 * 1024
        self._api: APIClient | None = None

    # -- the client, on fsspec's loop --------------------------------------------------------------
    async def _client(self) -> APIClient:
        if self._api is None:
            config = self.config
            if config is None:
                from .embedded import resolve_config

                config, _server = await asyncio.to_thread(resolve_config)
            api = APIClient(config, user_agent="backend_jupyter-fsspec")
            await api.__aenter__()
            self._api = api
            if not self.asynchronous:
                weakref.finalize(self, _close, self.loop, api)
        return self._api

    async def _folder(self, name: str) -> VFolder:
        return VFolder(await self._client(), name)

    @classmethod
    def _strip_protocol(cls, path) -> str:
        path = str(path)
        if path.startswith("backendai://"):
            path = path[len("backendai://"):]
        return path.strip("/")

    # -- listing --------------------------------------------------------------------------------
    async def _ls(self, path: str, detail: bool = True, **kwargs):
        path = self._strip_protocol(path)
        entries = None if kwargs.get("refresh") else self.dircache.get(path)
        if entries is None:
            entries = await self._list(path)
            self.dircache[path] = entries
        return entries if detail else [e["name"] for e in entries]

    async def _list(self, path: str) -> list[dict]:
        folder, rel = split(path)
        api = await self._client()
        if not folder:
            return [{"name": f["name"], "type": "directory", "size": 0, "permission": f.get("permission")}
                    for f in await VFolder.list(api, trashed=False)]
        try:
            items = await VFolder(api, folder).list_files(rel or ".")
        except BackendAPIError as e:
            error = _oserror(e, path)
            if rel and type(error) in (OSError, NotADirectoryError):
                # A file or a missing path: the storage proxy answers both with a bare 400
                # ("Bad request to storage proxy"); the parent's listing tells them apart.
                info = await self._info(path)  # FileNotFoundError if missing
                if info["type"] != "directory":
                    return [info]
            raise error from None
        if not rel:  # the storage proxy's own directory of unfinished uploads
            items = [item for item in items if not (item["name"] == ".upload" and item.get("type") == "DIRECTORY")]
        return [{"name": f"{path}/{item['name']}", "size": int(item.get("size") or 0), "mtime": _timestamp(item.get("modified")),
                 "type": "directory" if item.get("type") == "DIRECTORY" else "file"} for item in items]

    async def _info(self, path: str, **kwargs) -> dict:
        path = self._strip_protocol(path)
        folder, rel = split(path)
        if not folder:
            return {"name": "", "type": "directory", "size": 0}
        parent = self._parent(path)
        for entry in await self._ls(parent):
            if entry["name"] == path:
                return entry
        raise FileNotFoundError(errno.ENOENT, f"{path}: no such file or directory", path)

    async def _exists(self, path: str, **kwargs) -> bool:
        try:
            await self._info(path)
        except FileNotFoundError:
            return False
        return True

    # -- reading --------------------------------------------------------------------------------
    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs) -> bytes:
        path = self._strip_protocol(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = (await self._info(path))["size"]
            start = size + start if start is not None and start < 0 else start
            end = size + end if end is not None and end < 0 else end
        url = await self._url(path)
        folder = await self._folder(split(path)[0])
        try:
            return await folder.read(url, start, end)
        except BackendAPIError as e:  # the transfer URL is granted for any path; the GET says what is wrong
            raise _oserror(e, path) from None

    async def _url(self, path: str):
        folder, rel = split(path)
        if not rel:
            raise IsADirectoryError(errno.EISDIR, f"{path}: a folder", path)
        try:
            return await (await self._folder(folder)).download_url(rel)
        except BackendAPIError as e:
            error = _oserror(e, path)
            if "is not a file" in f"{e.title} {e.msg}":
                error = IsADirectoryError(errno.EISDIR, f"{path}: {e.msg or e.title}", path)
            raise error from None

    async def _get_file(self, rpath: str, lpath: str, callback=DEFAULT_CALLBACK, **kwargs) -> None:
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            return
        info = await self._info(rpath)
        if info["type"] == "directory":
            os.makedirs(lpath, exist_ok=True)
            return
        callback.set_size(info["size"])
        url = await self._url(rpath)
        try:
            await (await self._folder(split(rpath)[0])).save(url, Path(lpath), callback.relative_update)
        except BackendAPIError as e:
            raise _oserror(e, rpath) from None

    # -- writing --------------------------------------------------------------------------------
    async def _put_file(self, lpath: str, rpath: str, callback=DEFAULT_CALLBACK, mode: str = "overwrite",
                        **kwargs) -> None:
        rpath = self._strip_protocol(rpath)
        folder, rel = split(rpath)
        if os.path.isdir(lpath):
            if rel:
                await self._makedirs(rpath, exist_ok=True)
            return
        if not rel:
            raise IsADirectoryError(errno.EISDIR, f"{rpath}: a folder; name a file in it", rpath)
        if mode == "create" and await self._exists(rpath):
            raise FileExistsError(errno.EEXIST, f"{rpath}: exists", rpath)
        callback.set_size(os.path.getsize(lpath))
        try:
            await (await self._folder(folder)).upload_file(Path(lpath), rel, callback.relative_update)
        except BackendAPIError as e:
            raise _oserror(e, rpath) from None
        except BackendError as e:  # the transfer itself broke off (TransferFailed): nothing under the name
            raise OSError(errno.EIO, f"{rpath}: {e}", rpath) from None
        finally:
            self.invalidate_cache(rpath)

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs) -> None:
        with tempfile.NamedTemporaryFile() as f:
            f.write(value)
            f.flush()
            await self._put_file(f.name, path, mode=mode)

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs) -> None:
        path = self._strip_protocol(path)
        folder, rel = split(path)
        api = await self._client()
        try:
            if not rel:
                await VFolder.create(api, folder)
            else:
                await VFolder(api, folder).mkdir(rel, parents=create_parents, exist_ok=False)
        except BackendAPIError as e:
            error = _oserror(e, path)
            if rel and type(error) is OSError:
                # 26.9 answers an existing path and a missing parent alike (400, "Unexpected error
                # 422 from storage proxy"): look.
                self.invalidate_cache(path)
                if await self._exists(path):
                    error = FileExistsError(errno.EEXIST, f"{path}: exists", path)
                elif not await self._exists(self._parent(path)):
                    error = FileNotFoundError(errno.ENOENT, f"{path}: the parent directory does not exist", path)
            raise error from None
        finally:
            self.invalidate_cache(path)

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        folder, rel = split(path)
        if not rel:
            if not await self._exists(folder):
                await self._mkdir(folder)
            elif not exist_ok:
                raise FileExistsError(errno.EEXIST, f"{path}: exists", path)
            return
        try:
            await (await self._folder(folder)).mkdir(rel, parents=True, exist_ok=exist_ok)
        except BackendAPIError as e:
            raise _oserror(e, path) from None
        finally:
            self.invalidate_cache(path)

    async def _rm_file(self, path: str, **kwargs) -> None:
        await self._rm(path)

    async def _rm(self, path, recursive: bool = False, **kwargs) -> None:
        paths = [path] if isinstance(path, str) else list(path)
        for one in paths:
            one = self._strip_protocol(one)
            folder, rel = split(one)
            if not rel:
                raise PermissionError(errno.EPERM, f"{one}: a whole folder is not removed through the filesystem "
                                                   "(%backend_vfolder delete does it)", one)
            # 26.9 deletes nothing and says nothing for a missing path or (non-recursive) a directory.
            info = await self._info(one)  # FileNotFoundError if missing
            if info["type"] == "directory" and not recursive:
                raise IsADirectoryError(errno.EISDIR, f"{one}: is a directory; pass recursive=True", one)
            try:
                await (await self._folder(folder)).delete_files([rel], recursive=recursive)
            except BackendAPIError as e:
                raise _oserror(e, one) from None
            finally:
                self.invalidate_cache(one)

    def invalidate_cache(self, path: str | None = None) -> None:
        if path is None:
            self.dircache.clear()
            return
        path = self._strip_protocol(path)
        self.dircache.pop(path, None)
        while path:
            path = self._parent(path)
            self.dircache.pop(path, None)

    # -- file objects ----------------------------------------------------------------------------
    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options=None, **kwargs):
        return BackendAIFile(self, path, mode, block_size=block_size or self.blocksize, autocommit=autocommit,
                             cache_options=cache_options, **kwargs)


class BackendAIFile(AbstractBufferedFile):
    """A vfolder file: read by ranges (the transfer URL asked once), written through a local
    temporary file uploaded when it is closed."""

    def __init__(self, fs: BackendAIFileSystem, path: str, mode: str = "rb", **kwargs):
        path = fs._strip_protocol(path)
        if "r" in mode:
            info = fs.info(path)
            if info["type"] == "directory":
                raise IsADirectoryError(errno.EISDIR, f"{path}: a directory", path)
            kwargs["size"] = info["size"]
        super().__init__(fs, path, mode, **kwargs)
        self._url = None
        self._spool = None

    def _fetch_range(self, start: int, end: int) -> bytes:
        if self._url is None:
            self._url = sync(self.fs.loop, self.fs._url, self.path)
        folder = sync(self.fs.loop, self.fs._folder, split(self.path)[0])
        try:
            return sync(self.fs.loop, folder.read, self._url, start, end)
        except BackendAPIError as e:
            raise _oserror(e, self.path) from None

    def _initiate_upload(self) -> None:
        self._spool = tempfile.NamedTemporaryFile(prefix="backendai-")  # the upload needs the size first

    def _upload_chunk(self, final: bool = False) -> bool:
        self.buffer.seek(0)
        self._spool.write(self.buffer.read())
        if final:
            try:
                self._spool.flush()
                self.fs.put_file(self._spool.name, self.path)
            finally:
                self._spool.close()
        return True


def _close(loop, api: APIClient) -> None:
    """At garbage collection or exit: close the client's HTTP session."""
    if loop is not None and loop.is_running():
        try:
            sync(loop, api.close, timeout=1)
        except Exception:  # noqa: BLE001 - the loop is going away too
            pass


class PapermillHandler:
    """papermill's I/O for ``backendai://`` notebooks (the ``papermill.io`` entry point):
    ``papermill backendai://nb/in.ipynb backendai://nb/out.ipynb -k backend-python``."""

    def __init__(self):
        self._fs: BackendAIFileSystem | None = None

    @property
    def fs(self) -> BackendAIFileSystem:
        if self._fs is None:
            self._fs = BackendAIFileSystem()
        return self._fs

    def read(self, path: str) -> str:
        return self.fs.cat_file(path).decode("utf-8")

    def write(self, buf: str, path: str) -> None:
        self.fs.pipe_file(path, buf.encode("utf-8"))

    def listdir(self, path: str) -> list[str]:
        return [f"backendai://{name}" for name in self.fs.ls(path, detail=False)]

    def pretty_path(self, path: str) -> str:
        return path


papermill_handler = PapermillHandler()
