"""The official backend.ai-client SDK, each generation in its own venv, against the embedded server.

The scenarios run once per generation (tests/sdk/scenarios.py, inside the SDK's venv); each test
below checks one aspect of that report, so a failure names what broke and for which SDK.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from tests.sdk.data import PNG_B64
from tests.sdk.venvs import GENERATIONS, HERE, venv_or_skip
from tests.signed_http import merged

pytestmark = pytest.mark.sdk
NEW = ("26.9.6", "23.9.10")
ALL = ("26.9.6", "23.9.10", "19.9.10")


@pytest.fixture(scope="module", params=ALL)
def report(request, server, tmp_path_factory):
    gen = GENERATIONS[request.param]
    python = venv_or_skip(gen)
    work = tmp_path_factory.mktemp(f"sdk-{gen.version}")
    env = server.env()
    env["BJ_OTHER_SECRET_KEY"] = "x" * 40
    proc = subprocess.run(
        [str(python), str(HERE / "scenarios.py"), str(work)],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["_generation"] = gen.version
    assert "APIVersionWarning" not in proc.stderr, proc.stderr[-2000:]
    return data


def scenario(report, name) -> dict:
    result = report[name]
    assert result["ok"], f"{report['_generation']} {name}:\n{result.get('error')}"
    return result


def test_version_negotiation(report):
    hello = scenario(report, "hello")
    if report["_generation"] in NEW:
        assert hello["api_version"] == [7, "20230615"]


def test_get_or_create(report):
    result = scenario(report, "create")
    assert result["created"] is True
    assert result["again_created"] is False
    assert result["id"]


def test_execute_loop_outputs(report):
    result = scenario(report, "query_outputs")
    assert result["statuses"][-1] == "finished" and result["exit_codes"][-1] == 0
    console = merged(result["console"])
    assert console[0] == ["stdout", "hello stdout\n"]
    assert console[1] == ["stderr", "hello stderr\n"]
    assert console[2][0] == "media" and console[2][1][0] == "image/png"
    prefix, _, received = console[2][1][1].partition(",")
    assert prefix == "data:image/png;base64"
    image = base64.b64decode(received, validate=True)  # what the SDK got, decoded
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and image == base64.b64decode(PNG_B64)  # the PNG the cell showed
    assert console[3] == ["html", "<i>it</i>"]


def test_error_exit_code(report):
    result = scenario(report, "error_exit_code")
    assert result["statuses"][-1] == "finished" and result["exit_codes"][-1] == 1
    assert "ValueError" in "".join(d for k, d in result["console"] if k == "stderr")


def test_input_and_getpass(report):
    result = scenario(report, "input_and_getpass")
    waits = [o for s, o in zip(result["statuses"], result["options"], strict=True) if s == "waiting-input"]
    assert waits == [{"is_password": False}, {"is_password": True}]
    out = "".join(d for k, d in result["console"] if k == "stdout")
    assert out == "who? pass? ann password\n"


def test_batch_with_uploads(report):
    result = scenario(report, "batch_with_uploads")
    statuses = result["statuses"]
    assert statuses.index("clean-finished") < statuses.index("build-finished") < len(statuses) - 1
    assert statuses[-1] == "finished" and result["exit_codes"][-1] == 0
    assert "".join(d for k, d in result["console"] if k == "stdout") == "building\ntwice 42\n"


def test_interrupt(report):
    result = scenario(report, "interrupt")
    assert result["elapsed"] < 15
    assert "KeyboardInterrupt" in "".join(d for k, d in result["console"] if k == "stderr")
    assert "".join(d for k, d in result["after"]["console"] if k == "stdout") == "alive\n"


def test_restart(report):
    result = scenario(report, "restart")
    assert "".join(d for k, d in result["console"] if k == "stdout") == "False kept\n"


def test_download_and_list_files(report):
    result = scenario(report, "download_and_list_files")
    assert result["equal"] is True
    assert result["files"] == [["data.bin", 2048]]
    assert result["errors"] == ""


def test_complete(report):
    result = scenario(report, "complete")
    assert "conformance_variable" in result["result"]["result"]["completions"]


def test_info_and_logs(report):
    result = scenario(report, "info_and_logs")
    assert result["status"] == "RUNNING" and result["logs_type"] == "str"
    assert result["marker_in_logs"] is True  # what the kernel wrote to its log, read back through the SDK


def test_missing_session_is_typed_404(report):
    result = scenario(report, "missing_session_error")
    assert result["status"] == 404 and result["title"] == "No such session."


def test_vfolder_lifecycle_and_mount(report):
    result = scenario(report, "vfolder_lifecycle")
    assert result["listed"] and result["deleted"]
    assert result["files"] == ["blob.bin"]
    assert result["equal"] is True
    assert result["mounted_read"] == result["expected_hash"]


def test_stream_execute(report):
    result = scenario(report, "stream_execute")
    if report["_generation"] not in NEW:
        pytest.skip(result["skipped"])
    assert result["statuses"][-1] == "finished" and "waiting-input" in result["statuses"]
    assert "".join(d for k, d in result["console"] if k == "stdout") == "ws? got via-ws\n"


def test_destroy(report):
    assert scenario(report, "destroy")["after_status"] == 404


def test_bad_key_is_typed_401(report):
    result = scenario(report, "bad_key_error")
    assert result["status"] == 401
    assert result["type"].endswith("/auth-failed")
