"""Give every user its personal project, the way 26.9's migrations do (run with the manager venv's Python).

A 26.9 manager creates a personal vfolder in its owner's *personal project* (models/vfolder/creators.py:
``PersonalVFolderCreator``); without one, ``POST /folders`` fails with ``vfolder_create_not-found`` ("The
vfolder has no owning project").  Users created through the API get theirs at creation; the halfstack
fixtures' users are loaded after the schema, so they have none.  This runs the manager's own data
migrations that backfill them: ``c7a4f1e9b023`` (the project rows) and ``dafe06a6c763`` (their nodes,
edges, rosters and roles in the permission graph), both idempotent.

    PGPASSWORD=... python personal_projects.py HOST PORT DB USER
"""

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

import ai.backend.manager.models.alembic as alembic_pkg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = ("c7a4f1e9b023_backfill_personal_projects", "dafe06a6c763_put_every_entity_in_the_graph")


def load(name: str):
    path = Path(alembic_pkg.__file__).parent / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bj_migration_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def main(host: str, port: str, db: str, user: str, password: str) -> None:
    backfill = load(MIGRATIONS[0]).backfill
    graph = load(MIGRATIONS[1]).put_every_entity_in_the_graph
    url = sa.engine.URL.create("postgresql+asyncpg", username=user, password=password, database=db,
                               query={"host": host, "port": port})
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(backfill)
            await conn.run_sync(graph)
            rows = (await conn.execute(sa.text(
                "SELECT u.email, g.name FROM groups g JOIN users u ON g.creator_id = u.uuid"
                " WHERE g.type = 'personal' ORDER BY u.email"))).all()
        for email, name in rows:
            print(f"personal project {name} of {email}", flush=True)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:], os.environ.get("PGPASSWORD", "")))
