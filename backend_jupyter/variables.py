"""Moving Python values between the local namespace and a remote session, in safe formats.

Formats: ``json`` (JSON-able values), ``bytes``, ``npy`` (NumPy arrays, ``allow_pickle=False``),
``pandas`` (DataFrames as JSON "table"), and ``pickle`` only when the user asks for it explicitly
(unpickling remote data can run arbitrary code).  Values travel as files in the session's work dir
under ``.backend_jupyter/``; the code snippets here load or save them on the remote side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import valuecodec
from .client import ComputeSession
from .remote import run_snippet, snippet

REMOTE_DIR = ".backend_jupyter/vars"
MARKER = "\x1eBACKEND_JUPYTER_VARS\x1e"


class VariableError(ValueError):
    """A value that cannot be moved (and why)."""


def encode(name: str, value: Any, *, allow_pickle: bool = False) -> tuple[str, bytes]:
    """``(format, data)`` for a local value."""
    try:
        return valuecodec.encode(value, allow_pickle)
    except ValueError as e:
        raise VariableError(f"{name}: {e}") from None


NEEDS = {"npy": ("numpy", "a NumPy array"), "pandas": ("pandas", "a DataFrame")}


def decode(name: str, fmt: str, data: bytes, *, allow_pickle: bool = False) -> Any:
    """A local value from what the remote session saved."""
    if fmt == "pickle" and not allow_pickle:
        raise VariableError(f"{name}: the remote value is only available pickled; "
                            "use --allow-pickle to accept it (this unpickles remote data)")
    try:
        return valuecodec.decode(fmt, data)
    except ImportError:
        module, what = NEEDS.get(fmt, (fmt, "a value"))
        raise VariableError(f"{name}: {what} arrived, but {module} is not installed here") from None
    except ValueError as e:
        raise VariableError(f"{name}: {e}") from None


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def load_snippet(variables: dict[str, str]) -> str:
    """Remote code that loads uploaded values (``{name: format}``) into the namespace."""
    return _shipped(f"load(ns, {json.dumps(variables)}, {json.dumps(REMOTE_DIR + '/in')})")


def save_snippet(names: list[str], allow_pickle: bool) -> str:
    """Remote code that saves ``names`` and prints ``MARKER + {name: [format, size] | {"error": msg}}``."""
    return _shipped(f"print({MARKER!r} + json.dumps(save(ns, {json.dumps(names)}, "
                    f"{json.dumps(REMOTE_DIR + '/out')}, {allow_pickle!r})))")


def parse_saved(stdout: str) -> dict[str, Any]:
    if MARKER not in stdout:
        raise VariableError("the remote session did not report the saved values")
    return json.loads(stdout.split(MARKER, 1)[1].strip().splitlines()[0])


def _shipped(call: str) -> str:
    """Remote code running ``call`` with valuecodec's functions and ``ns``, the user's namespace;
    it leaves no name behind but the values."""
    return (f"def __bj_values():\n"
            f"    scope = {{}}\n"
            f"    exec({valuecodec.source()!r}, scope)\n"
            f"    scope['ns'] = globals()\n"
            f"    exec({call!r}, scope)\n"
            f"__bj_values()\n"
            f"del __bj_values\n")


# -- values of the kernel's own session (its user's variables are there) -----------------------------
_SAVE_BODY = """\
    import os
    scope = {}
    exec(params['codec'], scope)
    base = os.path.join(os.path.expanduser('~'), params['base'])
    print(marker + json.dumps(scope['save'](ip.user_ns, params['names'], base, params['allow_pickle'])))
"""

_LAND_BODY = """\
    import os, shutil
    scope = {}
    exec(params['codec'], scope)
    base = os.path.join(os.path.expanduser('~'), params['base'])
    try:
        scope['land'](ip.user_ns, params['order'], base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(marker + json.dumps('ok'))
"""


async def export_from_session(session: ComputeSession, names: list[str], allow_pickle: bool,
                              dest: Path) -> dict[str, str]:
    """Save the session's variables ``names`` (invisibly) and download them into ``dest``:
    ``{name: format}``; VariableError naming the first that cannot be moved."""
    base = f"{REMOTE_DIR}/out"
    report = await run_snippet(session, snippet(_SAVE_BODY, {"codec": valuecodec.source(), "names": names,
                                                             "base": base, "allow_pickle": allow_pickle}))
    if not isinstance(report, dict):
        raise VariableError(f"the session {session.name} did not report the values")
    formats = {}
    for name in names:
        entry = report.get(name)
        if not isinstance(entry, list):
            raise VariableError(f"{name}: {(entry or {}).get('error', 'not saved')}")
        formats[name] = entry[0]
    await session.download([f"{base}/{name}.{fmt}" for name, fmt in formats.items()], dest=dest)
    return formats


async def import_into_session(session: ComputeSession, order: dict, base: Path) -> None:
    """Upload the files of a valuecodec ``land`` order (relative to ``base``) and carry it out in
    the session's namespace, invisibly."""
    files = list(order.get("vars", {}).values()) + [f for row in order.get("rows", []) for f in row["values"].values()]
    there = f"{REMOTE_DIR}/landing"
    if files:
        await session.upload(files, basedir=base, dest=there)
    answer = await run_snippet(session, snippet(_LAND_BODY, {"codec": valuecodec.source(), "order": order,
                                                             "base": there}))
    if answer != "ok":
        raise VariableError(f"the values could not be set in the session {session.name}")
