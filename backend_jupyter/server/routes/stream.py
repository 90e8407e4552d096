"""The websocket execute loop: ``GET /stream/{session,kernel}/{name}/execute`` (and the legacy
``/v2``-``/v4/stream/kernel``).

The client's first message (``{"mode": "query" | "batch", "code", "options"}``) starts a run; the
server sends each batch of output as a result object (without ``runId``) until the run ends, and
passes the client's next text message on when the run waits for input.  A client that goes away
interrupts its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from ...fastjson import dumpb
from ...protocol import CONTINUED, TERMINAL, WAITING_INPUT
from ..errors import APIError, InvalidAPIParameters
from ..params import opt_dict, opt_str
from ..runs import Run
from ..sessions import LocalSession
from ..state import SETTINGS
from .sessions import session_of, start_or_continue

PREFIXES = ("/stream/session", "/stream/kernel", "/v2/stream/kernel", "/v3/stream/kernel", "/v4/stream/kernel")
FIRST_MESSAGE_TIMEOUT = 60.0
STREAMS = web.AppKey("streams", set[web.WebSocketResponse])  # the open ones, told when the server stops


async def send_json(ws: web.WebSocketResponse, data: Any) -> None:
    """A JSON text frame, encoded once with orjson (``send_json`` would encode twice)."""
    await ws.send_frame(dumpb(data), WSMsgType.TEXT)


async def stream_execute(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    streams = request.app[STREAMS]
    streams.add(ws)
    try:
        await ExecuteStream(ws, session, request.app[SETTINGS].stream_flush_timeout).serve()
    finally:
        streams.discard(ws)
        await ws.close()
    return ws


class ExecuteStream:
    """One websocket execute: the run the client's first message starts, relayed until it ends."""

    def __init__(self, ws: web.WebSocketResponse, session: LocalSession, flush_timeout: float):
        self.ws = ws
        self.session = session
        self.flush_timeout = flush_timeout
        self.inputs: asyncio.Queue[str | None] = asyncio.Queue()
        self.reader: asyncio.Task | None = None

    async def serve(self) -> None:
        try:
            run = await self._first_run()
            if run is not None:
                self.reader = asyncio.create_task(self._read_inputs())
                await self._relay(run)
        except APIError as e:
            with contextlib.suppress(Exception):
                await send_json(self.ws, {"status": "error", "msg": f"BackendError: {e}"})
        finally:
            if self.reader is not None:
                self.reader.cancel()

    async def _first_run(self) -> Run | None:
        """The run the first message starts; None (the client told why, if it can be) if none."""
        try:
            first = await asyncio.wait_for(self.ws.receive(), FIRST_MESSAGE_TIMEOUT)
            if first.type != WSMsgType.TEXT:
                return None
            params = json.loads(first.data)
            if not isinstance(params, dict):
                raise InvalidAPIParameters("The first message must be a JSON object.")
            mode = params.get("mode") or "query"
            if mode not in ("query", "batch"):
                raise InvalidAPIParameters("mode has an invalid value.")
            return start_or_continue(
                self.session, mode, opt_str(params, "code", default=""), None, opt_dict(params, "options")
            )
        except (APIError, ValueError, RecursionError, asyncio.TimeoutError) as e:
            await send_json(self.ws, {"status": "error", "msg": f"Invalid API parameters: {e}"})
            return None

    async def _read_inputs(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                await self.inputs.put(msg.data)
        await self.inputs.put(None)

    async def _relay(self, run: Run) -> None:
        """Send the run's output until it ends (or the client leaves: then interrupt it)."""
        while True:
            result = await run.collect(self.flush_timeout)
            if result.console or result.status != CONTINUED:
                await send_json(self.ws, result.as_dict(with_run_id=False))
            if result.status in TERMINAL:
                return
            if self.reader.done():  # the client went away: stop its run
                await self.session.interrupt()
                return
            if result.status == WAITING_INPUT:
                text = await self._next_input(run)
                if text is None and self.reader.done():
                    await self.session.interrupt()
                    return
                if text is not None:
                    self.session.send_input(run, text)

    async def _next_input(self, run: Run) -> str | None:
        """The client's answer; None if the client left or the request went away (interrupted)."""
        while run.needs_input:
            try:
                return await asyncio.wait_for(self.inputs.get(), 0.2)
            except asyncio.TimeoutError:
                continue
        return None


async def close_streams(app: web.Application) -> None:
    """Tell each open stream's client that the server is going away, and close it."""
    for ws in list(app[STREAMS]):
        with contextlib.suppress(Exception):
            await send_json(ws, {"status": "server-restarting", "msg": "The server is shutting down."})
            await ws.close()


def add_routes(app: web.Application) -> None:
    app.router.add_routes([web.get(prefix + "/{name}/execute", stream_execute) for prefix in PREFIXES])
