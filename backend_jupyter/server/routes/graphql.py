"""``POST /admin/gql``: the part of the manager's GraphQL API a user reads their sessions through.

A real manager serves its whole schema there; the embedded server answers the queries the
client sends (``compute_session(id:) { containers { ... live_stat } }``, see
``ComputeSession.live_stat``) with a real GraphQL executor, so any well-formed query over these
fields works, and anything else gets GraphQL's own error.  As on the manager, the answer is
always HTTP 200 with ``data`` and ``errors``, and a session of another key is ``null``.
"""

from __future__ import annotations

import json
import uuid

from aiohttp import web
from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    graphql,
)

from ..params import json_response, owner, read_params
from ..sessions import LocalSession
from ..state import SESSIONS

UUID = GraphQLScalarType("UUID", serialize=str, parse_value=str)
JSONString = GraphQLScalarType("JSONString", serialize=lambda v: json.dumps(v) if v is not None else None)


def _live_stat(session: LocalSession, _info) -> dict | None:
    return session.live_stat()


CONTAINER = GraphQLObjectType("ComputeContainer", {
    "id": GraphQLField(UUID, resolve=lambda s, _: s.id),
    "cluster_role": GraphQLField(GraphQLString, resolve=lambda s, _: "main"),
    "status": GraphQLField(GraphQLString, resolve=lambda s, _: s.status),
    "image": GraphQLField(GraphQLString, resolve=lambda s, _: s.spec.image),
    "occupied_slots": GraphQLField(JSONString, resolve=lambda s, _: {k: str(v) for k, v in s.spec.resources.items()}),
    "live_stat": GraphQLField(JSONString, resolve=_live_stat),
    "last_stat": GraphQLField(JSONString, resolve=_live_stat),
})
SESSION = GraphQLObjectType("ComputeSession", {
    "id": GraphQLField(UUID, resolve=lambda s, _: s.id),
    "name": GraphQLField(GraphQLString, resolve=lambda s, _: s.name),
    "status": GraphQLField(GraphQLString, resolve=lambda s, _: s.status),
    "image": GraphQLField(GraphQLString, resolve=lambda s, _: s.spec.image),
    "containers": GraphQLField(GraphQLList(CONTAINER), resolve=lambda s, _: [s]),
})


def _session(_root, info, id: str) -> LocalSession | None:
    request = info.context["request"]
    try:
        wanted = uuid.UUID(str(id))
    except ValueError:
        return None
    return next((s for s in request.app[SESSIONS].list(owner(request)) if s.id == wanted), None)


SCHEMA = GraphQLSchema(query=GraphQLObjectType("Query", {
    "compute_session": GraphQLField(SESSION, args={"id": GraphQLArgument(GraphQLNonNull(UUID))}, resolve=_session),
}))


async def query(request: web.Request) -> web.Response:
    params = await read_params(request)
    result = await graphql(SCHEMA, str(params.get("query") or ""), variable_values=params.get("variables") or None,
                           operation_name=params.get("operation_name") or params.get("operationName"),
                           context_value={"request": request})
    errors = [{"message": e.message, "locations": e.locations and [loc._asdict() for loc in e.locations],
               "path": e.path} for e in result.errors or []]
    return json_response({"data": result.data, "errors": errors or None})


def add_routes(app: web.Application) -> None:
    app.router.add_routes([web.post("/admin/gql", query)])
