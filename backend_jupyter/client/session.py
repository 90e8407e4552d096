"""Compute sessions: create (get-or-create), execute, files, control, destroy."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import posixpath
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ..config import Mount
from .api import APIClient, upload_form
from .errors import (
    APIVersionUnsupported,
    BadRequest,
    Forbidden,
    NotFound,
    NotSupported,
    SessionNotFound,
)


@dataclass
class FileEntry:
    name: str
    size: int
    mode: str
    mtime: float
    is_dir: bool


def mount_fields(client: APIClient, mounts: Iterable[Mount | str]) -> dict[str, Any]:
    """``config`` fields that mount ``mounts``: names plus ``mount_map`` (v5+) for aliases."""
    names: list[str] = []
    mount_map: dict[str, str] = {}
    for mount in mounts:
        mount = mount if isinstance(mount, Mount) else Mount(*str(mount).split(":", 1))
        if mount.alias and client.version[0] >= 5:
            names.append(mount.name)
            mount_map[mount.name] = mount.alias
        else:
            names.append(str(mount))
    fields: dict[str, Any] = {"mounts": names}
    if mount_map:
        fields["mount_map"] = mount_map
    return fields


EXECUTE_READ_TIMEOUT = 120.0
log = logging.getLogger("backend_jupyter.client")

# What a user may read of their own session's statistics on 26.09 (``live_stat``: a JSON string).
LIVE_STAT_QUERY = ("query($id: UUID!) { compute_session(id: $id) { containers { cluster_role occupied_slots "
                   "live_stat } } }")
REPLACE_TIMEOUT = 10.0  # a destroyed session frees its name (26.09: ~3 s TERMINATING)
ENDED = frozenset({"TERMINATED", "CANCELLED"})  # over, though a manager may still list it
ENDING = ENDED | {"TERMINATING"}  # destroyed: on its way out
QUERY_DOWNLOADS = (8, "20240315")  # from here on: POST /download?files=... (the 26.9 SDK does so)


class ComputeSession:
    """A Backend.AI compute session, addressed by name (API v4) or name/id (v5+)."""

    def __init__(self, client: APIClient, name: str, *, id: str | None = None):
        self.client = client
        self.name = name
        self.id = id
        self.created = False
        self.status: str | None = None
        self.image: str | None = None

    def __repr__(self) -> str:
        return f"ComputeSession(name={self.name!r}, id={self.id!r})"

    @property
    def path(self) -> str:
        return f"/{self.client.session_prefix}/{self.name}"

    @classmethod
    async def get_or_create(
        cls,
        client: APIClient,
        image: str,
        *,
        name: str,
        type_: str = "interactive",
        mounts: Sequence[Mount | str] = (),
        environ: Mapping[str, str] | None = None,
        resources: Mapping[str, Any] | None = None,
        tag: str | None = None,
        reuse: bool = True,
    ) -> ComputeSession:
        """Create the session, or attach to the caller's live session of the same name."""
        v4 = client.version[0] <= 4
        config: dict[str, Any] = {
            **mount_fields(client, [*client.config.vfolder_mounts, *mounts]),
            "environ": dict(environ or {}),
            "resources": dict(resources or {}),
        }
        body: dict[str, Any] = {
            ("clientSessionToken" if v4 else "name"): name,
            ("lang" if client.version <= (4, "20181215") else "image"): image,
            "tag": tag,
            "config": config,
            "type": type_,
            "reuseIfExists": reuse,
            "domain": client.config.domain,
            "group": client.config.group,
        }
        prefix = f"/{client.session_prefix}" + ("/create" if v4 else "")
        data = await client.request("POST", prefix, json=body, idempotent=True)
        session = cls(client, name, id=data.get("sessionId") or data.get("kernelId"))
        session.created = bool(data.get("created", True))
        session.status = data.get("status", "RUNNING")
        session.image = image
        return session

    @classmethod
    async def list(cls, client: APIClient) -> list[dict]:
        """The caller's sessions, where the server offers a listing (the embedded server does;
        a real manager lists sessions only through its GraphQL API)."""
        try:
            data = await client.request("GET", f"/{client.session_prefix}/_/match", params={"id": ""})
        except (BadRequest, NotFound) as e:
            raise APIVersionUnsupported("This server does not offer a REST listing of sessions") from e
        return list(data.get("matches", []))

    # -- execution -------------------------------------------------------------------------------
    async def execute(self, mode: str, code: str = "", run_id: str | None = None,
                      options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One call of the execute loop; returns the execution result object.

        The run id goes under both ``runId`` and ``run_id``: older managers read the former,
        26.9.x only the latter.  Never retried once sent (it may run user code).
        """
        body: dict[str, Any] = {"mode": mode, "code": code, "runId": run_id, "run_id": run_id}
        if options:
            body["options"] = dict(options)
        # Each call returns within seconds (servers flush output every ~2 s); a call that does not
        # is a wedged session, not a slow cell.
        data = await self.client.request("POST", self.path, json=body, idempotent=False,
                                         read_timeout=self.client.config.read_timeout or EXECUTE_READ_TIMEOUT)
        return data["result"] if isinstance(data, dict) and "result" in data else data

    async def stream(self) -> aiohttp.ClientWebSocketResponse:
        """Open the websocket execute stream of this session."""
        return await self.client.ws_connect(f"/stream/{self.client.session_prefix}/{self.name}/execute")

    async def interrupt(self) -> None:
        await self.client.request("POST", f"{self.path}/interrupt", idempotent=True, expect="none")

    async def restart(self) -> None:
        await self.client.request("PATCH", self.path, idempotent=True, expect="none")

    async def reset(self, *, replace: bool) -> bool:
        """Restart the session's interpreter (files stay).  Where the manager cannot (26.09
        answers 501) and ``replace`` allows it, :meth:`replace` the session instead; returns
        whether it was replaced."""
        try:
            await self.restart()
            return False
        except NotSupported:
            if not replace:
                raise
        await self.replace()
        return True

    async def replace(self, timeout: float = REPLACE_TIMEOUT) -> bool:
        """Destroy the session and wait until its name is free, so that creating a session under
        the same name starts a fresh one; False (and a warning) if it was still terminating at
        ``timeout``."""
        try:
            await self.destroy()
        except SessionNotFound:
            return True
        if await self.wait_gone(timeout):
            return True
        log.warning("session %s is still terminating; a new session under its name may attach to it", self.name)
        return False

    async def complete(self, code: str, cursor: int | None = None) -> dict[str, Any]:
        """Completions at ``cursor`` (default: the end of ``code``): ``{"completions": [...],
        "cursor_start": int, "cursor_end": int}``."""
        cursor = len(code) if cursor is None else cursor
        before = code[:cursor]
        row = before.count("\n")
        col = len(before) - (before.rfind("\n") + 1)
        line = code.split("\n")[row] if code else ""
        body = {"code": code, "options": {"row": row, "col": col, "line": line, "post": code[cursor:]}}
        data = await self.client.request("POST", f"{self.path}/complete", json=body, idempotent=True)
        result = data.get("result", data) if isinstance(data, dict) else {}
        if not isinstance(result, dict):
            result = {"completions": result if isinstance(result, list) else []}
        found = result.get("completions", result.get("suggestions", []))  # 26.9 calls them suggestions
        matches = [m for m in found or [] if isinstance(m, str)]
        return {
            "completions": matches,
            "cursor_start": int(result.get("cursor_start", cursor - _word_len(before))),
            "cursor_end": int(result.get("cursor_end", cursor)),
        }

    # -- information -----------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        return await self.client.request("GET", self.path)

    async def live_stat(self) -> dict[str, Any] | None:
        """The live statistics of the session's main container (``cpu_util``, ``mem``, ...; see
        usage.py), from the manager's GraphQL API, where a user reads their own sessions'
        statistics.  None when there are none (no statistics backend, not permitted, an old server)."""
        if not self.id:
            return None
        try:
            data = await self.client.request("POST", "/admin/gql", json={"query": LIVE_STAT_QUERY,
                                             "variables": {"id": self.id}}, idempotent=True)
        except (BadRequest, NotFound, Forbidden, NotSupported) as e:
            log.debug("no live statistics for %s: %s", self.name, e)
            return None
        session = ((data or {}).get("data") or {}).get("compute_session") or {}
        containers = session.get("containers") or []
        main = next((c for c in containers if c.get("cluster_role") in (None, "main")), None)
        raw = (main or {}).get("live_stat")
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                raw = json.loads(raw)
        return raw if isinstance(raw, dict) and raw else None

    async def logs(self) -> str:
        data = await self.client.request("GET", f"{self.path}/logs")
        return str(data.get("result", {}).get("logs", "")) if isinstance(data, dict) else str(data)

    async def _status(self) -> str | None:
        """The session's status in upper case ("" if the server gives none); None once it is gone (404)."""
        try:
            info = await self.info()
        except SessionNotFound:
            return None
        return str(info.get("status", "")).upper() if isinstance(info, dict) else ""

    async def exists(self) -> bool:
        """Whether the session is there and not on its way out (a manager keeps a destroyed
        session ``TERMINATING`` for a few seconds before it answers 404)."""
        status = await self._status()
        return status is not None and status not in ENDING

    async def wait_gone(self, timeout: float, interval: float = 0.3) -> bool:
        """Wait until a destroyed session has ended (404, or ``TERMINATED``), so that its name is
        free again; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (status := await self._status()) is not None and status not in ENDED:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(interval)
        return True

    # -- files -----------------------------------------------------------------------------------
    async def upload(self, files: Sequence[str | os.PathLike], *, basedir: str | os.PathLike | None = None,
                     dest: str = "") -> list[str]:
        """Upload local files into the session's work dir (``dest``: a directory in it), keeping
        paths relative to ``basedir``."""
        base = Path(basedir or os.getcwd()).resolve()
        entries = []
        for f in files:
            local = (base / f).resolve() if not Path(f).is_absolute() else Path(f).resolve()
            remote = posixpath.join(dest, local.relative_to(base).as_posix())
            entries.append((local, remote))

        await self.client.request("POST", f"{self.path}/upload", form=upload_form(entries), idempotent=True,
                                  expect="none")
        return [remote for _, remote in entries]

    async def download(self, files: Sequence[str], dest: str | os.PathLike = ".") -> list[str]:
        """Download files (or directories) from the work dir into ``dest``; returns the names."""
        names: list[str] = []
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if self.client.version >= QUERY_DOWNLOADS:  # 26.9 managers answer GET-with-body with 405
            parts = await self.client.request("POST", f"{self.path}/download", params={"files": list(files)},
                                              idempotent=True, expect="parts")
        else:
            parts = await self.client.request("GET", f"{self.path}/download", json={"files": list(files)},
                                              expect="parts")
        for _headers, data in parts:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                safe_extract(tar, dest)
                names.extend(tar.getnames())
        return names

    async def list_files(self, path: str = ".") -> list[FileEntry]:
        # A query parameter, not a JSON body: managers read the query when a GET has no body, and
        # 26.9 ignores GET bodies.
        data = await self.client.request("GET", f"{self.path}/files", params={"path": path})
        if data.get("errors"):
            raise BadRequest(400, {"title": "Listing files failed", "msg": str(data["errors"])})
        raw = data.get("files", "[]")
        entries = json.loads(raw) if isinstance(raw, str) else raw
        return [
            FileEntry(e["filename"], int(e.get("size", 0)), str(e.get("mode", "")), float(e.get("mtime", 0)),
                      str(e.get("mode", "")).startswith("d"))
            for e in entries
        ]

    async def destroy(self, *, forced: bool = False) -> dict | None:
        return await self.client.request(
            "DELETE", self.path, params={"forced": "true"} if forced else None, idempotent=True
        )


def _word_len(text: str) -> int:
    """Length of the identifier being typed at the end of ``text``."""
    n = 0
    for ch in reversed(text):
        if not (ch.isalnum() or ch == "_"):
            break
        n += 1
    return n


def safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract without letting a member escape ``dest`` (absolute paths, '..', links out)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if root != target and root not in target.parents or member.issym() or member.islnk():
            raise BadRequest(400, {"title": f"Refusing to extract {member.name!r} outside {dest}"})
    tar.extractall(dest)
