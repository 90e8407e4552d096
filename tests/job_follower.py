"""A process that starts and/or follows a background job (backend_jupyter.jobs), writing its
journal: the tests kill it and start another to check that nothing is lost.

    python -m tests.job_follower JOURNAL_DIR start|follow [CODE]   (BACKEND_* from the environment)
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from backend_jupyter import jobs
from backend_jupyter.client import APIClient
from backend_jupyter.config import Config
from backend_jupyter.journal import Journal


async def main(journal_dir: str, mode: str, code: str = "", params: str = "{}") -> str:
    journal = Journal(Path(journal_dir))
    if not journal.lead():
        raise SystemExit("another process follows this job")
    async with APIClient(Config.from_env()) as api:
        if mode == "start":
            journal.update(code=code, params=json.loads(params))
            await jobs.start(api, journal)
        return await jobs.follow(api, journal, poll=0.2)


if __name__ == "__main__":
    print(asyncio.run(main(*sys.argv[1:])), flush=True)
