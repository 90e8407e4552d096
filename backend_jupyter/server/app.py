"""The embedded server's HTTP application: Backend.AI REST routes over local kernels.

Route families (PROTOCOL.md §2-§5): ``/session`` (API v5+) and ``/kernel`` (v4, also under the
legacy ``/v2``-``/v4`` prefixes), ``/stream/{session,kernel}/{name}/execute`` (websocket),
``/folders`` (vfolders, also by id), ``/storage/{upload,download}`` (the token URLs that
``request-upload``/``request-download`` hand out), ``/auth`` and the unauthenticated ``GET /``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import MultipartWriter

from .. import __version__
from ..fastjson import dumpb
from . import files
from .auth import (
    LATEST_API_VERSION,
    PUBLIC,
    authenticate,
    parse_version,
    public,
    request_version,
)
from .errors import (
    APIError,
    FileNotFound,
    GenericBadRequest,
    InternalServerError,
    InvalidAPIParameters,
    MethodNotAllowed,
    RequestTooLarge,
    URLNotFound,
    VFolderNotFound,
    VFolderOperationFailed,
)
from .keys import KeyStore
from .sessions import (
    ComputeSession,
    Run,
    SessionRegistry,
    SessionSpec,
    validate_run_id,
    validate_session_name,
)
from .vfolders import VFolder, VFolderStore

log = logging.getLogger("backend_jupyter.server")
access_log = logging.getLogger("backend_jupyter.server.access")

MAX_JSON_BODY = 4 * 1024 * 1024
MAX_UPLOAD = 1024**3
MULTIPART_OVERHEAD = 16 * 1024**2  # room for part headers and boundaries around MAX_UPLOAD bytes
TRANSFER_TOKEN_TTL = 3600.0
TERMINAL = frozenset({"finished", "exec-timeout"})
EXECUTE_MODES = frozenset({"query", "batch", "continue", "input", "complete"})


@dataclass
class ServerSettings:
    data_dir: Path
    flush_timeout: float = 2.0  # longest an execute call waits when there is no output
    stream_flush_timeout: float = 0.5
    idle_timeout: float = 3600.0
    exec_timeout: float = 0.0
    reap_interval: float = 30.0


@dataclass
class TransferToken:
    kind: str  # "upload" | "download"
    owner: str
    folder_id: str
    path: str
    size: int
    expires: float


# -- request helpers -----------------------------------------------------------------------------

async def read_params(request: web.Request) -> dict[str, Any]:
    """Query parameters merged with the JSON body (GET/DELETE carry JSON bodies in this API)."""
    params: dict[str, Any] = {}
    for key in request.query.keys():
        values = request.query.getall(key)
        params[key] = values if len(values) > 1 else values[0]
    if request.body_exists and request.content_type != "multipart/form-data":
        if request.content_length is not None and request.content_length > MAX_JSON_BODY:
            raise RequestTooLarge(f"JSON bodies are limited to {MAX_JSON_BODY} bytes.")
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                raise GenericBadRequest("Malformed request body.") from None
            if not isinstance(body, dict):
                raise InvalidAPIParameters("The request body must be a JSON object.")
            params.update(body)
    return params


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """A JSON response encoded with orjson (execute results carry megabytes of output)."""
    return web.Response(body=dumpb(data), status=status, content_type="application/json")


async def send_json(ws: web.WebSocketResponse, data: Any) -> None:
    """A JSON text frame, encoded once with orjson (``send_json`` would encode twice)."""
    await ws.send_frame(dumpb(data), WSMsgType.TEXT)


def opt_str(params: dict, *keys: str, default: str | None = None, max_len: int = 1 << 20) -> str | None:
    for key in keys:
        value = params.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidAPIParameters(f"{key!r} must be a string.")
        if len(value) > max_len:
            raise InvalidAPIParameters(f"{key!r} is too long (at most {max_len} characters).")
        return value
    return default


def req_str(params: dict, *keys: str, max_len: int = 1 << 20) -> str:
    value = opt_str(params, *keys, max_len=max_len)
    if value is None:
        raise InvalidAPIParameters(f"{keys[0]!r} is missing.")
    return value


def opt_dict(params: dict, *keys: str) -> dict:
    for key in keys:
        value = params.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidAPIParameters(f"{key!r} must be an object.")
        return value
    return {}


def opt_bool(params: dict, key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise InvalidAPIParameters(f"{key!r} must be a boolean.")


def str_list(params: dict, key: str, *, max_items: int = 1000, from_query: bool = True) -> list[str]:
    """A list of strings; a single string too when it may come from a query parameter."""
    value = params.get(key)
    if value is None:
        return []
    if isinstance(value, str) and from_query:
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidAPIParameters(f"{key!r} must be a list of strings.")
    if len(value) > max_items:
        raise InvalidAPIParameters(f"{key!r} has too many items (at most {max_items}).")
    return value


def encodable(text: str) -> bool:
    """Whether ``text`` survives the UTF-8 (surrogateescape) encoding that kernel messages,
    commands and the OS use; lone surrogates from JSON ``\\ud800`` escapes do not."""
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeError:
        return False
    return True


def env_text_ok(text: str) -> bool:
    """Whether ``text`` can go into a process environment (no NUL, encodable for the OS)."""
    return "\x00" not in text and encodable(text)


def kernel_text(value: str | None, key: str) -> str | None:
    """``value`` if it can be sent to a kernel or shell, else a 400."""
    if value is not None and not encodable(value):
        raise InvalidAPIParameters(f"{key!r} is not valid Unicode text (lone surrogates).")
    return value


def check_upload_length(request: web.Request) -> None:
    """Refuse a multipart upload whose declared length cannot fit the limit, before reading it."""
    if request.content_type != "multipart/form-data":
        raise InvalidAPIParameters("Uploads must be multipart/form-data with 'src' parts.")
    if request.content_length is not None and request.content_length > MAX_UPLOAD + MULTIPART_OVERHEAD:
        raise RequestTooLarge(f"Uploads are limited to {MAX_UPLOAD} bytes per request.")


async def save_multipart(request: web.Request, root: Path, **kw) -> list[str]:
    """:func:`files.save_uploads` of the request body; a malformed body is the client's 400."""
    check_upload_length(request)
    try:
        return await files.save_uploads(await request.multipart(), root, max_total=MAX_UPLOAD, **kw)
    except (ValueError, HttpProcessingError) as e:
        detail = getattr(e, "message", None) or str(e)
        raise InvalidAPIParameters(f"Malformed multipart body: {str(detail)[:200]}") from None


def owner(request: web.Request) -> str:
    return request["access_key"]


def api_major(request: web.Request) -> int:
    return request["api_version"][0]


def no_content() -> web.Response:
    return web.Response(status=204)


# -- the application -----------------------------------------------------------------------------

class EmbeddedServer:
    """State and handlers of one embedded server."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.keys = KeyStore(data_dir)
        self.vfolders = VFolderStore(data_dir)
        self.sessions = SessionRegistry(
            data_dir / "sessions",
            idle_timeout=settings.idle_timeout,
            exec_timeout=settings.exec_timeout,
        )
        self.tokens: dict[str, TransferToken] = {}
        self._reaper: asyncio.Task | None = None
        self._websockets: set[web.WebSocketResponse] = set()

    # -- app assembly ----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_JSON_BODY,
            middlewares=[self.access_log_middleware, self.error_middleware, self.auth_middleware],
        )
        r = app.router
        r.add_get("/", self.hello)
        r.add_route("*", "/auth", self.auth_test)
        r.add_route("*", "/auth/test", self.auth_test)
        prefixes = ["/session", "/kernel"] + [f"/v{n}/kernel" for n in (2, 3, 4)]
        for p in prefixes:
            r.add_post(p, self.create)
            r.add_post(p + "/create", self.create)
            r.add_post(p + "/_/create", self.create)
            r.add_get(p + "/_/match", self.match)
            r.add_get(p + "/{name}", self.get_info)
            r.add_delete(p + "/{name}", self.destroy)
            r.add_patch(p + "/{name}", self.restart)
            r.add_post(p + "/{name}", self.execute)
            r.add_post(p + "/{name}/interrupt", self.interrupt)
            r.add_post(p + "/{name}/complete", self.complete)
            r.add_get(p + "/{name}/logs", self.logs)
            r.add_post(p + "/{name}/upload", self.upload)
            r.add_route("GET", p + "/{name}/download", self.download)
            r.add_route("POST", p + "/{name}/download", self.download)
            r.add_get(p + "/{name}/download_single", self.download_single)
            r.add_get(p + "/{name}/files", self.list_files)
        for p in ["/stream/session", "/stream/kernel"] + [f"/v{n}/stream/kernel" for n in (2, 3, 4)]:
            r.add_get(p + "/{name}/execute", self.stream_execute)
        for p in ["/folders"] + [f"/v{n}/folders" for n in (2, 3, 4)]:
            r.add_post(p, self.vf_create)
            r.add_post(p + "/", self.vf_create)
            r.add_get(p, self.vf_list)
            r.add_delete(p, self.vf_delete_by_id)
            r.add_get(p + "/_/hosts", self.vf_hosts)
            r.add_get(p + "/_/all_hosts", self.vf_hosts)
            r.add_get(p + "/_/allowed-types", self.vf_allowed_types)
            r.add_get(p + "/_/allowed_types", self.vf_allowed_types)
            r.add_get(p + "/_/id", self.vf_id)
            r.add_get(p + "/{name}", self.vf_info)
            r.add_delete(p + "/{name}", self.vf_delete)
            r.add_post(p + "/{name}/mkdir", self.vf_mkdir)
            r.add_post(p + "/{name}/upload", self.vf_upload)
            r.add_route("GET", p + "/{name}/download", self.vf_download)
            r.add_route("POST", p + "/{name}/download", self.vf_download)
            r.add_post(p + "/{name}/request-upload", self.vf_request_upload)
            r.add_post(p + "/{name}/request-download", self.vf_request_download)
            r.add_get(p + "/{name}/files", self.vf_files)
            for name in ("delete-files", "delete_files"):
                r.add_delete(p + "/{name}/" + name, self.vf_delete_files)
                r.add_post(p + "/{name}/" + name, self.vf_delete_files)
        r.add_route("*", "/storage/upload", self.tus_upload)
        r.add_get("/storage/download", self.token_download)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._reaper = asyncio.create_task(self._reap_loop())

    async def _on_shutdown(self, app: web.Application) -> None:
        for ws in list(self._websockets):
            with contextlib.suppress(Exception):
                await send_json(ws, {"status": "server-restarting", "msg": "The server is shutting down."})
                await ws.close()

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(BaseException):
                await self._reaper
        await self.sessions.close()

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval)
            try:
                for name in await self.sessions.reap_idle():
                    log.info("reaped idle session %s", name)
                now = time.monotonic()
                for token, info in list(self.tokens.items()):
                    if info.expires < now:
                        del self.tokens[token]
            except Exception:
                log.exception("reaping idle sessions failed")

    # -- middlewares -----------------------------------------------------------------------------
    @web.middleware
    async def access_log_middleware(self, request: web.Request, handler):
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
    async def error_middleware(self, request: web.Request, handler):
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
        response.headers.setdefault("Server", "BackendAI")
        return response

    @web.middleware
    async def auth_middleware(self, request: web.Request, handler):
        version, header = request_version(request)
        request["api_version_str"] = version
        request["api_version_header"] = header
        request["api_version"] = parse_version(version)
        if request.match_info.http_exception is not None:
            raise request.match_info.http_exception
        if getattr(request.match_info.handler, PUBLIC, False):
            return await handler(request)
        request["access_key"] = await authenticate(request, self.keys)
        return await handler(request)

    # -- misc ------------------------------------------------------------------------------------
    @public
    async def hello(self, request: web.Request) -> web.Response:
        return json_response({"version": LATEST_API_VERSION, "manager": __version__})

    async def auth_test(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        return json_response({"authorized": "yes", "echo": params.get("echo")})

    # -- sessions --------------------------------------------------------------------------------
    def session(self, request: web.Request) -> ComputeSession:
        return self.sessions.get(owner(request), request.match_info["name"])

    async def create(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        name = validate_session_name(req_str(params, "name", "clientSessionToken", "sessionName"))
        image = req_str(params, "image", "lang", max_len=512)
        config = opt_dict(params, "config")
        environ = opt_dict(config, "environ")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in environ.items()):
            raise InvalidAPIParameters("'config.environ' must map strings to strings.")
        for k, v in environ.items():
            if not env_text_ok(k) or not k or "=" in k or not env_text_ok(v):
                raise InvalidAPIParameters(
                    f"'config.environ' has an invalid variable {k!r}: names must be non-empty "
                    "without '=', and names and values must be valid text without NUL characters."
                )
        mounts = self._resolve_mounts(
            owner(request), str_list(config, "mounts", max_items=64, from_query=False),
            opt_dict(config, "mount_map", "mountMap"),
        )
        spec = SessionSpec(
            owner=owner(request),
            name=name,
            image=image,
            type=opt_str(params, "type", "sessionType", default="interactive"),
            tag=opt_str(params, "tag", max_len=256),
            environ=environ,
            mounts={point: self.vfolders.path(folder) for point, folder in mounts.items()},
            mount_names=[folder.name for folder in mounts.values()],
            resources=opt_dict(config, "resources"),
        )
        session, created = await self.sessions.get_or_create(
            spec, reuse=opt_bool(params, "reuseIfExists", True)
        )
        ports_key = "servicePorts" if created else "service_ports"
        body = {
            "sessionId": str(session.id),
            "sessionName": session.name,
            "kernelId": session.name if api_major(request) <= 4 else str(session.id),
            "status": session.status,
            ports_key: [],
            "created": created,
        }
        if not created:
            body["servicePorts"] = []
        return json_response(body, status=201 if created else 200)

    def _resolve_mounts(self, key: str, mounts: list[str], mount_map: dict) -> dict[str, VFolder]:
        """Mount point (relative to the work dir) → folder, for ``name``/``name:alias`` items."""
        wanted: dict[str, str | None] = {}
        for item in mounts:
            name, _, alias = item.partition(":")
            wanted[name] = alias or None
        for name, alias in mount_map.items():
            if not isinstance(alias, str):
                raise InvalidAPIParameters("'config.mount_map' must map folder names to paths.")
            wanted[name] = alias
        result: dict[str, VFolder] = {}
        for name, alias in wanted.items():
            try:
                folder = self.vfolders.get(key, name)
            except VFolderNotFound:
                raise VFolderNotFound(f"Cannot mount {name!r}: no such virtual folder.") from None
            point = PurePosixPath(alias or name)
            if point.is_absolute():
                if files.WORK_DIR not in point.parents:
                    raise InvalidAPIParameters(
                        f"Cannot mount {name!r} at {alias!r}: the embedded server mounts folders "
                        "only under /home/work."
                    )
                point = point.relative_to(files.WORK_DIR)
            if ".." in point.parts or "\x00" in str(point) or str(point) in ("", "."):
                raise InvalidAPIParameters(f"Invalid mount point {alias!r} for {name!r}.")
            files.check_path_text(str(point))
            if str(point) in result:
                raise InvalidAPIParameters(f"Two folders are mounted at {str(point)!r}.")
            result[str(point)] = folder
        return result

    async def match(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        prefix = opt_str(params, "id", default="")
        matches = [
            {"id": str(s.id), "name": s.name, "status": s.status, "image": s.spec.image,
             "created_at": s.created_at.isoformat()}
            for s in self.sessions.list(owner(request))
            if str(s.id).startswith(prefix) or s.name.startswith(prefix)
        ]
        return json_response({"matches": matches})

    async def get_info(self, request: web.Request) -> web.Response:
        return json_response(self.session(request).info())

    async def destroy(self, request: web.Request) -> web.Response:
        session = self.session(request)
        await self.sessions.destroy(session)
        return json_response({"stats": {"status": "terminated"}})

    async def restart(self, request: web.Request) -> web.Response:
        await self.session(request).restart()
        return no_content()

    async def interrupt(self, request: web.Request) -> web.Response:
        await self.session(request).interrupt()
        return no_content()

    async def complete(self, request: web.Request) -> web.Response:
        session = self.session(request)
        params = await read_params(request)
        result = await self._complete(session, params)
        return json_response({"result": result, "completions": result["completions"]})

    async def _complete(self, session: ComputeSession, params: dict) -> dict:
        code = kernel_text(opt_str(params, "code", default=""), "code")
        options = opt_dict(params, "options")
        cursor = len(code)
        row, col = options.get("row"), options.get("col")
        if isinstance(row, int) and isinstance(col, int) and not isinstance(row, bool):
            lines = code.split("\n")
            if 0 <= row < len(lines):
                cursor = sum(len(line) + 1 for line in lines[:row]) + max(0, min(col, len(lines[row])))
        return await session.complete(code, cursor)

    async def execute(self, request: web.Request) -> web.Response:
        session = self.session(request)
        params = await read_params(request)
        mode = params.get("mode")
        if not mode:
            raise InvalidAPIParameters("mode is missing or empty!")
        if not isinstance(mode, str) or mode not in EXECUTE_MODES:
            raise InvalidAPIParameters("mode has an invalid value.")
        if mode == "complete":
            return json_response({"result": await self._complete(session, params)})
        run_id = validate_run_id(params.get("run_id") or params.get("runId"))
        code = opt_str(params, "code", default="")
        run = self._start_or_continue(session, mode, code, run_id, opt_dict(params, "options"))
        result = await run.collect(self.settings.flush_timeout)
        return json_response({"result": result.as_dict()})

    def _start_or_continue(
        self, session: ComputeSession, mode: str, code: str, run_id: str | None, options: dict
    ) -> Run:
        kernel_text(code, "code")  # checked before anything changes (an input must not get lost)
        if mode == "query":
            return session.start_query(code, run_id)
        if mode == "batch":
            batch = {}
            for key in ("clean", "build", "exec"):
                batch[key] = kernel_text(opt_str(options, key), f"options.{key}")
            return session.start_batch(batch, run_id)
        if run_id is None:
            raise InvalidAPIParameters("continuation requires explicit run ID")
        run = session.get_run(run_id)
        if mode == "input":
            session.send_input(run, code)
        return run

    async def stream_execute(self, request: web.Request) -> web.StreamResponse:
        session = self.session(request)
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        self._websockets.add(ws)
        inputs: asyncio.Queue[str | None] = asyncio.Queue()
        reader: asyncio.Task | None = None
        run: Run | None = None
        try:
            try:
                first = await asyncio.wait_for(ws.receive(), 60.0)
                if first.type != WSMsgType.TEXT:
                    return ws
                params = json.loads(first.data)
                if not isinstance(params, dict):
                    raise InvalidAPIParameters("The first message must be a JSON object.")
                mode = params.get("mode") or "query"
                if mode not in ("query", "batch"):
                    raise InvalidAPIParameters("mode has an invalid value.")
                run = self._start_or_continue(
                    session, mode, opt_str(params, "code", default=""), None, opt_dict(params, "options")
                )
            except (APIError, ValueError, RecursionError, asyncio.TimeoutError) as e:
                await send_json(ws, {"status": "error", "msg": f"Invalid API parameters: {e}"})
                return ws

            async def read_inputs():
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT:
                        await inputs.put(msg.data)
                await inputs.put(None)

            reader = asyncio.create_task(read_inputs())
            while True:
                result = await run.collect(self.settings.stream_flush_timeout)
                if result.console or result.status != "continued":
                    await send_json(ws, result.as_dict(with_run_id=False))
                if result.status in TERMINAL:
                    break
                if reader.done():  # the client went away: stop its run
                    await session.interrupt()
                    break
                if result.status == "waiting-input":
                    text = await self._next_input(inputs, run)
                    if text is None and reader.done():
                        await session.interrupt()
                        break
                    if text is not None:
                        session.send_input(run, text)
        except APIError as e:
            with contextlib.suppress(Exception):
                await send_json(ws, {"status": "error", "msg": f"BackendError: {e}"})
        finally:
            if reader is not None:
                reader.cancel()
            self._websockets.discard(ws)
            await ws.close()
        return ws

    @staticmethod
    async def _next_input(inputs: asyncio.Queue, run: Run) -> str | None:
        """The client's answer; None if the client left or the request went away (interrupted)."""
        while run.needs_input:
            try:
                return await asyncio.wait_for(inputs.get(), 0.2)
            except asyncio.TimeoutError:
                continue
        return None

    async def logs(self, request: web.Request) -> web.Response:
        return json_response({"result": {"logs": self.session(request).logs()}})

    async def upload(self, request: web.Request) -> web.Response:
        session = self.session(request)
        await save_multipart(request, session.workdir, extra_roots=session.mount_roots())
        return no_content()

    def _session_paths(self, session: ComputeSession, names: list[str]) -> list[Path]:
        return [
            files.confined(session.workdir, name, extra_roots=session.mount_roots(), must_exist=True)
            for name in names
        ]

    async def download(self, request: web.Request) -> web.StreamResponse:
        session = self.session(request)
        params = await read_params(request)
        names = str_list(params, "files", max_items=100)
        if not names:
            raise InvalidAPIParameters("'files' is missing.")
        paths = self._session_paths(session, names)
        writer = MultipartWriter("mixed")
        for path in paths:
            payload = await asyncio.to_thread(files.tar_bytes, path)
            writer.append(payload, {"Content-Type": "application/x-tar", "Content-Encoding": "identity"})
        return web.Response(body=writer, status=200)

    async def download_single(self, request: web.Request) -> web.Response:
        session = self.session(request)
        params = await read_params(request)
        (path,) = self._session_paths(session, [req_str(params, "file")])
        payload = await asyncio.to_thread(files.tar_bytes, path)
        return web.Response(body=payload, content_type="application/x-tar")

    async def list_files(self, request: web.Request) -> web.Response:
        session = self.session(request)
        params = await read_params(request)
        path = opt_str(params, "path", default=".")
        directory = files.confined(session.workdir, path, extra_roots=session.mount_roots(), must_exist=True)
        if not directory.is_dir():
            return json_response({"files": "[]", "errors": f"{path}: not a directory", "abspath": path})
        entries = files.listing(directory)
        return json_response({"files": files.files_json(entries), "errors": "", "abspath": path})

    # -- vfolders --------------------------------------------------------------------------------
    def folder(self, request: web.Request) -> VFolder:
        return self.vfolders.get(owner(request), request.match_info["name"])

    async def vf_create(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        folder = self.vfolders.create(
            owner(request),
            req_str(params, "name", max_len=64),
            permission=opt_str(params, "permission", default="rw"),
            usage_mode=opt_str(params, "usage_mode", "usageMode", default="general"),
            cloneable=opt_bool(params, "cloneable", False),
        )
        return json_response(folder.summary(self.vfolders.path(folder)), status=201)

    async def vf_list(self, request: web.Request) -> web.Response:
        return json_response([
            f.summary(self.vfolders.path(f)) for f in self.vfolders.list(owner(request))
        ])

    async def vf_id(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        folder = self.vfolders.get(owner(request), req_str(params, "name"))
        return json_response({"id": folder.id})

    async def vf_info(self, request: web.Request) -> web.Response:
        folder = self.folder(request)
        num_files, used = await asyncio.to_thread(self.vfolders.usage, folder)
        info = folder.summary(self.vfolders.path(folder))
        info.update(numFiles=num_files, num_files=num_files, used_bytes=used, last_used=None)
        return json_response(info)

    async def vf_delete(self, request: web.Request) -> web.Response:
        self.vfolders.delete(self.folder(request))
        return no_content()

    async def vf_delete_by_id(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        self.vfolders.delete(self.vfolders.get(owner(request), req_str(params, "id", "name")))
        return no_content()

    async def vf_hosts(self, request: web.Request) -> web.Response:
        return json_response({"default": "local", "allowed": ["local"]})

    async def vf_allowed_types(self, request: web.Request) -> web.Response:
        return json_response(["user"])

    async def vf_mkdir(self, request: web.Request) -> web.Response:
        folder = self.folder(request)
        params = await read_params(request)
        raw = params.get("path")
        paths = raw if isinstance(raw, list) else [raw]
        if not paths or not all(isinstance(p, str) and p for p in paths):
            raise InvalidAPIParameters("'path' must be a path or a list of paths.")
        parents = opt_bool(params, "parents", True)
        exist_ok = opt_bool(params, "exist_ok", False)
        root = self.vfolders.path(folder)
        success, failed = [], []
        for path in paths:
            target = files.confined(root, path, allow_work_prefix=False)
            try:
                target.mkdir(parents=parents, exist_ok=exist_ok)
                success.append({"item": path, "msg": None})
            except OSError as e:
                failed.append({"item": path, "msg": e.strerror or str(e)})
        if failed and len(paths) == 1:
            raise VFolderOperationFailed(f"mkdir {paths[0]!r} failed: {failed[0]['msg']}")
        return json_response({"results": {"success": success, "failed": failed}}, status=201)

    async def vf_upload(self, request: web.Request) -> web.Response:
        folder = self.folder(request)
        await save_multipart(request, self.vfolders.path(folder))
        return web.Response(status=201)

    async def vf_download(self, request: web.Request) -> web.StreamResponse:
        folder = self.folder(request)
        params = await read_params(request)
        names = str_list(params, "files", max_items=100)
        if not names:
            raise InvalidAPIParameters("'files' is missing.")
        root = self.vfolders.path(folder)
        paths = [files.confined(root, n, allow_work_prefix=False, must_exist=True) for n in names]
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

    def _issue_token(self, request: web.Request, kind: str, folder: VFolder, path: str, size: int) -> dict:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = TransferToken(
            kind, owner(request), folder.id, path, size, time.monotonic() + TRANSFER_TOKEN_TTL
        )
        url = f"{request.scheme}://{request.host}/storage/{kind}"
        return {"token": token, "url": url}

    async def vf_request_upload(self, request: web.Request) -> web.Response:
        folder = self.folder(request)
        params = await read_params(request)
        path = req_str(params, "path", max_len=4096)
        size = params.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > MAX_UPLOAD:
            raise InvalidAPIParameters(f"'size' must be an integer between 0 and {MAX_UPLOAD}.")
        target = files.confined(self.vfolders.path(folder), path, allow_work_prefix=False)
        if target.is_dir():
            raise InvalidAPIParameters(f"{path!r} is a directory.")
        files.make_parents(target, path)
        partial = target.with_name(f".{target.name}.uploading")
        os.close(files.open_new(partial))  # never through a planted symlink
        if size == 0:  # tus clients send nothing for an empty file
            partial.replace(target)
        return json_response(self._issue_token(request, "upload", folder, path, size))

    async def vf_request_download(self, request: web.Request) -> web.Response:
        folder = self.folder(request)
        params = await read_params(request)
        path = req_str(params, "path", "file", max_len=4096)
        target = files.confined(self.vfolders.path(folder), path, allow_work_prefix=False, must_exist=True)
        if not target.is_file():
            raise InvalidAPIParameters(f"{path!r} is not a file (archive downloads are not supported).")
        return json_response(self._issue_token(request, "download", folder, path, target.stat().st_size))

    async def vf_files(self, request: web.Request) -> web.Response:
        folder = self.folder(request)
        params = await read_params(request)
        path = opt_str(params, "path", default=".")
        directory = files.confined(self.vfolders.path(folder), path, allow_work_prefix=False, must_exist=True)
        if not directory.is_dir():
            raise InvalidAPIParameters(f"{path!r} is not a directory.")
        entries = files.listing(directory)
        return json_response({
            "items": files.items(entries), "files": files.files_json(entries), "folder_path": path,
        })

    async def vf_delete_files(self, request: web.Request) -> web.Response:
        folder = self.folder(request)
        params = await read_params(request)
        names = str_list(params, "files", max_items=1000)
        recursive = opt_bool(params, "recursive", False)
        root = self.vfolders.path(folder)
        targets = [files.confined(root, n, allow_work_prefix=False, must_exist=True) for n in names]
        for target, name in zip(targets, names):
            if target == root:
                raise InvalidAPIParameters("The folder itself cannot be deleted this way.")
            if target.is_dir() and not target.is_symlink():
                if not recursive:
                    raise InvalidAPIParameters(f"{name!r} is a directory; pass recursive=true.")
                await asyncio.to_thread(shutil.rmtree, target)
            else:
                target.unlink()
        return json_response({})

    # -- token transfers (the "storage proxy") ---------------------------------------------------
    def _token(self, request: web.Request, kind: str) -> tuple[TransferToken, Path]:
        token = self.tokens.get(request.query.get("token", ""))
        if token is None or token.kind != kind or token.expires < time.monotonic():
            raise web.HTTPForbidden(text="Invalid or expired transfer token.")
        folder = self.vfolders.get(token.owner, token.folder_id)
        root = self.vfolders.path(folder)
        target = files.confined(root, token.path, allow_work_prefix=False)
        return token, target

    @public
    async def tus_upload(self, request: web.Request) -> web.StreamResponse:
        tus = {"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0", "Tus-Max-Size": str(MAX_UPLOAD)}
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={**tus, "Tus-Extension": ""})
        token, target = self._token(request, "upload")
        partial = target.with_name(f".{target.name}.uploading")
        partial_size = files.regular_size(partial)  # symlinks are never followed
        offset = partial_size if partial_size is not None else (token.size if target.exists() else 0)
        if request.method == "HEAD":
            return web.Response(status=200, headers={
                **tus, "Upload-Offset": str(offset), "Upload-Length": str(token.size),
                "Cache-Control": "no-store",
            })
        if request.method != "PATCH":
            raise web.HTTPMethodNotAllowed(request.method, ["OPTIONS", "HEAD", "PATCH"])
        if request.content_type != "application/offset+octet-stream":
            return web.Response(status=415, text="Content-Type must be application/offset+octet-stream")
        try:
            claimed = int(request.headers.get("Upload-Offset", ""))
        except ValueError:
            return web.Response(status=400, text="Missing or invalid Upload-Offset header")
        if claimed != offset or partial_size is None:
            return web.Response(status=409, headers={**tus, "Upload-Offset": str(offset)})
        if request.content_length is not None and offset + request.content_length > token.size:
            return web.Response(status=413, text="More data than the announced size")
        fd = files.open_append(partial)
        if fd is None:
            return web.Response(status=409, headers={**tus, "Upload-Offset": str(offset)})
        with os.fdopen(fd, "ab") as f:
            async for chunk in request.content.iter_chunked(files.CHUNK):
                offset += len(chunk)
                if offset > token.size:
                    return web.Response(status=413, text="More data than the announced size")
                f.write(chunk)
        if offset == token.size:
            partial.replace(target)
        return web.Response(status=204, headers={**tus, "Upload-Offset": str(offset)})

    @public
    async def token_download(self, request: web.Request) -> web.StreamResponse:
        _token, target = self._token(request, "download")
        if not target.is_file():
            raise FileNotFound()
        return web.FileResponse(
            target, headers={"Content-Disposition": f"attachment; filename={files.quoted_filename(target.name)}"}
        )
