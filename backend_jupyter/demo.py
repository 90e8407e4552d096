"""``backend-jupyter demo``: a short scripted session that shows the whole path working.

It starts (or reuses) the embedded server, or uses the cluster configured by ``BACKEND_*``
variables, and runs a few cells through the same client and execute loop the kernel uses.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

from .client import APIClient, BackendError, ComputeSession, VFolder
from .display import record_bundle
from .embedded import EmbeddedServerError, resolve_config
from .execution import (
    Display,
    Finished,
    InputRequest,
    Output,
    RunFailed,
    StepFinished,
    run_cell,
)

PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

CELLS = [
    ("hello", "print('Hello from a Backend.AI compute session!')", []),
    ("streaming", "import time\nfor i in range(3):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.3)", []),
    ("input()", "name = input('Your name? ')\nprint(f'Nice to meet you, {name}.')", ["Ada"]),
    ("getpass()", "import getpass\nsecret = getpass.getpass('Password: ')\nprint('password length', len(secret))",
     ["hunter2"]),
    ("rich output", "from IPython.display import display, HTML, Image\nimport base64\n"
     f"display(Image(data=base64.b64decode('{PNG_1x1}'), format='png'))\n"
     "display(HTML('<b>bold</b> HTML'))", []),
    ("an error", "1 / 0", []),
]


def _line(text: str) -> None:
    print(text, flush=True)


async def _run(session: ComputeSession, code: str, answers: list[str], mode: str = "query", options=None):
    started = time.perf_counter()
    first_output = None
    answers = list(answers)
    result = None
    async for event in run_cell(session, code, mode=mode, options=options):
        now = time.perf_counter() - started
        if isinstance(event, Output):
            first_output = first_output if first_output is not None else now
            for text_line in event.text.rstrip("\n").split("\n"):
                _line(f"    {event.stream:6} | {text_line}")
        elif isinstance(event, Display):
            bundle = record_bundle(event.kind, event.data)
            kinds = ", ".join(m for m in bundle if m != "text/plain") or "text/plain"
            _line(f"    display| {kinds}")
        elif isinstance(event, InputRequest):
            answer = answers.pop(0)
            shown = "*" * len(answer) if event.password else answer
            _line(f"    input  | {event.prompt!r} ← {shown!r} ({'password' if event.password else 'text'})")
            event.answer(answer)
        elif isinstance(event, StepFinished):
            _line(f"    step   | {event.status} (exit {event.exit_code})")
        elif isinstance(event, Finished):
            result = event
        elif isinstance(event, RunFailed):
            raise event.error
    return result, time.perf_counter() - started


async def demo(config) -> int:
    failures = 0
    async with APIClient(config) as api:
        _line(f"Backend.AI endpoint {api.endpoint} (API {api.api_version})")
        name = f"demo-{secrets.token_hex(3)}"
        started = time.perf_counter()
        session = await ComputeSession.get_or_create(api, "python", name=name)
        _line(f"Session {name} ready in {time.perf_counter() - started:.2f} s\n")
        try:
            for title, code, answers in CELLS:
                _line(f"[{title}]")
                finished, seconds = await _run(session, code, answers)
                expected_error = title == "an error"
                ok = finished is not None and (finished.exit_code != 0) == expected_error
                failures += not ok
                _line(f"    -> exit code {finished.exit_code if finished else '?'} in {seconds * 1000:.0f} ms"
                      f"{'' if ok else '  (UNEXPECTED)'}\n")

            _line("[batch mode: upload, build, run]")
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "main.py").write_text("import sys\nprint('batch job on', sys.platform)\n")
                await session.upload(["main.py"], basedir=tmp)
            finished, seconds = await _run(session, "", [], mode="batch",
                                           options={"build": "*", "exec": "python main.py"})
            failures += finished is None or finished.exit_code != 0
            _line(f"    -> exit code {finished.exit_code if finished else '?'} in {seconds * 1000:.0f} ms\n")

            _line("[vfolder: create, upload, mount, read]")
            folder_name = f"demo-data-{secrets.token_hex(3)}"
            await VFolder.create(api, folder_name)
            folder = VFolder(api, folder_name)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    Path(tmp, "numbers.csv").write_text("a,b\n1,2\n3,4\n")
                    await folder.upload(["numbers.csv"], basedir=tmp)
                reader = await ComputeSession.get_or_create(api, "python", name=f"{name}-m", mounts=[folder_name])
                try:
                    finished, _ = await _run(
                        reader, f"print(open('{folder_name}/numbers.csv').read().splitlines())", [])
                    failures += finished is None or finished.exit_code != 0
                finally:
                    await reader.destroy()
            finally:
                await folder.delete()
            _line("")
        finally:
            await session.destroy()
            _line(f"Session {name} destroyed.")
    _line("Demo finished: " + ("all steps worked." if not failures else f"{failures} step(s) failed."))
    return 1 if failures else 0


def run_demo(data_dir: Path | None = None) -> int:
    try:
        config, server = resolve_config(data_dir=data_dir)
    except (EmbeddedServerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if server is not None:
        _line(f"Embedded server: {server.endpoint} (data in {server.data_dir})")
    try:
        return asyncio.run(demo(config))
    except BackendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
