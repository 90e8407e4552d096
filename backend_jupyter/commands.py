"""The ``%backend_*`` commands as one table: their subcommands, options and help, declared once.

Parsing knows nothing of IPython: :func:`parse` takes a command name and its argument line and
returns an ``argparse.Namespace`` (or raises :class:`CommandError` with the usage), so the magics
and, later, the kernel's own in-cell commands share the table.  ``%backend_help`` and every usage
message are generated from it.
"""

from __future__ import annotations

import argparse
import re
import shlex
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

SUMMARY = "Backend.AI commands (backend_jupyter)"
FOOTER = """\
Sessions these commands create are destroyed when this IPython or kernel exits, unless created with
--keep; attached sessions are never destroyed.  Every new session mounts BACKEND_VFOLDER_MOUNTS plus -m.
In the Backend.AI Python kernel, %backend_* lines at the top of a cell run in the kernel and act on the
kernel's own session; the rest of the cell then runs remotely."""


class CommandError(ValueError):
    """A usage error: what was wrong and the usage of the command."""


class _Parser(argparse.ArgumentParser):
    """An argparse parser that raises :class:`CommandError` instead of exiting."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise CommandError(f"{message}\n{self.format_usage().rstrip()}")

    def exit(self, status: int = 0, message: str | None = None):
        raise CommandError(message or self.format_usage().rstrip())


def session_options(parser: argparse.ArgumentParser) -> None:
    """The options of a new session."""
    parser.add_argument("--image", default=None, help="session image (default: python)")
    parser.add_argument("-m", "--mount", action="append", metavar="FOLDER[:ALIAS]", help="mount a vfolder (repeatable)")
    parser.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="environment variable (repeatable)")
    parser.add_argument("-r", "--resource", action="append", metavar="SLOT=VALUE", help="resource slot (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the session when IPython exits")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--session", dest="name", default=None, help="session name (default: the current session)")
    session_options(p)
    p.add_argument("-i", "--input", dest="inputs", action="append", metavar="VAR", help="send a local variable")
    p.add_argument("-o", "--output", dest="outputs", action="append", metavar="VAR", help="bring a remote variable back")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickle for values that have no safe format")
    p.add_argument("--batch", action="store_true", help="batch mode: upload, build, exec")
    p.add_argument("-u", "--upload", action="append", metavar="PATH", help="file or directory to upload (batch)")
    p.add_argument("--clean", default=None, metavar="CMD", help="batch clean command")
    p.add_argument("--build", default=None, metavar="CMD", help="batch build command ('*' = the image's default)")
    p.add_argument("--exec", dest="exec_", default=None, metavar="CMD", help="batch exec command")
    p.add_argument("--bg", action="store_true", help="run as a background job on a session of its own; returns at once")
    p.add_argument("--name", default=None, metavar="NAME", help="the job's name (--bg; default: job- and six random hex digits)")
    p.add_argument("--sweep", action="append", metavar="VAR=V1,V2,...",
                   help="one job per combination of values, set as variables (--bg; repeatable)")
    p.add_argument("--parallel", type=int, default=None, metavar="N", help="at most N jobs of a sweep at once")
    p.add_argument("code", nargs="*", help="code to run (line form)")


def _jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watch", action="store_true", help="a live panel of the running jobs, until they end")


def _job(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)
    sub.required = True
    output = sub.add_parser("output", help="a job's whole output, then live until it ends (interrupt: stop watching)")
    output.add_argument("name", metavar="NAME")
    output.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N records")
    wait = sub.add_parser("wait", help="wait for a job's (or a sweep's) end and bring its variables back; "
                                       "its error if it failed")
    wait.add_argument("name", metavar="NAME", help="a job, or a sweep (--name of a --sweep)")
    wait.add_argument("-o", "--output", dest="outputs", action="append", metavar="VAR",
                      help="a variable the job kept (one --bg -o named, or a small JSON-able one); for a sweep, "
                           "a column of its table")
    wait.add_argument("--into", default=None, metavar="VAR",
                      help="for a sweep: the variable that gets its table (default: NAME_results)")
    wait.add_argument("--allow-pickle", action="store_true", help="accept values the job kept pickled")
    sub.add_parser("cancel", help="stop a job (or every job of a sweep); its session goes").add_argument(
        "name", metavar="NAME", help="a job, or a sweep (--name of a --sweep)")
    sub.add_parser("clean", help="forget the jobs that have ended")


def _session(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)
    sub.required = True
    sub.add_parser("list", help="the sessions of this key (and those opened here)")
    for name, text in (("info", "a session's image, status, age, resources, mounts and live usage"), ("logs", "a session's kernel log"),
                       ("restart", "reset a session's interpreter (files stay); replaces it where it cannot")):
        sub.add_parser(name, help=text).add_argument("name", nargs="?", metavar="NAME")
    new = sub.add_parser("new", help="start a session with these settings and make it the current one; "
                                     "without NAME, replace the current session (its variables are lost)")
    new.add_argument("name", nargs="?", metavar="NAME")
    session_options(new)
    for name, text in (("attach", "use a running session (never destroyed from here)"),
                       ("use", "make a known session the current one"), ("destroy", "destroy a session")):
        sub.add_parser(name, help=text).add_argument("name", metavar="NAME")


def _vfolder(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)
    sub.required = True
    sub.add_parser("list", help="the vfolders of this key")
    for name, text in (("create", "create a vfolder"), ("delete", "delete a vfolder")):
        sub.add_parser(name, help=text).add_argument("folder", metavar="NAME")
    ls = sub.add_parser("ls", help="list a directory of a vfolder")
    ls.add_argument("folder", metavar="NAME")
    ls.add_argument("path", nargs="?", default=".", metavar="PATH")
    mkdir = sub.add_parser("mkdir", help="make a directory in a vfolder")
    mkdir.add_argument("folder", metavar="NAME")
    mkdir.add_argument("path", metavar="PATH")
    for name, text in (("upload", "copy local files into a vfolder"), ("download", "copy files out of a vfolder")):
        transfer = sub.add_parser(name, help=text)
        transfer.add_argument("folder", metavar="NAME")
        transfer.add_argument("files", nargs="+", metavar="FILE")
        transfer.add_argument("--dest", default=None, metavar="DIR", help="destination directory")


def _upload(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="PATH")
    p.add_argument("-s", "--session", dest="name", default=None, metavar="NAME", help="session (default: current)")
    p.add_argument("--dest", default=None, metavar="DIR", help="directory in the session's work directory")


def _download(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="PATH", help="paths in the session's work directory")
    p.add_argument("-s", "--session", dest="name", default=None, metavar="NAME", help="session (default: current)")
    p.add_argument("--dest", default=None, metavar="DIR", help="local directory under this one (default: .)")


def _help(p: argparse.ArgumentParser) -> None:
    p.add_argument("command", nargs="?", metavar="COMMAND", help="one command's help")


# name → (how to declare its arguments, what it does)
TABLE: dict[str, tuple[Callable[[argparse.ArgumentParser], None], str]] = {
    "backend_run": (_run, "Run code on a Backend.AI session (created on first use, reused after), streaming its "
                          "output; input() shows an input box, the stop button interrupts the remote run. "
                          "-i/-o move variables (JSON-able values, bytes, NumPy arrays, pandas DataFrames; pickle "
                          "only with --allow-pickle). --bg runs the cell as a background job on a session of its own "
                          "(-i: its inputs; -o: variables it keeps whatever their size, besides its small JSON-able "
                          "ones). --batch uploads files and runs clean/build/exec steps; the "
                          "cell body, if any, is the exec command."),
    "backend_session": (_session, "Manage compute sessions."),
    "backend_vfolder": (_vfolder, "Manage vfolders (virtual folders of Backend.AI storage)."),
    "backend_jobs": (_jobs, "Every background job (%%backend_run --bg), also those of earlier processes: name, "
                            "parameters, session, status, elapsed time, output size."),
    "backend_job": (_job, "One background job: its output, waiting for it, cancelling it; forgetting ended ones."),
    "backend_upload": (_upload, "Copy local files (directories recursively) into the session's work directory."),
    "backend_download": (_download, "Copy files from the session's work directory."),
    "backend_config": (lambda p: None, "The effective configuration and where each value came from."),
    "backend_help": (_help, "This help."),
}
CELL_COMMANDS = frozenset({"backend_run"})  # also a cell magic: the cell is its body


def parser(command: str) -> argparse.ArgumentParser:
    declare, description = TABLE[command]
    p = _Parser(prog=("%%" if command in CELL_COMMANDS else "%") + command, description=description)
    declare(p)
    return p


def split(line: str) -> list[str]:
    """The words of an argument line, split like a shell does."""
    try:
        return shlex.split(line)
    except ValueError as e:
        raise CommandError(f"Cannot parse the arguments: {e}") from None


def parse(command: str, line: str | list[str]) -> argparse.Namespace:
    """``line``'s arguments of ``command``, or :class:`CommandError` with its usage."""
    return parser(command).parse_args(split(line) if isinstance(line, str) else line)


def help_text(command: str | None = None) -> str:
    """``%backend_help``: every command's usage and purpose (``command``: its full help)."""
    if command:
        name = command.lstrip("%")
        if name not in TABLE:
            raise CommandError(f"No command {command!r}; the commands: {', '.join('%' + n for n in TABLE)}")
        return parser(name).format_help()
    parts = [SUMMARY, ""]
    for name, (_, description) in TABLE.items():
        p = parser(name)
        parts.append("  " + p.format_usage().removeprefix("usage: ").rstrip())
        sub = _subparsers(p)
        for subparser in sub.choices.values() if sub else ():
            parts.append(f"      {subparser.format_usage().removeprefix('usage: ').rstrip()}")
        parts.append(textwrap.fill(description, 100, initial_indent=" " * 6, subsequent_indent=" " * 6))
        parts.append("")
    parts.append(FOOTER)
    parts.append("%backend_help COMMAND shows one command's options.")
    return "\n".join(parts)


def pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"{flag} {item!r}: use KEY=VALUE")
        out[key] = value
    return out


_TOKEN = re.compile(r"""(?:'[^']*'|"[^"]*"|[^\s'"])+""")


def split_options(line: str, command: str) -> tuple[str, str]:
    """A line magic's options and its code: ``--image x -m f print('hi')`` → (``--image x -m f``,
    ``print('hi')``); the code is taken verbatim."""
    p = parser(command)
    takes_value = {opt for action in p._actions if action.nargs is None and action.option_strings
                   for opt in action.option_strings}
    expect_value = False
    for match in _TOKEN.finditer(line):
        token = match.group(0)
        if expect_value:
            expect_value = False
        elif token.startswith("-"):
            expect_value = token in takes_value
        else:
            return line[: match.start()], line[match.start():]
    return line, ""


# -- commands in a cell (the kernel) ----------------------------------------------------------------
PREFIX = "%backend_"
CELL_PREFIX = "%%backend_"


@dataclass(frozen=True)
class CellPlan:
    """A cell as the kernel runs it: its leading ``%backend_*`` lines (``(command, arguments)``),
    then either a ``%%backend_*`` cell command with its body, or the code left for the session."""

    commands: tuple[tuple[str, str], ...] = ()
    cell_command: tuple[str, str, str] | None = None  # (command, arguments, body)
    code: str = ""


def _command_name(word: str, prefix: str) -> str:
    name = word[len(prefix) - len("backend_"):]
    if name not in TABLE:
        raise CommandError(f"No command {word!r}; the commands: {', '.join('%' + n for n in TABLE)} "
                           "(%backend_help shows them)")
    return name


def plan_cell(code: str) -> CellPlan:
    """Split a cell into its commands and its code.  Only lines that start with ``%backend_`` at
    the top of the cell (blank lines between them allowed) are commands; every other line, IPython's
    own ``%`` magics and ``!`` escapes included, is code for the remote session."""
    if not code.lstrip().startswith("%"):
        return CellPlan(code=code)  # the common case, decided at once
    lines = code.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.strip()), 0)
    head = lines[first].strip() if lines else ""
    if head.startswith(CELL_PREFIX):
        word, _, arguments = head.partition(" ")
        name = _command_name(word, CELL_PREFIX)
        if name not in CELL_COMMANDS:
            raise CommandError(f"%%{name} is not a cell command; write it as %{name} on a line of its own")
        return CellPlan(cell_command=(name, arguments.strip(), "".join(lines[first + 1:])))
    found: list[tuple[str, str]] = []
    index = 0
    for index, line in enumerate(lines):
        text = line.strip()
        if not text and (found or index < first):
            continue
        if not text.startswith(PREFIX):
            break
        word, _, arguments = text.partition(" ")
        found.append((_command_name(word, PREFIX), arguments.strip()))
    else:
        index = len(lines)
    return CellPlan(commands=tuple(found), code="".join(lines[index:]) if found else code)


def command_at(code: str, cursor: int) -> tuple[str, str, int] | None:
    """The ``%backend_*`` line the cursor is on: ``(line before the cursor, its first word, line
    start)``, or None when the cursor is not on such a line."""
    start = code.rfind("\n", 0, cursor) + 1
    before = code[start:cursor]
    stripped = before.lstrip()
    if not (stripped.startswith(PREFIX) or stripped.startswith(CELL_PREFIX)):
        return None
    return before, stripped.split(" ", 1)[0], start


def complete(code: str, cursor: int) -> tuple[list[str], int, int] | None:
    """Tab on a ``%backend_*`` line: command names, subcommands, options.  ``(matches, start,
    end)`` as offsets in ``code``; None when the cursor is not on such a line."""
    found = command_at(code, cursor)
    if found is None:
        return None
    before, word, _ = found
    token = "" if before.endswith((" ", "\t")) else before.split()[-1]
    token_start = cursor - len(token)
    if " " not in before.lstrip():  # still typing the command itself
        percent = "%%" if token.startswith("%%") else "%"
        names = [percent + name for name in TABLE if (percent + name).startswith(token)
                 and (percent == "%" or name in CELL_COMMANDS)]
        return names, token_start, cursor
    name = word.lstrip("%")
    if name not in TABLE:
        return [], cursor, cursor
    p = parser(name)
    words = before.split()[1:]
    if token:
        words = words[:-1]
    sub = _subparsers(p)
    chosen = next((w for w in words if sub and w in sub.choices), None)
    if sub and chosen is None and not token.startswith("-"):
        return sorted(c for c in sub.choices if c.startswith(token)), token_start, cursor
    target = sub.choices[chosen] if chosen else p
    if not token.startswith("-"):
        return [], cursor, cursor
    options = sorted(o for a in target._actions for o in a.option_strings if o.startswith(token))
    long_first = sorted(options, key=lambda o: not o.startswith("--"))
    return long_first, token_start, cursor


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
