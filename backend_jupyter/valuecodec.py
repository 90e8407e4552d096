"""Python values as files, in safe formats: the one implementation used here *and* in sessions.

This module imports nothing of the package and only the standard library at the top, because its
source is shipped: ``variables.py`` runs it in a session's IPython for ``-i``/``-o`` and
``jobs.py`` puts it at the head of a job's process.  Formats: ``json`` (JSON-able values), ``bytes``,
``npy`` (NumPy arrays, ``allow_pickle=False``), ``pandas`` (DataFrames as JSON "table"), and
``pickle`` only when the user asked for it (unpickling remote data can run arbitrary code).
A value is stored as ``<base>/<name>.<format>``; a *report* says, per name, ``[format, size]`` or
``{"error": why}``.
"""

import io
import json
import os
import pickle

SMALL_VALUE = 64 * 1024  # a job keeps, unasked, each JSON-able variable up to this size...
SMALL_TOTAL = 1024 * 1024  # ...and this much in all
NOT_KEPT = {"In", "Out", "exit", "quit", "get_ipython"}


def encode(value, allow_pickle=False):
    """``(format, data)`` for a value; ValueError (with the reason) when it cannot be moved safely."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes", bytes(value)
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    if kind == "numpy.ndarray":
        import numpy

        buf = io.BytesIO()
        try:
            numpy.save(buf, value, allow_pickle=False)
            return "npy", buf.getvalue()
        except ValueError:
            if not allow_pickle:
                raise ValueError("a NumPy array of Python objects needs --allow-pickle") from None
            return "pickle", pickle.dumps(value)
    if kind == "pandas.DataFrame":
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
    raise ValueError(f"a {type(value).__name__} cannot be moved safely (JSON-able values, bytes, NumPy arrays and "
                     "pandas DataFrames can; use --allow-pickle to send it pickled)")


def decode(fmt, data):
    """The value ``data`` of format ``fmt`` holds (pickle included: callers check it was allowed)."""
    if fmt == "json":
        return json.loads(data)
    if fmt == "bytes":
        return bytes(data)
    if fmt == "npy":
        import numpy

        return numpy.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "pandas":
        import pandas

        text = data.decode()
        return pandas.read_json(io.StringIO(text), orient="table" if '"schema"' in text[:200] else "split")
    if fmt == "pickle":
        return pickle.loads(data)  # noqa: S301 - only formats the caller allowed reach here
    raise ValueError(f"unknown format {fmt!r}")


def store(base, name, value, allow_pickle=False):
    """Write ``value`` as ``<base>/<name>.<format>``; its report entry."""
    try:
        fmt, data = encode(value, allow_pickle)
    except ValueError as e:
        return {"error": str(e)}
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, name + "." + fmt), "wb") as f:
        f.write(data)
    return [fmt, len(data)]


def save(ns, names, base, allow_pickle=False):
    """Store each of ``names`` from the namespace ``ns``: the report."""
    report = {}
    for name in names:
        if name not in ns:
            report[name] = {"error": "not defined in the remote session"}
        else:
            report[name] = store(base, name, ns[name], allow_pickle)
    return report


def keep_small(ns, base, skip=(), limit=SMALL_VALUE, total=SMALL_TOTAL):
    """Store the namespace's small JSON-able variables (public names, not modules, functions or
    classes, not in ``skip``), each up to ``limit`` bytes and ``total`` in all: the report."""
    report = {}
    for name, value in list(ns.items()):
        if name.startswith("_") or name in NOT_KEPT or name in skip or callable(value) or type(value).__name__ == "module":
            continue
        try:
            data = json.dumps(value, allow_nan=True).encode()
        except (TypeError, ValueError):
            continue
        if len(data) > limit or len(data) > total:
            continue
        total -= len(data)
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, name + ".json"), "wb") as f:
            f.write(data)
        report[name] = ["json", len(data)]
    return report


def load(ns, spec, base, remove=True):
    """Set ``ns[name]`` for each ``{name: format}`` of ``spec`` from ``<base>/<name>.<format>``."""
    for name, fmt in spec.items():
        path = os.path.join(base, name + "." + fmt)
        with open(path, "rb") as f:
            data = f.read()
        if remove:
            os.remove(path)
        ns[name] = decode(fmt, data)


def read(path):
    """The value a file written by :func:`store` holds."""
    with open(path, "rb") as f:
        return decode(path.rsplit(".", 1)[1], f.read())


def land(ns, order, base):
    """Carry out an order of ``%backend_job wait -o``: ``{"vars": {name: file}}`` sets each
    variable; ``{"table": into, "rows": [{"columns": {...}, "values": {name: file}}]}`` sets
    ``ns[into]`` to the table of the rows (files relative to ``base``)."""
    for name, rel in order.get("vars", {}).items():
        ns[name] = read(os.path.join(base, rel))
    if "table" in order:
        rows = []
        for row in order["rows"]:
            cells = dict(row["columns"])
            for name, rel in row["values"].items():
                cells[name] = read(os.path.join(base, rel))
            rows.append(cells)
        ns[order["table"]] = table(rows)


def table(rows):
    """A sweep's results: a pandas DataFrame, one row per job, or the list of dicts without pandas."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


def source():
    """This module's source, to run in a session."""
    with open(__file__, encoding="utf-8") as f:
        return f.read()
