"""Virtual folders: create, list, info, delete, mkdir, files, upload and download.

File transfer follows the server's generation: multipart ``upload``/``download`` up to API
v6.20200815, then ``request-upload`` (a tus upload to the returned URL) and ``request-download``
(a token-checked GET).  From API v8, folders are addressed by id (``/folders/_/id`` resolves it).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from .api import APIClient, upload_form
from .errors import BackendError, NotSupported, VFolderNotFound, error_from_response

TUS_CHUNK = 8 * 1024 * 1024
TUS_RETRIES = 5  # broken connections in a row, each resumed from the server's offset
TRANSFER_V6 = (6, "20200815")
ID_KEYED = (8, "20240315")


class TransferFailed(BackendError):
    hint = "retry; if it keeps failing, check the server's storage (disk space, permissions)"


class VFolder:
    def __init__(self, client: APIClient, name: str, *, id: str | None = None):
        self.client = client
        self.name = name
        self.id = id

    def __repr__(self) -> str:
        return f"VFolder(name={self.name!r})"

    # -- folder operations -----------------------------------------------------------------------
    @classmethod
    async def create(cls, client: APIClient, name: str, *, host: str | None = None,
                     usage_mode: str = "general", permission: str = "rw") -> dict[str, Any]:
        body = {"name": name, "host": host, "usage_mode": usage_mode, "permission": permission,
                "group": None, "unmanaged_path": None, "cloneable": False}
        return await client.request("POST", "/folders", json=body, idempotent=False)

    @classmethod
    async def list(cls, client: APIClient, *, trashed: bool = True) -> list[dict[str, Any]]:
        """The key's folders; ``trashed=False`` leaves out those deleted into the trash (26.9 keeps a
        deleted folder listed, with a ``delete-pending`` status, until an admin purges it)."""
        folders = await client.request("GET", "/folders", json={"all": False})
        if trashed:
            return folders
        return [f for f in folders if not str(f.get("status") or "").startswith("delete")]

    async def key(self) -> str:
        """How the folder is addressed in paths: its name, or (API v8+) its id."""
        if self.client.version < ID_KEYED:
            return self.name
        if self.id is None:
            data = await self.client.request("GET", "/folders/_/id", json={"name": self.name})
            self.id = str(data["id"]).replace("-", "")
        return self.id

    async def _path(self, suffix: str = "") -> str:
        return f"/folders/{await self.key()}{suffix}"

    async def info(self) -> dict[str, Any]:
        return await self.client.request("GET", await self._path())

    async def exists(self) -> bool:
        try:
            await self.info()
        except VFolderNotFound:
            return False
        return True

    async def delete(self) -> None:
        if self.client.version >= ID_KEYED:
            await self.client.request("DELETE", "/folders", json={"id": await self.key()}, expect="none")
        else:
            await self.client.request("DELETE", await self._path(), expect="none")

    async def mkdir(self, path: str, *, parents: bool = True, exist_ok: bool = True) -> None:
        await self.client.request("POST", await self._path("/mkdir"), idempotent=True, expect="none",
                                  json={"path": path, "parents": parents, "exist_ok": exist_ok})

    async def list_files(self, path: str = ".") -> list[dict[str, Any]]:
        """Entries as ``{"name", "type" ("FILE"/"DIRECTORY"/"SYMLINK"), "size", "modified"}``."""
        # The path goes in the query string: 26.9 reads only that (a JSON body is ignored: the root is listed).
        data = await self.client.request("GET", await self._path("/files"), params={"path": path})
        if "items" in data:
            return list(data["items"])
        return [
            {"name": e["filename"], "size": e.get("size", 0), "modified": e.get("mtime"),
             "type": "DIRECTORY" if str(e.get("mode", "")).startswith("d") else "FILE"}
            for e in json.loads(data.get("files") or "[]")
        ]

    async def delete_files(self, files: Sequence[str], *, recursive: bool = False) -> None:
        await self.client.request("DELETE", await self._path("/delete-files"), idempotent=True,
                                  json={"files": list(files), "recursive": recursive}, expect="none")

    # -- transfers -------------------------------------------------------------------------------
    async def upload(self, files: Sequence[str | os.PathLike], *, basedir: str | os.PathLike | None = None,
                     dest: str = "") -> list[str]:
        """Upload local files, stored under ``dest`` with their paths relative to ``basedir``."""
        base = Path(basedir or os.getcwd()).resolve()
        entries = []
        for f in files:
            local = Path(f) if Path(f).is_absolute() else base / f
            remote = local.resolve().relative_to(base).as_posix()
            entries.append((local, f"{dest.rstrip('/')}/{remote}" if dest else remote))
        if self.client.version >= TRANSFER_V6:
            for local, remote in entries:
                await self.upload_file(local, remote)
        else:
            await self.client.request("POST", await self._path("/upload"), form=upload_form(entries),
                                      idempotent=True, expect="none")
        return [remote for _, remote in entries]

    async def upload_file(self, local: Path, remote: str, progress: Callable[[int], None] | None = None) -> None:
        """Upload ``local`` as ``remote`` (multipart before API v6.20200815), with tus, PATCH by PATCH from the server's offset.  A
        connection broken mid-upload is resumed: the server is asked its offset (HEAD) and the
        upload goes on from there (up to TUS_RETRIES times in a row without progress)."""
        size = local.stat().st_size
        if self.client.version < TRANSFER_V6:
            await self.client.request("POST", await self._path("/upload"), form=upload_form([(local, remote)]),
                                      idempotent=True, expect="none")
            if progress is not None:
                progress(size)
            return
        grant = await self.client.request("POST", await self._path("/request-upload"),
                                          json={"path": remote, "size": size}, idempotent=True)
        url = URL(grant["url"]).with_query({"token": grant["token"]})
        headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
        offset, failures, sent = 0, 0, False
        with open(local, "rb") as f:
            # An empty file still takes one (empty) PATCH: the storage proxy moves an upload into
            # place when a PATCH brings it to its size, so without one the file never appears.
            while offset < size or not sent:
                f.seek(offset)
                chunk = f.read(TUS_CHUNK)
                try:
                    async with self.client.http.patch(url, data=chunk, ssl=self.client.ssl,
                                                      headers={**headers, "Upload-Offset": str(offset)}) as resp:
                        if resp.status == 409:  # our offset is not the server's: take its own
                            new_offset = await self._tus_offset(url, remote)
                        elif resp.status not in (200, 204):
                            raise TransferFailed(f"Uploading {remote!r} failed at byte {offset} (HTTP {resp.status})")
                        else:
                            new_offset = int(resp.headers.get("Upload-Offset", offset + len(chunk)))
                        sent = True
                except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
                    failures += 1
                    if failures > TUS_RETRIES:
                        raise TransferFailed(f"Uploading {remote!r} broke off at byte {offset}: {e}") from None
                    await asyncio.sleep(min(0.2 * 2 ** failures, 5.0))
                    new_offset = await self._tus_offset(url, remote)
                if sent and new_offset == offset == size:  # the empty file
                    break
                if new_offset > offset:
                    failures = 0
                    if progress is not None:
                        progress(new_offset - offset)
                elif new_offset < offset or failures == 0:
                    raise TransferFailed(f"Uploading {remote!r} made no progress at byte {offset}")
                offset = new_offset

    async def _tus_offset(self, url: URL, remote: str) -> int:
        """The server's offset of an upload (tus HEAD)."""
        async with self.client.http.head(url, ssl=self.client.ssl, headers={"Tus-Resumable": "1.0.0"}) as resp:
            if resp.status not in (200, 204) or "Upload-Offset" not in resp.headers:
                raise TransferFailed(f"Uploading {remote!r}: the server lost the upload (HTTP {resp.status})")
            return int(resp.headers["Upload-Offset"])

    async def download_url(self, path: str) -> URL:
        """Where to GET ``path`` (a token good for the grant's lifetime; the GET honours Range)."""
        if self.client.version < TRANSFER_V6:
            raise NotSupported(501, {"title": "Reading vfolder files needs a server with API v6.20200815 or later"})
        grant = await self.client.request("POST", await self._path("/request-download"), json={"path": path},
                                          idempotent=True)
        return URL(grant["url"]).with_query({"token": grant["token"]})

    async def read(self, url: URL, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive; None: the ends) of the file at ``url``."""
        headers = {}
        if start is not None or end is not None:
            headers["Range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"
        async with self.client.http.get(url, ssl=self.client.ssl, headers=headers) as resp:
            if resp.status == 416:  # a range past the end
                return b""
            if resp.status not in (200, 206):
                raise error_from_response(resp.status, await resp.text(errors="replace"), method="GET",
                                          path=str(url.path))
            data = await resp.read()
        if resp.status == 200 and headers:  # the server sent it whole
            data = data[start or 0:end]
        return data

    async def save(self, url: URL, target: Path, progress: Callable[[int], None] | None = None) -> None:
        """Stream the file at ``url`` into ``target``, written under a temporary name and renamed
        at the end (a download broken midway leaves nothing under the final name)."""
        partial = target.with_name(f".{target.name}.part")
        async with self.client.http.get(url, ssl=self.client.ssl) as resp:
            if resp.status != 200:
                raise error_from_response(resp.status, await resp.text(errors="replace"), method="GET",
                                          path=str(url.path))
            try:
                with open(partial, "wb") as f:
                    async for chunk in resp.content.iter_chunked(4 << 20):
                        f.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)

    async def download(self, files: Sequence[str], dest: str | os.PathLike = ".") -> list[Path]:
        """Download files into ``dest``, keeping their relative paths."""
        dest = Path(dest)
        for name in files:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise TransferFailed(f"Refusing to download {name!r}: use a path relative to the folder",
                                     hint="")
        written = []
        if self.client.version >= TRANSFER_V6:
            for name in files:
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                await self.save(await self.download_url(name), target)
                written.append(target)
        else:
            parts = await self.client.request("GET", await self._path("/download"),
                                              json={"files": list(files)}, expect="parts")
            for name, (_headers, data) in zip(files, parts, strict=False):
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                written.append(target)
        return written
