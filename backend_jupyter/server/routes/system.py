"""``GET /``, the server's version (no signature needed), and ``/auth``, a signed echo."""

from __future__ import annotations

from aiohttp import web

from ... import __version__
from ..auth import LATEST_API_VERSION, public
from ..params import json_response, read_params


@public
async def hello(request: web.Request) -> web.Response:
    return json_response({"version": LATEST_API_VERSION, "manager": __version__})


async def auth_test(request: web.Request) -> web.Response:
    params = await read_params(request)
    return json_response({"authorized": "yes", "echo": params.get("echo")})


def add_routes(app: web.Application) -> None:
    app.router.add_routes([
        web.get("/", hello),
        web.route("*", "/auth", auth_test),
        web.route("*", "/auth/test", auth_test),
    ])
