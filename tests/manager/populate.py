"""Load the manager's JSON fixtures in one process (run with the manager venv's Python).

``backend.ai mgr fixture populate FILE`` does the same per file, but each call pays ~2 s of CLI
start-up; the stack loads a dozen files, so this saves ~30 s of every bring-up.  It calls the same
function the CLI calls (``ai.backend.manager.models.base.populate_fixture``), file by file in order.

    PGPASSWORD=... python populate.py HOST PORT DB USER FILE...
"""

import asyncio
import os
import sys
from pathlib import Path

import sqlalchemy as sa
from ai.backend.common.json import load_json
from ai.backend.manager.models.base import populate_fixture
from sqlalchemy.ext.asyncio import create_async_engine


async def main(host: str, port: str, db: str, user: str, password: str, files: list[str]) -> None:
    url = sa.engine.URL.create("postgresql+asyncpg", username=user, password=password, database=db,
                               query={"host": host, "port": port})
    engine = create_async_engine(url)
    try:
        for name in files:
            print(f"populating {name}", flush=True)
            await populate_fixture(engine, load_json(Path(name).read_text(encoding="utf8")))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    host, port, db, user, *files = sys.argv[1:]
    asyncio.run(main(host, port, db, user, os.environ.get("PGPASSWORD", ""), files))
