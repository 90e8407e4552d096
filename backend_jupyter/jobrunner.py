"""A background job's own process, in its session (see jobs.py).

This file is shipped as source, with valuecodec.py beside it, into the job's directory ``DIR`` in
the session, and run there as ``__main__`` in a process forked from the session's kernel (so
IPython is imported already: a job starts in milliseconds, not the half second of a new
interpreter), ``DIR`` first on ``sys.path``; it imports nothing of the package.  It
runs ``DIR/cell.py`` in a fresh IPython shell (plain ``exec`` where the image has no IPython),
with the job's inputs (``-i``) and sweep values set first (``DIR/spec.json``), and appends every
output record to ``DIR/output.jsonl``: ``{"k": "stdout"|"stderr", "text"}``, ``{"k": "display",
"data", "metadata", "display_id", "update"}``, ``{"k": "clear", "wait"}``, ``{"k": "error", "ename",
"evalue", "traceback"}`` and, last, ``{"k": "end", "status": "finished"|"failed"|"cancelled",
"vars": report}``, where the report says which variables were kept in ``DIR/vars`` (valuecodec).

A cancel (SIGTERM) is a KeyboardInterrupt from the first line on, and the ``ready`` file says the
handler is in place: the cancel waits for it, so a job cancelled while it starts ends ``cancelled``.
"""

import signal


def _cancel(signum, frame):
    raise KeyboardInterrupt("cancelled")


signal.signal(signal.SIGTERM, _cancel)

import json  # noqa: E402 - after the cancel handler
import os  # noqa: E402
import sys  # noqa: E402

from valuecodec import keep_small, load, save  # noqa: E402 - beside this file, sys.path[0]

del sys.path[0]  # the job's own imports do not see the job's directory
DIR = os.path.dirname(os.path.abspath(__file__))
LINE_LIMIT = 65536  # a stream's text is written at each newline, or once this much waits


class Journal:
    """The job's output file, a JSON record per line, unbuffered."""

    def __init__(self, path):
        self.file = open(path, "ab", buffering=0)  # noqa: SIM115 - open until the process ends

    def write(self, record):
        self.file.write((json.dumps(record) + "\n").encode("ascii"))


class Stream:
    """sys.stdout or sys.stderr: text records, line by line as a terminal shows it."""

    encoding = "utf-8"

    def __init__(self, journal, name):
        self.journal, self.name, self.parts = journal, name, []

    def write(self, text):
        self.parts.append(text)
        if "\n" in text or sum(map(len, self.parts)) > LINE_LIMIT:
            self.flush()
        return len(text)

    def flush(self):
        if self.parts:
            self.journal.write({"k": self.name, "text": "".join(self.parts)})
            self.parts = []

    def isatty(self):
        return False

    def fileno(self):
        raise OSError("no file descriptor")


def flush_streams():
    sys.stdout.flush()
    sys.stderr.flush()


def run_plain(journal, code, ns):
    """The cell by ``exec`` (no IPython in this image): its status."""
    import traceback

    try:
        exec(compile(code, "<job>", "exec"), ns)
        return "finished"
    except KeyboardInterrupt:
        return "cancelled"
    except BaseException as e:
        flush_streams()
        journal.write({"k": "error", "ename": type(e).__name__, "evalue": str(e),
                       "traceback": traceback.format_exc().splitlines()})
        return "failed"


def ipython_shell(journal):
    """A fresh IPython shell whose displays and tracebacks become records; None without IPython."""
    try:
        from IPython.core.displaypub import DisplayPublisher
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
    except ImportError:
        return None

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
            flush_streams()
            journal.write({"k": "display", "data": data, "metadata": metadata or {},
                           "display_id": (transient or {}).get("display_id"), "update": bool(update)})

        def clear_output(self, wait=False):
            flush_streams()
            journal.write({"k": "clear", "wait": bool(wait)})

    config = Config()
    config.HistoryManager.enabled = False  # no history database in the session's profile
    InteractiveShell.clear_instance()  # forked from the session's kernel: a shell of its own
    shell = InteractiveShell.instance(config=config, display_pub_class=Publisher)
    shell.job_errors = []

    def show(etype=None, evalue=None, tb=None, tb_offset=None, exception_only=False, running_compiled_code=False):
        etype, evalue, tb = sys.exc_info() if etype is None else (etype, evalue, tb)
        stb = shell.InteractiveTB.structured_traceback(etype, evalue, tb, tb_offset=tb_offset)
        shell.job_errors.append({"k": "error", "ename": etype.__name__, "evalue": str(evalue), "traceback": stb})

    shell.showtraceback = show
    shell.showsyntaxerror = lambda *a, **k: show()
    return shell


def run_ipython(journal, shell, code):
    """The cell in ``shell``: its status."""
    status = "finished" if shell.run_cell(code, store_history=False).success else "failed"
    flush_streams()
    for error in shell.job_errors:
        journal.write(error)
        if error["ename"] == "KeyboardInterrupt":
            status = "cancelled"
    return status


def main():
    open(os.path.join(DIR, "ready"), "w").close()
    journal = Journal(os.path.join(DIR, "output.jsonl"))
    sys.stdout, sys.stderr = Stream(journal, "stdout"), Stream(journal, "stderr")
    status, kept = "failed", {}
    try:
        with open(os.path.join(DIR, "cell.py")) as f:
            code = f.read()
        with open(os.path.join(DIR, "spec.json")) as f:
            spec = json.load(f)
        shell = ipython_shell(journal)
        ns = shell.user_ns if shell is not None else {"__name__": "__main__"}
        load(ns, spec["inputs"], os.path.join(DIR, "in"))
        ns.update(spec["params"])
        status = run_plain(journal, code, ns) if shell is None else run_ipython(journal, shell, code)
        # What %backend_job wait -o can bring back: the variables asked for, and the small others.
        base = os.path.join(DIR, "vars")
        kept = save(ns, spec["outputs"], base, spec["allow_pickle"])
        kept.update(keep_small(ns, base, skip=set(kept) | set(spec["params"]) | set(spec["inputs"])))
    except KeyboardInterrupt:  # cancelled before or after the cell itself
        status = "cancelled"
    except BaseException as e:  # the job's set-up failed: say why
        journal.write({"k": "error", "ename": type(e).__name__, "evalue": str(e), "traceback": []})
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the last word is written whole
        flush_streams()
        journal.write({"k": "end", "status": status, "vars": kept})


if __name__ == "__main__":
    main()

