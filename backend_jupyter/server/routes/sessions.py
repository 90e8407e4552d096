"""Compute sessions: create, match, info, destroy, restart, interrupt, complete, logs and the REST
execute loop, under ``/session`` (API v5+), ``/kernel`` (v4) and the legacy ``/v2``-``/v4/kernel``."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import PurePosixPath

from aiohttp import web

from ...fastjson import dumps
from ...protocol import EXECUTE_MODES
from .. import files
from ..errors import InvalidAPIParameters, NoSuchFolder
from ..params import (
    api_major,
    env_text_ok,
    json_response,
    kernel_text,
    no_content,
    opt_bool,
    opt_dict,
    opt_str,
    owner,
    read_params,
    req_str,
    str_list,
    validate_run_id,
    validate_session_name,
)
from ..runs import Run
from ..sessions import LocalSession, SessionSpec
from ..state import FOLDERS, SESSIONS, SETTINGS
from ..vfolders import LocalFolder
from . import under

PREFIXES = ("/session", "/kernel", "/v2/kernel", "/v3/kernel", "/v4/kernel")


def session_of(request: web.Request) -> LocalSession:
    """The caller's session the path names (by name or id)."""
    return request.app[SESSIONS].get(owner(request), request.match_info["name"])


# -- create -----------------------------------------------------------------------------------------

async def create(request: web.Request) -> web.Response:
    params = await read_params(request)
    spec = _spec(request, params)
    session, created = await request.app[SESSIONS].get_or_create(
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


def _spec(request: web.Request, params: dict) -> SessionSpec:
    """The session a create request asks for, checked."""
    name = validate_session_name(req_str(params, "name", "clientSessionToken", "sessionName"))
    image = req_str(params, "image", "lang", max_len=512)
    config = opt_dict(params, "config")
    environ = _environ(config)
    mounts = _mounts(
        request, str_list(config, "mounts", max_items=64, from_query=False),
        opt_dict(config, "mount_map", "mountMap"),
    )
    folders = request.app[FOLDERS]
    return SessionSpec(
        owner=owner(request),
        name=name,
        image=image,
        type=opt_str(params, "type", "sessionType", default="interactive"),
        tag=opt_str(params, "tag", max_len=256),
        environ=environ,
        mounts={point: folders.path(folder) for point, folder in mounts.items()},
        mount_names=[folder.name for folder in mounts.values()],
        resources=opt_dict(config, "resources"),
        client="".join(c for c in request.headers.get("User-Agent", "") if c.isprintable())[:120],
    )


def _environ(config: dict) -> dict[str, str]:
    """``config.environ``: variables the session's kernel and commands get."""
    environ = opt_dict(config, "environ")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in environ.items()):
        raise InvalidAPIParameters("'config.environ' must map strings to strings.")
    for k, v in environ.items():
        if not env_text_ok(k) or not k or "=" in k or not env_text_ok(v):
            raise InvalidAPIParameters(
                f"'config.environ' has an invalid variable {k!r}: names must be non-empty "
                "without '=', and names and values must be valid text without NUL characters."
            )
    return environ


def _mounts(request: web.Request, mounts: list[str], mount_map: dict) -> dict[str, LocalFolder]:
    """Mount point (relative to the work dir) → folder, for ``name``/``name:alias`` items."""
    wanted: dict[str, str | None] = {}
    for item in mounts:
        name, _, alias = item.partition(":")
        wanted[name] = alias or None
    for name, alias in mount_map.items():
        if not isinstance(alias, str):
            raise InvalidAPIParameters("'config.mount_map' must map folder names to paths.")
        wanted[name] = alias
    result: dict[str, LocalFolder] = {}
    for name, alias in wanted.items():
        try:
            folder = request.app[FOLDERS].get(owner(request), name)
        except NoSuchFolder:
            raise NoSuchFolder(f"Cannot mount {name!r}: no such virtual folder.") from None
        point = _mount_point(name, alias)
        if point in result:
            raise InvalidAPIParameters(f"Two folders are mounted at {point!r}.")
        result[point] = folder
    return result


def _mount_point(name: str, alias: str | None) -> str:
    """Where folder ``name`` goes in the work directory: ``alias`` (relative, or under
    /home/work) or its own name."""
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
    return str(point)


# -- the session's life -----------------------------------------------------------------------------

async def match(request: web.Request) -> web.Response:
    params = await read_params(request)
    prefix = opt_str(params, "id", default="")
    matches = [
        {"id": str(s.id), "name": s.name, "status": s.status, "image": s.spec.image,
         "created_at": s.created_at.isoformat()}
        for s in request.app[SESSIONS].list(owner(request))
        if str(s.id).startswith(prefix) or s.name.startswith(prefix)
    ]
    return json_response({"matches": matches})


async def info(request: web.Request) -> web.Response:
    return json_response(info_body(session_of(request)))


def info_body(session: LocalSession) -> dict:
    """The session as the manager describes one (v5+ names, then the v4 ones)."""
    age_ms = int((datetime.now(timezone.utc) - session.created_at).total_seconds() * 1000)
    return {
        "sessionId": str(session.id),
        "sessionName": session.name,
        "domainName": "default",
        "groupId": None,
        "userId": None,
        "lang": session.spec.image,
        "image": session.spec.image,
        "architecture": os.uname().machine,
        "registry": "local",
        "tag": session.spec.tag,
        "type": session.spec.type,
        "containerId": None,
        "occupiedSlots": dumps(session.spec.resources),  # the slots asked for: nothing is metered
        "occupiedShares": "{}",
        "environ": "{}",
        "mounts": session.spec.mount_names,
        "status": session.status,
        "statusInfo": None,
        "statusData": None,
        "age": age_ms,
        "creationTime": session.created_at.isoformat(),
        "terminationTime": None,
        "numQueriesExecuted": session.runs.num_queries,
        "lastStat": None,
        # v4 (1.4.x/19.09) field names
        "queryTimeout": -1,
        "idleTimeout": -1,
        "memoryLimit": 0,
        "maxCpuCredit": -1,
        "idle": -1,
        "memoryUsed": -1,
        "cpuCreditUsed": -1,
    }


async def destroy(request: web.Request) -> web.Response:
    session = session_of(request)
    await request.app[SESSIONS].destroy(session)
    return json_response({"stats": {"status": "terminated"}})


async def restart(request: web.Request) -> web.Response:
    await session_of(request).restart()
    return no_content()


async def interrupt(request: web.Request) -> web.Response:
    await session_of(request).interrupt()
    return no_content()


async def logs(request: web.Request) -> web.Response:
    return json_response({"result": {"logs": session_of(request).logs()}})


# -- code: completion and the execute loop ------------------------------------------------------------

async def complete(request: web.Request) -> web.Response:
    session = session_of(request)
    params = await read_params(request)
    result = await _complete(session, params)
    return json_response({"result": result, "completions": result["completions"]})


async def _complete(session: LocalSession, params: dict) -> dict:
    """Completions for ``code`` at ``options.row``/``options.col`` (default: its end)."""
    code = kernel_text(opt_str(params, "code", default=""), "code")
    options = opt_dict(params, "options")
    cursor = len(code)
    row, col = options.get("row"), options.get("col")
    if isinstance(row, int) and isinstance(col, int) and not isinstance(row, bool):
        lines = code.split("\n")
        if 0 <= row < len(lines):
            cursor = sum(len(line) + 1 for line in lines[:row]) + max(0, min(col, len(lines[row])))
    return await session.complete(code, cursor)


async def execute(request: web.Request) -> web.Response:
    session = session_of(request)
    params = await read_params(request)
    mode = params.get("mode")
    if not mode:
        raise InvalidAPIParameters("mode is missing or empty!")
    if not isinstance(mode, str) or mode not in EXECUTE_MODES:
        raise InvalidAPIParameters("mode has an invalid value.")
    if mode == "complete":
        return json_response({"result": await _complete(session, params)})
    run_id = validate_run_id(params.get("run_id") or params.get("runId"))
    code = opt_str(params, "code", default="")
    run = start_or_continue(session, mode, code, run_id, opt_dict(params, "options"))
    result = await run.collect(request.app[SETTINGS].flush_timeout)
    return json_response({"result": result.as_dict()})


def start_or_continue(session: LocalSession, mode: str, code: str, run_id: str | None, options: dict) -> Run:
    """The run an execute call is about: a new query or batch run, or the one it continues or
    answers (``input``: ``code`` is the answer)."""
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


def add_routes(app: web.Application) -> None:
    routes = [
        web.post("", create), web.post("/create", create), web.post("/_/create", create),
        web.get("/_/match", match),
        web.get("/{name}", info), web.delete("/{name}", destroy), web.patch("/{name}", restart),
        web.post("/{name}", execute),
        web.post("/{name}/interrupt", interrupt),
        web.post("/{name}/complete", complete),
        web.get("/{name}/logs", logs),
    ]
    for prefix in PREFIXES:
        app.router.add_routes(under(prefix, routes))
