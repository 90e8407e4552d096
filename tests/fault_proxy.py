"""A real HTTP proxy on 127.0.0.1 that injects faults in front of a real server.

It forwards requests unchanged (Host header included, so signatures still verify) and can, for the
next N matching requests, answer an error status instead, stall before answering, or forward only
the first bytes of the body and then drop the client's connection (a transfer broken midway).  It records
every request it saw (method, path, JSON body) for assertions.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web


@dataclass
class Fault:
    count: int
    status: int | None = None  # answer this status instead of forwarding
    delay: float = 0.0  # stall this long before forwarding
    match: str = ""  # only requests whose "METHOD path" contains this
    skip: int = 0  # let this many matching requests through first
    cut: int | None = None  # forward only this many bytes of the body, then drop the client's connection


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, object]] = field(default_factory=list)
    endpoint: str = ""
    port: int = 0  # 0: any free port

    def start(self) -> FaultProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def boot():
            self._http = aiohttp.ClientSession(auto_decompress=False)
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, shutdown_timeout=1.0)  # stalled requests must not hold up stop()
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await site.start()
            self.endpoint = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

        self._loop.run_until_complete(boot())
        ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        async def shutdown():
            await self._http.close()
            await self._runner.cleanup()
            stalled = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in stalled:  # requests still held by a delay fault
                task.cancel()
            await asyncio.gather(*stalled, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def inject(self, count: int = 1, *, status: int | None = None, delay: float = 0.0, match: str = "",
               skip: int = 0, cut: int | None = None) -> None:
        self.faults.append(Fault(count, status, delay, match, skip, cut))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        key = f"{request.method} {request.path}"
        self.seen.append((request.method, request.path_qs, parsed))
        for fault in self.faults:
            if fault.count > 0 and fault.match in key:
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.count -= 1
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.cut is not None:  # the server gets part of the body; the client, a broken connection
                    headers = {k: v for k, v in request.headers.items()
                               if k.lower() not in ("content-length", "transfer-encoding")}
                    async with self._http.request(request.method, self.upstream + request.path_qs,
                                                  data=body[:fault.cut], headers=headers) as up:
                        await up.read()
                    request.transport.abort()
                    return web.Response(status=500)
                if fault.status:
                    return web.json_response(
                        {"type": "https://api.backend.ai/probs/service-unavailable", "title": "Injected fault.",
                         "error_code": "test_injected"},
                        status=fault.status, content_type="application/problem+json",
                    )
                break
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._proxy_ws(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
        async with self._http.request(request.method, self.upstream + request.path_qs, data=body or None,
                                      headers=headers, allow_redirects=False) as up:
            payload = await up.read()
            out_headers = {k: v for k, v in up.headers.items()
                           if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")}
            return web.Response(status=up.status, body=payload, headers=out_headers)

    async def _proxy_ws(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
                                        "sec-websocket-extensions", "content-length")}
        async with self._http.ws_connect(self.upstream.replace("http", "ws", 1) + request.path_qs,
                                         headers=headers) as up:
            down = web.WebSocketResponse()
            await down.prepare(request)

            async def pump(src, dst):
                async for msg in src:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await dst.send_str(msg.data)
                    else:
                        break
                await dst.close()

            await asyncio.gather(pump(up, down), pump(down, up), return_exceptions=True)
            return down
