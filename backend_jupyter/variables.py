"""Moving Python values between the local namespace and a remote session, in safe formats.

Formats: ``json`` (JSON-able values), ``bytes``, ``npy`` (NumPy arrays, ``allow_pickle=False``),
``pandas`` (DataFrames as JSON "table"), and ``pickle`` only when the user asks for it explicitly
(unpickling remote data can run arbitrary code).  Values travel as files in the session's work dir
under ``.backend_jupyter/``; the code snippets here load or save them on the remote side.
"""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

REMOTE_DIR = ".backend_jupyter/vars"
MARKER = "\x1eBACKEND_JUPYTER_VARS\x1e"


class VariableError(ValueError):
    """A value that cannot be moved (and why)."""


def encode(name: str, value: Any, *, allow_pickle: bool = False) -> tuple[str, bytes]:
    """``(format, data)`` for a local value."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes", bytes(value)
    module = type(value).__module__.split(".")[0]
    if module == "numpy" and type(value).__name__ == "ndarray":
        import numpy as np

        buf = io.BytesIO()
        try:
            np.save(buf, value, allow_pickle=False)
        except ValueError:
            if not allow_pickle:
                raise VariableError(f"{name}: a NumPy array of Python objects needs --allow-pickle") from None
            return "pickle", pickle.dumps(value)
        return "npy", buf.getvalue()
    if module == "pandas" and type(value).__name__ == "DataFrame":
        try:
            return "pandas", value.to_json(orient="table", date_format="iso").encode()
        except Exception:
            return "pandas", value.to_json(orient="split", date_format="iso").encode()
    try:
        return "json", json.dumps(value, allow_nan=True).encode()
    except (TypeError, ValueError):
        pass
    if allow_pickle:
        return "pickle", pickle.dumps(value)
    raise VariableError(f"{name}: a {type(value).__name__} cannot be moved safely "
                        "(JSON-able values, bytes, NumPy arrays and pandas DataFrames can; "
                        "use --allow-pickle to send it pickled)")


def decode(name: str, fmt: str, data: bytes, *, allow_pickle: bool = False) -> Any:
    """A local value from what the remote session saved."""
    if fmt == "json":
        return json.loads(data)
    if fmt == "bytes":
        return data
    if fmt == "npy":
        try:
            import numpy as np
        except ImportError:
            raise VariableError(f"{name}: a NumPy array arrived, but NumPy is not installed here") from None
        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "pandas":
        try:
            import pandas as pd
        except ImportError:
            raise VariableError(f"{name}: a DataFrame arrived, but pandas is not installed here") from None
        text = data.decode()
        orient = "table" if '"schema"' in text[:200] else "split"
        return pd.read_json(io.StringIO(text), orient=orient)
    if fmt == "pickle":
        if not allow_pickle:
            raise VariableError(f"{name}: the remote value is only available pickled; "
                                "use --allow-pickle to accept it (this unpickles remote data)")
        return pickle.loads(data)  # noqa: S301 - explicitly allowed by the user
    raise VariableError(f"{name}: unknown format {fmt!r}")


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def load_snippet(variables: dict[str, str]) -> str:
    """Remote code that loads uploaded values (``{name: format}``) into the namespace."""
    return _LOAD.format(spec=json.dumps(variables), dir=json.dumps(REMOTE_DIR + "/in"))


def save_snippet(names: list[str], allow_pickle: bool) -> str:
    """Remote code that saves ``names`` and prints ``MARKER + {name: [format, size] | {"error": msg}}``."""
    return _SAVE.format(names=json.dumps(names), dir=json.dumps(REMOTE_DIR + "/out"),
                        allow_pickle=allow_pickle, marker=json.dumps(MARKER))


def parse_saved(stdout: str) -> dict[str, Any]:
    if MARKER not in stdout:
        raise VariableError("the remote session did not report the saved values")
    return json.loads(stdout.split(MARKER, 1)[1].strip().splitlines()[0])


_LOAD = """\
def __bj_load(spec={spec}, base={dir}):
    import io, json, os, pickle
    ns = globals()
    for name, fmt in spec.items():
        path = os.path.join(base, name + "." + fmt)
        with open(path, "rb") as f:
            data = f.read()
        os.remove(path)
        if fmt == "json":
            ns[name] = json.loads(data)
        elif fmt == "bytes":
            ns[name] = data
        elif fmt == "npy":
            import numpy
            ns[name] = numpy.load(io.BytesIO(data), allow_pickle=False)
        elif fmt == "pandas":
            import pandas
            text = data.decode()
            ns[name] = pandas.read_json(io.StringIO(text), orient="table" if '"schema"' in text[:200] else "split")
        elif fmt == "pickle":
            ns[name] = pickle.loads(data)
__bj_load()
del __bj_load
"""

_SAVE = """\
def __bj_save(names={names}, base={dir}, allow_pickle={allow_pickle}, marker={marker}):
    import io, json, os, pickle
    os.makedirs(base, exist_ok=True)
    ns = globals()
    report = {{}}
    for name in names:
        if name not in ns:
            report[name] = {{"error": "not defined in the remote session"}}
            continue
        value = ns[name]
        kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
        fmt = data = None
        try:
            if isinstance(value, (bytes, bytearray)):
                fmt, data = "bytes", bytes(value)
            elif kind == "numpy.ndarray":
                import numpy
                buf = io.BytesIO()
                numpy.save(buf, value, allow_pickle=False)
                fmt, data = "npy", buf.getvalue()
            elif kind == "pandas.DataFrame":
                try:
                    fmt, data = "pandas", value.to_json(orient="table", date_format="iso").encode()
                except Exception:
                    fmt, data = "pandas", value.to_json(orient="split", date_format="iso").encode()
            else:
                fmt, data = "json", json.dumps(value, allow_nan=True).encode()
        except (TypeError, ValueError):
            if allow_pickle:
                fmt, data = "pickle", pickle.dumps(value)
            else:
                report[name] = {{"error": "a " + type(value).__name__ + " cannot be moved safely (use --allow-pickle)"}}
                continue
        with open(os.path.join(base, name + "." + fmt), "wb") as f:
            f.write(data)
        report[name] = [fmt, len(data)]
    print(marker + json.dumps(report))
__bj_save()
del __bj_save
"""
