"""The %backend_* command table: parsing, usage errors, the line form's options, help."""

from __future__ import annotations

import pytest

from backend_jupyter.commands import (
    TABLE,
    CellPlan,
    CommandError,
    command_at,
    complete,
    help_text,
    pairs,
    parse,
    plan_cell,
    split_options,
)

# -- parse -------------------------------------------------------------------------------------------

def test_session_new_with_every_option():
    ns = parse("backend_session", "new NAME --image x -m f:a -m g -e K=V -e L='a b' -r cpu=2 --keep")
    assert vars(ns) == {"subcommand": "new", "name": "NAME", "image": "x", "mount": ["f:a", "g"],
                        "env": ["K=V", "L=a b"], "resource": ["cpu=2"], "keep": True}
    defaults = parse("backend_session", "new other")
    assert (defaults.image, defaults.mount, defaults.env, defaults.resource, defaults.keep) == (None, None, None, None, False)


@pytest.mark.parametrize("line, expected", [
    ("list", {"subcommand": "list"}),
    ("info", {"subcommand": "info", "name": None}),
    ("info s1", {"subcommand": "info", "name": "s1"}),
    ("logs s1", {"subcommand": "logs", "name": "s1"}),
    ("restart", {"subcommand": "restart", "name": None}),
    ("attach s1", {"subcommand": "attach", "name": "s1"}),
    ("use s1", {"subcommand": "use", "name": "s1"}),
    ("destroy s1", {"subcommand": "destroy", "name": "s1"}),
])
def test_session_subcommands(line, expected):
    assert vars(parse("backend_session", line)) == expected


@pytest.mark.parametrize("line, expected", [
    ("list", {"subcommand": "list"}),
    ("create vf", {"subcommand": "create", "folder": "vf"}),
    ("delete vf", {"subcommand": "delete", "folder": "vf"}),
    ("ls vf", {"subcommand": "ls", "folder": "vf", "path": "."}),
    ("ls vf sub/dir", {"subcommand": "ls", "folder": "vf", "path": "sub/dir"}),
    ("mkdir vf a/b", {"subcommand": "mkdir", "folder": "vf", "path": "a/b"}),
    ("upload vf x.csv 'my file.txt'", {"subcommand": "upload", "folder": "vf", "files": ["x.csv", "my file.txt"], "dest": None}),
    ("download NAME a b --dest d", {"subcommand": "download", "folder": "NAME", "files": ["a", "b"], "dest": "d"}),
])
def test_vfolder_subcommands(line, expected):
    assert vars(parse("backend_vfolder", line)) == expected


def test_run_options():
    ns = parse("backend_run", "-s s -i a -i b --batch")
    assert (ns.name, ns.inputs, ns.batch, ns.outputs, ns.code) == ("s", ["a", "b"], True, None, [])
    ns = parse("backend_run", ["--session", "s2", "-o", "r", "--allow-pickle", "-u", "src", "-u", "data",
                               "--clean", "make clean", "--build", "*", "--exec", "./run", "--image", "python:3.11"])
    assert (ns.name, ns.outputs, ns.allow_pickle, ns.upload) == ("s2", ["r"], True, ["src", "data"])
    assert (ns.clean, ns.build, ns.exec_, ns.image, ns.batch) == ("make clean", "*", "./run", "python:3.11", False)
    assert parse("backend_run", "print(1)").code == ["print(1)"]


def test_other_commands():
    assert vars(parse("backend_upload", "a b -s s")) == {"files": ["a", "b"], "name": "s", "dest": None}
    assert vars(parse("backend_upload", "a --dest in")) == {"files": ["a"], "name": None, "dest": "in"}
    assert vars(parse("backend_download", "a --dest out")) == {"files": ["a"], "name": None, "dest": "out"}
    assert vars(parse("backend_config", "")) == {}
    assert vars(parse("backend_help", "backend_run")) == {"command": "backend_run"}


@pytest.mark.parametrize("command, line, message, usage", [
    ("backend_session", "", "the following arguments are required: SUBCOMMAND", "usage: %backend_session SUBCOMMAND"),
    ("backend_session", "launch x", "invalid choice: 'launch'", "usage: %backend_session SUBCOMMAND"),
    ("backend_session", "list --bogus", "unrecognized arguments: --bogus", "usage: %backend_session"),
    ("backend_session", "new --image", "argument --image: expected one argument", "usage: %backend_session new"),
    ("backend_session", "new s --keep=yes", "--keep", "usage: %backend_session"),
    ("backend_vfolder", "", "the following arguments are required: SUBCOMMAND", "usage: %backend_vfolder"),
    ("backend_vfolder", "ls", "the following arguments are required: NAME", "usage: %backend_vfolder ls NAME [PATH]"),
    ("backend_vfolder", "download vf", "the following arguments are required: FILE", "usage: %backend_vfolder download"),
    ("backend_run", "--nope", "unrecognized arguments: --nope", "usage: %%backend_run"),
    ("backend_run", "--ses s", "unrecognized arguments: --ses", "usage: %%backend_run"),  # no abbreviations
    ("backend_upload", "", "the following arguments are required: PATH",
     "usage: %backend_upload [-s NAME] [--dest DIR] PATH"),
    ("backend_config", "extra", "unrecognized arguments: extra", "usage: %backend_config"),
])
def test_usage_errors_carry_the_usage(command, line, message, usage):
    with pytest.raises(CommandError) as err:
        parse(command, line)
    text = str(err.value)
    assert message in text.splitlines()[0]
    assert usage in text


def test_unbalanced_quotes_are_a_command_error():
    with pytest.raises(CommandError, match="Cannot parse the arguments"):
        parse("backend_run", "--exec 'oops")


def test_help_option_does_not_exit():
    with pytest.raises(CommandError):
        parse("backend_run", "--help")


# -- split_options ------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, options, code", [
    ("--image x -m f print('hi there')", "--image x -m f ", "print('hi there')"),
    ("--image 'a b' -i v x = 1 + 2", "--image 'a b' -i v ", "x = 1 + 2"),
    ('--exec "make run" -s s  rest  of  line', '--exec "make run" -s s  ', "rest  of  line"),
    ("--keep x = 1", "--keep ", "x = 1"),  # a flag takes no value
    ("--batch --allow-pickle", "--batch --allow-pickle", ""),
    ("print(-1)", "", "print(-1)"),
    ("", "", ""),
])
def test_split_options_of_the_line_form(line, options, code):
    assert split_options(line, "backend_run") == (options, code)
    assert options + code == line  # nothing lost or changed


def test_split_options_result_parses():
    options, code = split_options("-s work -i df --image 'py 3' df.describe()", "backend_run")
    ns = parse("backend_run", options)
    assert (ns.name, ns.inputs, ns.image, ns.code) == ("work", ["df"], "py 3", [])
    assert code == "df.describe()"


# -- pairs ---------------------------------------------------------------------------------------------

def test_pairs():
    assert pairs(["A=1", "B=x=y", "C="], "-e") == {"A": "1", "B": "x=y", "C": ""}
    assert pairs(None, "-e") == {} and pairs([], "-e") == {}
    assert pairs(["A=1", "A=2"], "-e") == {"A": "2"}
    for bad in ("NOVALUE", "=v"):
        with pytest.raises(CommandError, match=f"^-r {bad!r}: use KEY=VALUE$"):
            pairs([bad], "-r")


# -- help ----------------------------------------------------------------------------------------------

def test_help_lists_every_command_and_subcommand_with_its_purpose():
    text = help_text()
    for name in TABLE:
        assert ("%%" if name == "backend_run" else "%") + name in text
    for sub in ("list", "info [NAME]", "logs [NAME]", "restart [NAME]", "new [--image IMAGE]", "attach NAME",
                "use NAME", "destroy NAME"):
        assert f"%backend_session {sub}" in text
    for sub in ("list", "create NAME", "delete NAME", "ls NAME [PATH]", "mkdir NAME PATH",
                "upload [--dest DIR] NAME FILE", "download [--dest DIR] NAME FILE"):
        assert f"%backend_vfolder {sub}" in text
    assert "Manage vfolders (virtual folders of Backend.AI storage)." in text
    assert text.rstrip().endswith("%backend_help COMMAND shows one command's options.")
    # commands in table order
    positions = [text.index(("%%" if n == "backend_run" else "%") + n + " ") for n in TABLE if n not in ("backend_config", "backend_jobs")]
    assert positions == sorted(positions)


def test_help_of_one_command_gives_its_options():
    run = help_text("backend_run")
    assert run.startswith("usage: %%backend_run")
    for option in ("-s NAME, --session NAME", "--image IMAGE", "-i VAR, --input VAR", "--batch", "--exec CMD"):
        assert option in run
    assert "batch mode: upload, build, exec" in run
    session = help_text("%backend_session")
    assert session.startswith("usage: %backend_session SUBCOMMAND")
    flat = " ".join(session.split())
    assert "start a session with these settings and make it the current one" in flat
    assert "without NAME, replace the current session (its variables are lost)" in flat
    assert "destroy a session" in session


def test_help_of_an_unknown_command():
    with pytest.raises(CommandError, match=r"No command 'backend_nope'; the commands: %backend_run, %backend_session"):
        help_text("backend_nope")


# -- a cell's commands (the kernel) -----------------------------------------------------------------

@pytest.mark.parametrize("code, plan", [
    ("print(1)", CellPlan(code="print(1)")),
    ("%timeit 1", CellPlan(code="%timeit 1")),  # IPython's own magics stay remote
    ("!nvidia-smi", CellPlan(code="!nvidia-smi")),
    ("%backend_upload a.csv\nprint(1)\n", CellPlan(commands=(("backend_upload", "a.csv"),), code="print(1)\n")),
    ("\n%backend_upload a\n\n%backend_session info\n%pip list\n",
     CellPlan(commands=(("backend_upload", "a"), ("backend_session", "info")), code="%pip list\n")),
    ("x = 1\n%backend_upload a", CellPlan(code="x = 1\n%backend_upload a")),  # only at the top
    ("%%backend_run -s other\nx = 1\n", CellPlan(cell_command=("backend_run", "-s other", "x = 1\n"))),
    ("%backend_help", CellPlan(commands=(("backend_help", ""),))),
])
def test_plan_cell(code, plan):
    assert plan_cell(code) == plan


@pytest.mark.parametrize("code, message", [
    ("%backend_nope", "No command '%backend_nope'"),
    ("%%backend_session info", "%%backend_session is not a cell command"),
    ("%%backend_nope\nx", "No command '%%backend_nope'"),
])
def test_plan_cell_refuses_unknown_commands(code, message):
    with pytest.raises(CommandError, match=message):
        plan_cell(code)


@pytest.mark.parametrize("code, expected", [
    ("%backend_se", (["%backend_session"], 0, 11)),
    ("%backend_", ([f"%{n}" for n in TABLE], 0, 9)),
    ("%%backend_", (["%%backend_run"], 0, 10)),
    ("%backend_session ", (["attach", "destroy", "info", "list", "logs", "new", "restart", "use"], 17, 17)),
    ("%backend_session re", (["restart"], 17, 19)),
    ("%backend_session new --im", (["--image"], 21, 25)),
    ("%backend_session new -", (["--env", "--image", "--keep", "--mount", "--resource", "-e", "-m", "-r"], 21, 22)),
    ("%backend_upload a.csv --d", (["--dest"], 22, 25)),
    ("%backend_upload a.c", ([], 19, 19)),  # local paths: not ours to guess
    ("x = 1\n%backend_vfolder l", (["list", "ls"], 23, 24)),
])
def test_complete(code, expected):
    assert complete(code, len(code)) == expected


def test_complete_leaves_other_code_to_the_session():
    assert complete("import o", 8) is None
    assert complete("%timeit x", 9) is None
    assert command_at("%backend_upload a\nx", 18) is None
    assert command_at("%backend_upload a\nx", 10) == ("%backend_u", "%backend_u", 0)
