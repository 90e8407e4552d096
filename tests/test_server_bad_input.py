"""Bad input gets a clear 4xx problem (never a 500 or a hang); nothing escapes its directory."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest


@pytest.fixture(scope="module")
def sess(server):
    api = server.client()
    name = f"badinput-{os.getpid() % 10000}"
    assert api.create(name).status == 201
    api.run(name, "import os\nos.makedirs('inside', exist_ok=True)\nopen('inside/ok.txt','w').write('ok')")
    yield name
    api.destroy(name)


def assert_problem(resp, status, slug=None):
    assert resp.status == status, (resp.status, resp.body[:500])
    assert resp.headers.get("server") == "BackendAI", resp.headers  # as the manager's error answers say
    problem = resp.problem
    assert problem["type"].startswith("https://api.backend.ai/probs/") and problem["title"]
    if slug:
        assert problem["type"].endswith("/" + slug), problem
    return problem


def test_every_answer_says_server_backendai(api, sess):
    """The manager names itself on every answer, errors included (26.9.6: ``Server: BackendAI`` on a
    404 and a 405 as on ``GET /``); so does a download the handler streams itself."""
    assert api.request("GET", "/", sign=False).headers.get("server") == "BackendAI"
    assert_problem(api.request("GET", "/no/such/route"), 404)
    assert_problem(api.request("DELETE", "/folders/_/hosts"), 405)
    resp = api.request("POST", f"/session/{sess}/download", params={"files": ["inside/ok.txt"]})
    assert resp.status == 200 and resp.headers["content-type"].startswith("multipart/mixed")
    assert resp.headers.get("server") == "BackendAI"


# -- authentication ------------------------------------------------------------------------------

def test_no_authorization(api):
    problem = assert_problem(api.request("GET", "/auth", sign=False, headers={"Date": datetime.now(timezone.utc).isoformat()}),
                             401, "auth-failed")
    assert problem["msg"] == "Unauthorized access"


def test_missing_date(api):
    assert_problem(api.request("GET", "/auth", headers={"Date": None}), 400, "invalid-auth-params")


def test_nothing_signed_is_unauthorized(api):
    # as a real 26.9.6 manager answers: no Authorization is a 401, before any date check
    problem = assert_problem(api.request("GET", "/auth", sign=False), 401, "auth-failed")
    assert problem["msg"] == "Unauthorized access"


@pytest.mark.parametrize("header", [
    "garbage", "BackendAI", "Bearer xyz", "BackendAI signMethod=HMAC-SHA256",
    "BackendAI signMethod=HMAC-SHA256, credential=nocolon", "BackendAI signMethod=HMAC-NOPE, credential=a:b",
])
def test_malformed_authorization(api, header):
    resp = api.request("GET", "/auth", headers={"Authorization": header})
    assert_problem(resp, 400, "invalid-auth-params")


def test_unknown_access_key(api):
    resp = api.request("GET", "/auth", headers={"Authorization": "BackendAI signMethod=HMAC-SHA256, credential=AKIANOBODY:abcd"})
    assert assert_problem(resp, 401, "auth-failed")["msg"] == "Access key not found"


def test_wrong_secret(api):
    resp = api.request("GET", "/auth", secret_key="W" * 40)
    assert assert_problem(resp, 401, "auth-failed")["msg"] == "HMAC signature mismatch"


def test_signature_for_another_path_or_method(api):
    assert api.request("GET", "/auth").status == 200  # signed for what it is: accepted
    assert_problem(api.request("GET", "/auth", sign_path="/folders"), 401, "auth-failed")
    resp = api.request("GET", "/auth?echo=a", sign_path="/auth?echo=b")
    assert_problem(resp, 401, "auth-failed")
    # signed as another method: a POST's signature does not let a DELETE (or a GET) through
    assert_problem(api.request("GET", "/auth", sign_method="POST"), 401, "auth-failed")
    assert_problem(api.request("DELETE", "/folders/nope", sign_method="GET"), 401, "auth-failed")


@pytest.mark.parametrize("minutes", [-20, 20])
def test_skewed_date(api, minutes):
    resp = api.request("GET", "/auth", date=datetime.now(timezone.utc) + timedelta(minutes=minutes))
    assert_problem(resp, 400, "invalid-auth-params")


def test_unsupported_version(api):
    resp = api.request("GET", "/auth", version="v99.20990101")
    assert_problem(resp, 400, "generic-bad-request")


def test_rfc1123_date_is_accepted(api):
    # Old SDKs sent RFC-1123 dates; the signature covers the raw header string.
    from email.utils import format_datetime

    from backend_jupyter import signing

    now = datetime.now(timezone.utc).replace(microsecond=0)
    raw = format_datetime(now, usegmt=True)
    sign_str = signing.string_to_sign("GET", "/auth", raw, api.netloc, "text/plain", api.version)
    sig = signing.signature(api.secret_key, sign_str, now, api.netloc)
    resp = api.request("GET", "/auth", sign=False, headers={
        "Date": raw, "X-BackendAI-Version": api.version,
        "Authorization": signing.authorization_header(api.access_key, sig),
    })
    assert resp.status == 200


# -- bodies and parameters -----------------------------------------------------------------------

def test_malformed_json(api, sess):
    resp = api.request("POST", f"/session/{sess}", body=b"{not json", content_type="application/json")
    assert_problem(resp, 400, "generic-bad-request")


def test_non_object_json(api, sess):
    resp = api.request("POST", f"/session/{sess}", json=[1, 2, 3])
    assert_problem(resp, 400, "invalid-api-params")


def test_deeply_nested_json(api, sess):
    body = b"[" * 100000 + b"]" * 100000
    resp = api.request("POST", f"/session/{sess}", body=body, content_type="application/json")
    assert resp.status == 400


@pytest.mark.parametrize("body, msg", [
    ({"mode": "frobnicate", "code": "1", "runId": None}, "mode has an invalid value."),
    ({"code": "1", "runId": None}, "mode is missing or empty!"),
    ({"mode": "continue", "code": "", "runId": None}, "continuation requires explicit run ID"),
    ({"mode": "input", "code": "x"}, "continuation requires explicit run ID"),
])
def test_execute_parameter_errors(api, sess, body, msg):
    problem = assert_problem(api.request("POST", f"/session/{sess}", json=body), 400, "invalid-api-params")
    assert problem["msg"] == msg


@pytest.mark.parametrize("body", [
    {"mode": "query", "code": 5, "runId": None},
    {"mode": "query", "code": "1", "runId": "x" * 10000},
    {"mode": "query", "code": "1", "runId": ["list"]},
    {"mode": "batch", "code": "", "runId": None, "options": "nope"},
    {"mode": "batch", "code": "", "runId": None, "options": {"exec": 42}},
    {"mode": "continue", "code": "", "runId": "never-started"},
])
def test_execute_wrong_types(api, sess, body):
    assert_problem(api.request("POST", f"/session/{sess}", json=body), 400, "invalid-api-params")


@pytest.mark.parametrize("body", [
    {"name": 5, "image": "python"},
    {"name": "ok-name", "image": ["python"]},
    {"name": "x", "image": "python"},
    {"name": "bad name!", "image": "python"},
    {"name": "ok-name", "image": "python", "config": "str"},
    {"name": "ok-name", "image": "python", "config": {"environ": {"A": 1}}},
    {"name": "ok-name", "image": "python", "config": {"mounts": "notalist"}},
    {"name": "ok-name", "image": "python", "config": {"mounts": [1]}},
])
def test_create_wrong_types(api, body):
    assert_problem(api.request("POST", "/session", json=body), 400, "invalid-api-params")


def test_mount_of_missing_folder_is_404(api):
    resp = api.create("mount-missing", config={"mounts": ["no-such-folder"]})
    problem = assert_problem(resp, 404, "vfolder-not-found")
    assert "no-such-folder" in problem["msg"]


def test_oversized_body(api, sess):
    body = json.dumps({"mode": "query", "code": "x" * (5 * 1024 * 1024), "runId": None}).encode()
    resp = api.request("POST", f"/session/{sess}", body=body, content_type="application/json")
    assert_problem(resp, 413)


def test_unknown_route_and_method(api):
    assert_problem(api.request("GET", "/no/such/route"), 404, "url-not-found")
    assert_problem(api.request("PUT", "/session"), 405, "method-not-allowed")


# -- paths ---------------------------------------------------------------------------------------

ESCAPES = ["../etc/passwd", "/etc/passwd", "inside/../../x", "..", "/home/work/../../etc", "a\x00b"]


@pytest.mark.parametrize("path", ESCAPES)
def test_session_list_files_refuses_escapes(api, sess, path):
    assert_problem(api.request("GET", f"/session/{sess}/files", json={"path": path}), 400, "invalid-api-params")


@pytest.mark.parametrize("path", ESCAPES)
def test_session_download_refuses_escapes(api, sess, path):
    assert_problem(api.request("GET", f"/session/{sess}/download", json={"files": [path]}), 400, "invalid-api-params")


def test_symlink_pointing_outside_is_refused(api, sess):
    api.run(sess, "import os\nos.path.islink('evil') or os.symlink('/etc', 'evil')")
    for path in ("evil", "evil/passwd"):
        assert_problem(api.request("GET", f"/session/{sess}/files", json={"path": path}), 400)
        assert_problem(api.request("GET", f"/session/{sess}/download", json={"files": [path]}), 400)


def test_absolute_home_work_path_is_allowed(api, sess):
    resp = api.request("GET", f"/session/{sess}/files", json={"path": "/home/work/inside"})
    assert resp.status == 200
    assert [e["filename"] for e in json.loads(resp.json()["files"])] == ["ok.txt"]


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """One file part; a name that is not valid Unicode (a lone surrogate) goes as the bytes it
    stands for (``surrogatepass``): invalid UTF-8, as a hostile client would send it."""
    boundary = "bNdRy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"src\"; filename=\"".encode()
            + name.encode("utf-8", "surrogatepass")
            + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/escape.txt", "..%2Fescape.txt", "evil/planted.txt"])
def test_upload_refuses_escapes(api, sess, server, name):
    api.run(sess, "import os\nos.path.islink('evil') or os.symlink('/etc', 'evil')")
    body, ctype = multipart(name, b"pwned")
    resp = api.request("POST", f"/session/{sess}/upload", body=body, content_type=ctype)
    if name.startswith("/"):
        # aiohttp's multipart parser already drops the leading "/": the file lands inside.
        assert resp.status == 204
        listing = api.request("GET", f"/session/{sess}/files", json={"path": "tmp"})
        assert [e["filename"] for e in json.loads(listing.json()["files"])] == ["escape.txt"]
    else:
        assert_problem(resp, 400, "invalid-api-params")
    assert not os.path.exists("/tmp/escape.txt") or open("/tmp/escape.txt", "rb").read() != b"pwned"
    assert not os.path.exists("/etc/planted.txt")
    assert not (server.data_dir / "sessions" / "escape.txt").exists()


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../../b", "a\x00b"])
def test_vfolder_routes_refuse_escapes(api, path):
    assert api.request("POST", "/folders", json={"name": "escape-vf"}).status in (201, 400)
    assert_problem(api.request("GET", "/folders/escape-vf/files", json={"path": path}), 400)
    assert_problem(api.request("POST", "/folders/escape-vf/mkdir", json={"path": path}), 400)
    assert_problem(api.request("POST", "/folders/escape-vf/request-upload", json={"path": path, "size": 1}), 400)
    assert_problem(api.request("POST", "/folders/escape-vf/request-download", json={"path": path}), 400)
    assert_problem(api.request("DELETE", "/folders/escape-vf/delete-files", json={"files": [path]}), 400)
