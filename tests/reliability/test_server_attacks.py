"""Hostile clients against the real server process: forged and replayed signatures, a second
keypair poking at the first one's sessions and folders, path tricks, oversized and odd-shaped
bodies, and a property-based fuzz of every JSON route.  Every answer must be a 4xx (never a
500, a hang or a dead server), nothing outside the server's data directory may change, and the
log must stay free of secrets.

Properties of the protocol that these tests document rather than "fix":

* From ``v4.20181215`` on, the signature hashes ``b''`` instead of the body (docs/protocol.md, "Signing"), so a
  captured signature can be replayed with another body for the same method, path, date and
  version within the 15-minute window.  The v2 era signed the body and refuses such replays.
* Transfer tokens from ``request-upload``/``request-download`` are bearer capabilities (the
  storage-proxy URLs are fetched unsigned): whoever holds one can use it, so they are scoped to
  one folder, one path and one direction, and die with their folder.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import secrets
import socket
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from backend_jupyter import signing
from tests.signed_http import NEWEST, SignedClient
from tests.test_server_bad_input import assert_problem, multipart
from tests.test_server_lifecycle import ws_headers

PID = os.getpid() % 10000
V2 = "v2.20170315"
V4 = "v4.20190615"
WRONG_SECRETS: list[str] = []  # every bad secret used here; none may reach the log


# -- helpers ---------------------------------------------------------------------------------------

def wrong_secret(base: str = "") -> str:
    secret = base or "wrong-" + secrets.token_urlsafe(24)
    WRONG_SECRETS.append(secret)
    return secret


def client_for(server, access_key: str, secret_key: str, **kw) -> SignedClient:
    c = server.client(timeout=30, **kw)
    c.access_key, c.secret_key = access_key, secret_key
    return c


def now() -> datetime:
    return datetime.now(timezone.utc)


def raw_http(api: SignedClient, data: bytes, timeout: float = 15.0) -> tuple[int, bytes]:
    """Send ``data`` as-is (any bytes in any header) and read one response."""
    host, port = api.netloc.rsplit(":", 1)
    buf = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length: *(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
    assert buf.startswith(b"HTTP/1."), buf[:200]
    return int(buf.split(b" ", 2)[1]), buf.partition(b"\r\n\r\n")[2]


def raw_get_auth(api: SignedClient, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """``GET /auth`` with ``headers`` (raw bytes) replacing the defaults of the same name."""
    given = {k.lower() for k, _ in headers}
    defaults = [(b"Host", api.netloc.encode()), (b"Content-Type", b"text/plain"), (b"Connection", b"close")]
    lines = [b"GET /auth HTTP/1.1"] + [k + b": " + v for k, v in defaults if k.lower() not in given]
    lines += [k + b": " + v for k, v in headers]
    return raw_http(api, b"\r\n".join(lines) + b"\r\n\r\n")


def signed_headers(api: SignedClient, method: str, path: str, content_type: str, body: bytes = b"",
                   version: str | None = None) -> dict[str, str]:
    return signing.sign_request(
        method=method, rel_url=path, date=now(), host=api.netloc, content_type=content_type,
        api_version=version or api.version, access_key=api.access_key, secret_key=api.secret_key,
        body=body,
    )


def unsigned(api: SignedClient, method: str, path_and_query: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, dict, bytes]:
    """A plain HTTP request (the storage-proxy URLs take no signature)."""
    host, port = api.netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request(method, path_and_query, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def alive(server) -> None:
    assert server.proc.poll() is None, "the server process died"


def problem_or_ok(resp) -> None:
    """Below 500; errors are problem+json bodies."""
    assert resp.status < 500, (resp.status, resp.body[:300])
    if resp.status >= 400 and resp.status != 413:
        assert resp.headers.get("content-type", "").startswith("application/problem+json"), resp


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def log_start(server) -> int:
    """Where this module's part of the (shared) server log begins."""
    return server.log_path.stat().st_size


@pytest.fixture(scope="module")
def alice(server) -> SignedClient:
    return server.client(timeout=30)


@pytest.fixture(scope="module")
def bob(server) -> SignedClient:
    ak, sk = server.new_keypair()
    return client_for(server, ak, sk)


@pytest.fixture(scope="module")
def a_folder(alice):
    """Alice's folder with hello.txt: ``{"name", "id"}``."""
    name = f"rel-a-{PID}"
    alice.request("DELETE", f"/folders/{name}")
    resp = alice.request("POST", "/folders", json={"name": name})
    assert resp.status == 201, resp.body
    body, ctype = multipart("hello.txt", b"hello from alice")
    assert alice.request("POST", f"/folders/{name}/upload", body=body, content_type=ctype).status == 201
    yield {"name": name, "id": resp.json()["id"]}
    alice.request("DELETE", f"/folders/{name}")


@pytest.fixture(scope="module")
def a_session(alice, a_folder):
    """Alice's session, with her folder mounted at ``mnt``."""
    name = f"rel-a-{PID}"
    resp = alice.create(name, config={"mounts": [f"{a_folder['name']}:mnt"]})
    assert resp.status == 201, resp.body
    yield name
    alice.destroy(name)


# == 1. authentication =============================================================================

def test_signature_of_one_era_is_refused_in_another(alice):
    body = {"echo": "era"}
    # the genuine article, in both eras
    assert alice.request("POST", "/auth", json=body, version=V2).json()["echo"] == "era"
    assert alice.request("POST", "/auth", json=body, version=NEWEST).json()["echo"] == "era"
    # body-hash (v2) signature sent under a v7 version header, and the reverse
    resp = alice.request("POST", "/auth", json=body, version=V2, headers={"X-BackendAI-Version": NEWEST})
    assert_problem(resp, 401, "auth-failed")
    resp = alice.request("POST", "/auth", json=body, version=NEWEST, headers={"X-BackendAI-Version": V2})
    assert_problem(resp, 401, "auth-failed")
    # v2 version string but the v4+ empty-body hash
    assert_problem(alice.request("POST", "/auth", json=body, version=V2, sign_body=b""), 401, "auth-failed")
    # v7 version string but hashing the real body (what a v2 client would have done)
    raw = json.dumps(body).encode()
    date = now()
    sign_str = signing.string_to_sign("POST", "/auth", date.isoformat(), alice.netloc, "application/json",
                                      NEWEST, raw)
    sig = signing.signature(alice.secret_key, sign_str, date, alice.netloc)
    resp = alice.request("POST", "/auth", body=raw, content_type="application/json", sign=False, headers={
        "Date": date.isoformat(), "X-BackendAI-Version": NEWEST,
        "Authorization": signing.authorization_header(alice.access_key, sig),
    })
    assert_problem(resp, 401, "auth-failed")
    # the version header's *name* is signed too: X-Sorna-Version with an x-backendai-version signature
    hdrs = signed_headers(alice, "GET", "/auth", "text/plain", version=V4)
    hdrs["X-Sorna-Version"] = hdrs.pop("X-BackendAI-Version")
    assert_problem(alice.request("GET", "/auth", sign=False, headers=hdrs), 401, "auth-failed")
    # query strings: only the SDK 1.x eras (<= v4.20181215) may leave them out of the signature
    assert_problem(alice.request("GET", "/auth", params={"echo": "q"}, sign_path="/auth"), 401, "auth-failed")
    resp = alice.request("GET", "/auth", params={"echo": "q"}, sign_path="/auth", version="v4.20181215")
    assert resp.status == 200


def test_v7_signature_replays_with_another_body_by_protocol_design(alice):
    """v4.20181215+ signs b'' instead of the body: a replay with another body is accepted (a
    property of the Backend.AI protocol, kept for SDK compatibility); the v2 era refuses it."""
    original, forged = json.dumps({"echo": "a"}).encode(), json.dumps({"echo": "b"}).encode()
    hdrs = signed_headers(alice, "POST", "/auth", "application/json", original, version=NEWEST)
    for body in (original, forged):
        resp = alice.request("POST", "/auth", body=body, content_type="application/json", sign=False, headers=hdrs)
        assert resp.status == 200 and resp.json()["echo"] == json.loads(body)["echo"]
    hdrs = signed_headers(alice, "POST", "/auth", "application/json", original, version=V2)
    resp = alice.request("POST", "/auth", body=original, content_type="application/json", sign=False, headers=hdrs)
    assert resp.status == 200
    resp = alice.request("POST", "/auth", body=forged, content_type="application/json", sign=False, headers=hdrs)
    assert_problem(resp, 401, "auth-failed")
    # the method and the path stay covered in every era
    for version in (NEWEST, V2):
        hdrs = signed_headers(alice, "POST", "/auth", "application/json", original, version=version)
        resp = alice.request("PATCH", "/auth", body=original, content_type="application/json", sign=False, headers=hdrs)
        assert_problem(resp, 401, "auth-failed")
        resp = alice.request("POST", "/auth/test", body=original, content_type="application/json", sign=False, headers=hdrs)
        assert_problem(resp, 401, "auth-failed")


def test_huge_authorization_header(alice):
    ak = alice.access_key
    # 64 KB: refused by the HTTP parser (line too long), not a 500 and not a hang
    resp = alice.request("GET", "/auth", headers={
        "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={ak}:" + "a" * 65536})
    assert resp.status == 400
    resp = alice.request("GET", "/auth", headers={"Authorization": "BackendAI " + "x=y, " * 13000})
    assert resp.status == 400
    # just under the parser's limit: a long bogus signature is simply a mismatch
    resp = alice.request("GET", "/auth", headers={
        "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={ak}:" + "a" * 8000})
    assert assert_problem(resp, 401, "auth-failed")["msg"] == "HMAC signature mismatch"
    resp = alice.request("GET", "/auth", headers={
        "Authorization": "BackendAI signMethod=HMAC-SHA256, " + "junk, " * 1300 + f"credential={ak}:00"})
    assert_problem(resp, 401, "auth-failed")


@pytest.mark.parametrize("credential, status", [
    ("AKIA\u00e9X:abc".encode(), 401),                     # UTF-8 access key
    (b"AKIA\xe9X:abc", 401),                                # Latin-1 byte
    (b"AKIA\xff\xfe:abc", 401),                             # not UTF-8 at all
    ("\u0410KIA-homoglyph:abc".encode(), 401),              # Cyrillic A
    (b"AK\x00IA:abc", 400),                                 # NUL: the HTTP parser refuses it
    (b"AKIAX\xef\xbc\x9aabc", 400),                         # fullwidth colon is no separator
    ("{ak}:" + "\u2713" * 64, 401),                         # real key, unicode signature
    ("{ak}:\u00e9", 401),
    (b"{ak}:\xff", 401),                                    # real key, non-UTF-8 signature (was a 500)
    (b"{ak}:\xed\xa0\x80", 401),                            # UTF-8-encoded lone surrogate
    (b"{ak}:ab\x00cd", 400),
])
def test_credential_with_unicode_or_nul(alice, credential, status):
    if isinstance(credential, str):
        credential = credential.replace("{ak}", alice.access_key).encode()
    credential = credential.replace(b"{ak}", alice.access_key.encode())
    got, body = raw_get_auth(alice, [
        (b"Date", now().isoformat().encode()),
        (b"X-BackendAI-Version", NEWEST.encode()),
        (b"Authorization", b"BackendAI signMethod=HMAC-SHA256, credential=" + credential),
    ])
    assert got == status, body[:300]


@pytest.mark.parametrize("header, value", [
    (b"Host", b"\xff\xfe"), (b"Host", "h\u00f6st".encode()), (b"Content-Type", b"text/\xff"),
    (b"X-BackendAI-Version", b"v7\xff"),
])
def test_signed_request_with_undecodable_header_bytes(alice, header, value):
    hdrs = signed_headers(alice, "GET", "/auth", "text/plain")
    extra = [(k.encode(), v.encode()) for k, v in hdrs.items() if k.lower() != header.decode().lower()]
    got, body = raw_get_auth(alice, extra + [(header, value)])
    assert got == (400 if header == b"X-BackendAI-Version" else 401), (got, body[:300])


@pytest.mark.parametrize("date", [
    b"garbage", b"", b"   ", b"-1", b"1e999", b"2024-13-45T99:99:99", b"0000-00-00",
    b"0001-01-01T00:00:00+14:00", b"0001-01-01T00:00:00-14:00", b"9999-12-31T23:59:59-23:59",
    b"9999-12-31T23:59:59+00:00", b"+10000-01-01T00:00:00", b"Fri, 31 Dec 99999 23:59:59 GMT",
    b"Fri, 31 Dec 9999 23:59:59 +9999", b"Mon, 01 Jan 0001 00:00:00 -2359", "\u2713".encode(),
    b"\xff\xfe", b"2024-03-15T09:12:33" + b"9" * 4000,
])
def test_garbage_and_absurd_dates(alice, date):
    got, body = raw_get_auth(alice, [
        (b"Date", date), (b"X-BackendAI-Version", NEWEST.encode()),
        (b"Authorization", f"BackendAI signMethod=HMAC-SHA256, credential={alice.access_key}:00".encode()),
    ])
    assert got == 400, body[:300]
    if body.startswith(b"{"):
        assert json.loads(body)["type"].endswith("/invalid-auth-params")


@pytest.mark.parametrize("year", [1, 1000, 2000, 3000, 9999])
def test_correctly_signed_but_absurd_year(alice, year):
    date = datetime(year, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    assert_problem(alice.request("GET", "/auth", date=date), 400, "invalid-auth-params")


def test_wrong_signatures_are_all_plain_401s(alice):
    # (that every comparison is constant-time: tests/unit/test_signing.py)
    hdrs = signed_headers(alice, "GET", "/auth", "text/plain")
    assert alice.request("GET", "/auth", sign=False, headers=hdrs).status == 200
    sig = hdrs["Authorization"].rsplit(":", 1)[1]
    one_off = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    answers = []
    for forged in (one_off, "f" + sig[1:] if sig[0] != "f" else "e" + sig[1:], "0" * 64, "zz", sig[:-1], sig + "0"):
        h = dict(hdrs, Authorization=signing.authorization_header(alice.access_key, forged))
        answers.append(assert_problem(alice.request("GET", "/auth", sign=False, headers=h), 401, "auth-failed"))
    assert all(a == answers[0] for a in answers)  # one answer whatever the distance
    for secret in (wrong_secret(), wrong_secret(alice.secret_key[:-1] + "#"), wrong_secret(alice.secret_key + "x")):
        assert_problem(alice.request("GET", "/auth", secret_key=secret), 401, "auth-failed")


# == 2. isolation between keypairs =================================================================

SESSION_ROUTES = [
    ("GET", "", None), ("POST", "", {"mode": "query", "code": "open('b-was-here','w')", "runId": None}),
    ("POST", "/complete", {"code": "imp", "options": {}}), ("GET", "/logs", None),
    ("GET", "/download", {"files": ["mnt/hello.txt"]}), ("GET", "/download_single", {"file": "mnt/hello.txt"}),
    ("GET", "/files", {"path": "."}), ("POST", "/interrupt", None), ("PATCH", "", None), ("DELETE", "", None),
]


def test_other_key_cannot_use_a_session(alice, bob, a_session):
    sid = alice.request("GET", f"/session/{a_session}").json()["sessionId"]
    upload, ctype = multipart("b-was-here.txt", b"bob")
    for ref in (a_session, sid):
        for prefix, version in (("/session", NEWEST), ("/kernel", V4), ("/v2/kernel", V2)):
            base = f"{prefix}/{ref}"
            for method, suffix, body in SESSION_ROUTES:
                resp = bob.request(method, base + suffix, json=body, version=version)
                assert_problem(resp, 404, "session-not-found")
            resp = bob.request("POST", base + "/upload", body=upload, content_type=ctype, version=version)
            assert_problem(resp, 404, "session-not-found")
    # match listings only show one's own sessions
    for query in ("", a_session[:4], sid[:8]):
        assert bob.request("GET", "/session/_/match", params={"id": query}).json()["matches"] == []
    assert a_session in [m["name"] for m in alice.request("GET", "/session/_/match", params={"id": ""}).json()["matches"]]
    console, _ = alice.run(a_session, "import os\nprint(sorted(os.listdir('.')))")
    assert "b-was-here" not in "".join(d for _, d in console)
    assert alice.request("GET", f"/session/{a_session}").json()["status"] == "RUNNING"


@pytest.mark.parametrize("family, version", [("session", NEWEST), ("kernel", V4)])
def test_other_key_cannot_stream_execute(alice, bob, a_session, family, version):
    sid = alice.request("GET", f"/session/{a_session}").json()["sessionId"]
    bob.version = version
    try:
        for ref in (a_session, sid):
            path = f"/stream/{family}/{ref}/execute"

            async def go(path):
                async with aiohttp.ClientSession() as http_, \
                        http_.ws_connect(bob.endpoint + path, headers=ws_headers(bob, path)) as ws:
                    await ws.send_str(json.dumps({"code": "open('b-was-here','w')", "mode": "query"}))
                    return await ws.receive()

            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                asyncio.run(asyncio.wait_for(go(path), 15))
            assert err.value.status == 404
    finally:
        bob.version = NEWEST


def test_other_key_cannot_use_a_folder_by_id(alice, bob, a_folder, session_name):
    name, fid = a_folder["name"], a_folder["id"]
    dashed = f"{fid[:8]}-{fid[8:12]}-{fid[12:16]}-{fid[16:20]}-{fid[20:]}"
    listed = bob.request("GET", "/folders").json()
    assert name not in [f["name"] for f in listed] and fid not in [f["id"] for f in listed]
    upload, ctype = multipart("b-was-here.txt", b"bob")
    for ref in (fid, dashed, name):
        for method, suffix, body in (
            ("GET", "", None), ("GET", "/files", {"path": "."}),
            ("POST", "/request-upload", {"path": "b.txt", "size": 3}),
            ("POST", "/request-download", {"path": "hello.txt"}),
            ("GET", "/download", {"files": ["hello.txt"]}), ("POST", "/mkdir", {"path": "bdir"}),
            ("DELETE", "/delete-files", {"files": ["hello.txt"]}), ("DELETE", "", None),
        ):
            assert_problem(bob.request(method, f"/folders/{ref}{suffix}", json=body), 404, "vfolder-not-found")
        assert_problem(bob.request("POST", f"/folders/{ref}/upload", body=upload, content_type=ctype),
                       404, "vfolder-not-found")
        assert_problem(bob.request("DELETE", "/folders", json={"id": ref}), 404, "vfolder-not-found")
        assert_problem(bob.create(session_name, config={"mounts": [ref]}), 404, "vfolder-not-found")
    assert_problem(bob.request("GET", "/folders/_/id", json={"name": name}), 404, "vfolder-not-found")
    names = {i["name"] for i in alice.request("GET", f"/folders/{name}/files", json={"path": "."}).json()["items"]}
    assert "hello.txt" in names and not names & {"b-was-here.txt", "b.txt", "bdir"}
    assert alice.request("GET", f"/folders/{name}").status == 200


def test_transfer_tokens_are_scoped_to_path_and_direction(server, alice, bob):
    name = f"rel-tok-{PID}"
    alice.request("DELETE", f"/folders/{name}")
    fid = alice.request("POST", "/folders", json={"name": name}).json()["id"]
    for fname, data in (("t.txt", b"token-data"), ("other.txt", b"other-data")):
        body, ctype = multipart(fname, data)
        assert alice.request("POST", f"/folders/{name}/upload", body=body, content_type=ctype).status == 201
    dl = alice.request("POST", f"/folders/{name}/request-download", json={"path": "t.txt"}).json()["token"]
    up = alice.request("POST", f"/folders/{name}/request-upload", json={"path": "u.bin", "size": 4}).json()["token"]
    tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}

    # a download token reads its one file, whatever else the query says
    for extra in ("", "&path=other.txt", "&path=../../keypairs.json", "&file=other.txt&token=x"):
        status, _, body = unsigned(alice, "GET", f"/storage/download?token={dl}{extra}")
        assert (status, body) == (200, b"token-data"), (extra, status, body[:100])
    # ...and cannot upload; an upload token cannot download
    assert unsigned(alice, "PATCH", f"/storage/upload?token={dl}", b"evil", tus)[0] == 403
    assert unsigned(alice, "HEAD", f"/storage/upload?token={dl}", None, {"Tus-Resumable": "1.0.0"})[0] == 403
    assert unsigned(alice, "GET", f"/storage/download?token={up}")[0] == 403
    assert unsigned(alice, "GET", f"/storage/download?token={up[:-1]}")[0] == 403
    # bearer by design: anyone holding it (Bob, no signature) uploads exactly u.bin, nothing more
    status, headers, _ = unsigned(bob, "PATCH", f"/storage/upload?token={up}&path=t.txt", b"abcd", tus)
    assert status == 204 and headers["upload-offset"] == "4"
    items = {i["name"]: i["size"] for i in alice.request("GET", f"/folders/{name}/files", json={"path": "."}).json()["items"]}
    assert items == {"t.txt": 10, "other.txt": 10, "u.bin": 4}
    assert unsigned(alice, "GET", f"/storage/download?token={dl}")[2] == b"token-data"

    # tokens die with their folder
    up2 = alice.request("POST", f"/folders/{name}/request-upload", json={"path": "late.bin", "size": 4}).json()["token"]
    assert alice.request("DELETE", f"/folders/{name}").status == 204
    assert unsigned(alice, "GET", f"/storage/download?token={dl}")[0] in (403, 404, 410)
    assert unsigned(alice, "HEAD", f"/storage/upload?token={up2}", None, {"Tus-Resumable": "1.0.0"})[0] in (403, 404, 410)
    assert unsigned(alice, "PATCH", f"/storage/upload?token={up2}", b"late", tus)[0] in (403, 404, 410)
    assert not (server.data_dir / "vfolders" / fid).exists()
    alive(server)


# == 3. paths ======================================================================================

def test_encoded_separators_and_traversal_in_path_params(alice, a_folder, a_session):
    vf = a_folder["name"]
    # fullwidth letters: NFKC folds them to the real name, the server must not
    lookalike = vf.translate({ord(c): ord(c) + 0xFEE0 for c in "rela"})
    assert lookalike != vf and unicodedata.normalize("NFKC", lookalike) == vf
    for path in (
        f"/folders/a%2F..%2F{vf}/files", f"/folders/..%2F{vf}/files", "/folders/%2E%2E/files",
        "/folders/..%2F..%2F..%2Fetc/files", f"/folders/a%252F..%252F{vf}/files", "/folders/%252E%252E/files",
        "/folders/..%5C..%5Cetc/files", f"/folders/{vf}%2F..%2F{vf}/files", f"/folders/{vf}%00/files",
        f"/session/..%2F{a_session}/files", f"/session/{a_session}%2F..%2F{a_session}/files",
        "/session/..%2F..%2F..%2Fetc/files", "/session/%2E%2E/download",
        f"/folders/{quote(lookalike)}/files", f"/session/{quote(lookalike)}/files",  # (same name as the session)
    ):
        resp = alice.request("GET", path, json={"path": "."})
        assert resp.status in (400, 404), (path, resp.status, resp.body[:200])
    # a raw backslash in the request line
    resp = alice.request("GET", "/folders/..\\..\\etc/files", json={"path": "."})
    assert resp.status in (400, 404)


@pytest.mark.parametrize("path", [
    "..\\..\\etc\\hostname", "mnt\\..\\..\\x", "/etc/hostname", "..", "a/../../x",
    "\ud800", "\udfff/x", "a" * 300, "a/" * 3000, "x" * 10_000,
], ids=lambda p: ascii(p)[:24])
def test_bad_paths_in_bodies(alice, a_folder, a_session, path):
    vf = a_folder["name"]
    for method, route, body in (
        ("GET", f"/folders/{vf}/files", {"path": path}),
        ("POST", f"/folders/{vf}/mkdir", {"path": path}),
        ("POST", f"/folders/{vf}/request-upload", {"path": path, "size": 1}),
        ("POST", f"/folders/{vf}/request-download", {"path": path}),
        ("GET", f"/folders/{vf}/download", {"files": [path]}),
        ("DELETE", f"/folders/{vf}/delete-files", {"files": [path], "recursive": True}),
        ("GET", f"/session/{a_session}/files", {"path": path}),
        ("GET", f"/session/{a_session}/download", {"files": [path]}),
    ):
        resp = alice.request(method, route, json=body)
        assert_problem(resp, 400)
    body, ctype = multipart(path, b"x")  # (a lone surrogate goes as invalid UTF-8 bytes)
    etc_hostname = Path("/etc/hostname")
    hostname = etc_hostname.read_bytes() if etc_hostname.exists() else None
    resp = alice.request("POST", f"/folders/{vf}/upload", body=body, content_type=ctype)
    # A quoted multipart filename drops its backslashes ('\\.' is an escape): "....etchostname"
    # is a literal name inside the folder.
    assert resp.status in (201, 400, 413), resp.body[:200]
    if any("\ud800" <= c <= "\udfff" for c in path):
        # bytes that are not UTF-8: a literal (non-UTF-8) name inside the folder, as a kernel could
        # make one, listed in surrogateescape form (see test_odd_file_names_made_by_a_kernel)
        assert resp.status == 201, resp.body[:200]
        stored = path.encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape")
        listed = alice.request("GET", f"/folders/{vf}/files", json={"path": str(Path(stored).parent)})
        assert Path(stored).name in [i["name"] for i in listed.json()["items"]]
        alice.request("DELETE", f"/folders/{vf}/delete-files", json={"files": [stored.split("/")[0]], "recursive": True})
    assert not os.path.exists("/etc/x") and not os.path.exists("/x")
    if hostname is not None:
        assert etc_hostname.read_bytes() == hostname


def test_unicode_lookalike_names_stay_literal(alice, a_folder):
    vf = a_folder["name"]
    for lookalike in ("\uff0e\uff0e", "\u2025", "..\u0338", "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc", "%2e%2e"):
        assert_problem(alice.request("POST", f"/folders/{vf}/request-download",
                                     json={"path": lookalike + "/hostname"}), 404)
        resp = alice.request("POST", f"/folders/{vf}/mkdir", json={"path": lookalike, "exist_ok": True})
        assert resp.status == 201, resp.body
    names = [i["name"] for i in alice.request("GET", f"/folders/{vf}/files", json={"path": "."}).json()["items"]]
    assert "\uff0e\uff0e" in names and "\u2025" in names
    assert_problem(alice.request("GET", f"/folders/{vf}/files", json={"path": "\uff48ello.txt"}), 404)
    alice.request("DELETE", f"/folders/{vf}/delete-files", json={
        "files": ["\uff0e\uff0e", "\u2025", "..\u0338", "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc", "%2e%2e"],
        "recursive": True})


def test_symlinks_in_a_folder_are_not_followed_out(server, alice, a_folder, a_session, tmp_path):
    vf = a_folder["name"]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    hostname_existed = os.path.exists("/etc/hostname")
    console, _ = alice.run(a_session, (
        "import os\n"
        "for n in ('evil', 'loop', '.planted.txt.uploading', '.sess.txt.uploading', 'victim-link'):\n"
        "    os.path.lexists('mnt/' + n) and os.remove('mnt/' + n)\n"
        "os.symlink('/etc', 'mnt/evil')\n"
        "os.symlink('loop', 'mnt/loop')\n"
        f"os.symlink({str(victim)!r}, 'mnt/.planted.txt.uploading')\n"
        f"os.symlink({str(victim)!r}, 'mnt/.sess.txt.uploading')\n"
        f"os.symlink({str(victim)!r}, 'mnt/victim-link')\n"
        "print('ok')"
    ))
    assert "ok" in "".join(d for _, d in console), console

    for path in ("evil", "evil/", "evil/.", "loop", "loop/x", "evil/hostname", "victim-link"):
        resp = alice.request("GET", f"/folders/{vf}/files", json={"path": path})
        assert_problem(resp, 400)
        assert_problem(alice.request("POST", f"/folders/{vf}/request-download", json={"path": path}), 400)
        assert_problem(alice.request("GET", f"/folders/{vf}/download", json={"files": [path]}), 400)
        assert_problem(alice.request("DELETE", f"/folders/{vf}/delete-files",
                                     json={"files": [path], "recursive": True}), 400)
        assert_problem(alice.request("POST", f"/folders/{vf}/mkdir", json={"path": path + "/newdir"}), 400)
        assert_problem(alice.request("POST", f"/folders/{vf}/request-upload",
                                     json={"path": path + "/planted", "size": 1}), 400)
    body, ctype = multipart("evil/planted.txt", b"pwned")
    assert_problem(alice.request("POST", f"/folders/{vf}/upload", body=body, content_type=ctype), 400)

    # the listing and the usage walk do not follow the links either
    listing = alice.request("GET", f"/folders/{vf}/files", json={"path": "."})
    assert listing.status == 200
    assert {"evil", "loop", "victim-link"} <= {i["name"] for i in listing.json()["items"]}
    assert alice.request("GET", f"/folders/{vf}").status == 200

    # a planted ".NAME.uploading" link does not redirect upload writes (tus, vfolder and session multipart)
    grant = alice.request("POST", f"/folders/{vf}/request-upload", json={"path": "planted.txt", "size": 5})
    assert grant.status == 200, grant.body
    tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    status, _, _ = unsigned(alice, "PATCH", f"/storage/upload?token={grant.json()['token']}", b"pwned", tus)
    assert status == 204
    body, ctype = multipart("mnt/sess.txt", b"pwned")
    assert alice.request("POST", f"/session/{a_session}/upload", body=body, content_type=ctype).status == 204
    assert victim.read_text() == "precious"
    got = alice.request("POST", f"/folders/{vf}/request-download", json={"path": "planted.txt"}).json()["token"]
    assert unsigned(alice, "GET", f"/storage/download?token={got}")[2] == b"pwned"  # landed inside

    # swapping the partial file for a link between request-upload and PATCH does not help either
    grant = alice.request("POST", f"/folders/{vf}/request-upload", json={"path": "swap.txt", "size": 5}).json()
    alice.run(a_session, f"import os\nos.remove('mnt/.swap.txt.uploading')\nos.symlink({str(victim)!r}, 'mnt/.swap.txt.uploading')")
    status, _, _ = unsigned(alice, "PATCH", f"/storage/upload?token={grant['token']}", b"pwned", tus)
    assert status == 409
    # nor does swapping a file for a link after its download token was issued
    token = alice.request("POST", f"/folders/{vf}/request-download", json={"path": "hello.txt"}).json()["token"]
    alice.run(a_session, "import os\nos.rename('mnt/hello.txt', 'mnt/hello.bak')\nos.symlink('/etc/passwd', 'mnt/hello.txt')")
    try:
        status, _, body = unsigned(alice, "GET", f"/storage/download?token={token}")
        assert status == 400 and b"root:" not in body
    finally:
        alice.run(a_session, "import os\nos.remove('mnt/hello.txt')\nos.rename('mnt/hello.bak', 'mnt/hello.txt')")

    assert victim.read_text() == "precious"
    assert os.path.exists("/etc/hostname") == hostname_existed
    assert os.path.exists("/etc/passwd")
    assert not os.path.exists("/etc/planted.txt") and not os.path.exists("/etc/newdir")
    alive(server)


def test_odd_file_names_made_by_a_kernel(server, alice, a_folder, a_session):
    """Names that are not UTF-8, or hold quotes and newlines, list and download fine (the
    Content-Disposition header stays one clean line)."""
    vf = a_folder["name"]
    alice.run(a_session, (
        "import os\n"
        "for n in (b'mnt/odd-\\xff\\xfe.bin', 'mnt/odd-q\"uote\\nX-Evil: 1.txt'.encode(), b'mnt/odd-tab\\there'):\n"
        "    with open(n, 'wb') as f: f.write(b'odd')\n"
    ))
    items = alice.request("GET", f"/folders/{vf}/files", json={"path": "."}).json()["items"]
    odd = sorted(i["name"] for i in items if i["name"].startswith("odd-"))
    assert odd == ["odd-q\"uote\nX-Evil: 1.txt", "odd-tab\there", "odd-\udcff\udcfe.bin"], odd
    try:
        for name in odd:
            grant = alice.request("POST", f"/folders/{vf}/request-download", json={"path": name})
            assert grant.status == 200, grant.body
            status, headers, body = unsigned(alice, "GET", f"/storage/download?token={grant.json()['token']}")
            assert (status, body) == (200, b"odd")
            assert "x-evil" not in headers and "\n" not in headers["content-disposition"]
            resp = alice.request("GET", f"/folders/{vf}/download", json={"files": [name]})
            assert resp.status == 200 and b"odd" in resp.body, resp.body[:300]
            resp = alice.request("GET", f"/session/{a_session}/download", json={"files": [f"mnt/{name}"]})
            assert resp.status == 200, resp.body[:300]
        assert alice.request("GET", f"/session/{a_session}/files", json={"path": "mnt"}).status == 200
    finally:
        assert alice.request("DELETE", f"/folders/{vf}/delete-files", json={"files": odd}).status == 200
    alive(server)


# == 4. sizes and shapes ===========================================================================

def _declared_length_upload(api: SignedClient, path: str, declared: int) -> tuple[int, bytes]:
    host, port = api.netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", api.netloc)
        conn.putheader("Content-Type", "multipart/form-data; boundary=bNdRy")
        conn.putheader("Content-Length", str(declared))
        for k, v in signed_headers(api, "POST", path, "multipart/form-data").items():
            conn.putheader(k, v)
        conn.endheaders(b'--bNdRy\r\nContent-Disposition: form-data; name="src"; filename="big.bin"\r\n\r\n'
                        + b"\0" * 65536)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_oversized_multipart_upload_is_413_without_reading_it(server, alice, a_folder, a_session):
    for path in (f"/folders/{a_folder['name']}/upload", f"/session/{a_session}/upload"):
        status, body = _declared_length_upload(alice, path, 2 * 1024**3)
        assert status == 413, body[:300]
        assert json.loads(body)["type"].endswith("/request-too-large")
    names = [i["name"] for i in alice.request("GET", f"/folders/{a_folder['name']}/files").json()["items"]]
    assert "big.bin" not in names and ".big.bin.uploading" not in names
    alive(server)


_PART = b'Content-Disposition: form-data; name="src"; filename="m.txt"\r\n\r\n'
MALFORMED_MULTIPART = {
    "no-boundary-param": (b"--b\r\n" + _PART + b"x\r\n--b--\r\n", "multipart/form-data"),
    "wrong-boundary": (b"--zzz\r\n" + _PART + b"x\r\n--zzz--\r\n", "multipart/form-data; boundary=b"),
    "truncated": (b"--b\r\n" + _PART + b"xxxx", "multipart/form-data; boundary=b"),
    "no-closing-boundary": (b"--b\r\n" + _PART + b"x\r\n", "multipart/form-data; boundary=b"),
    "garbage": (b"\x00\xff" * 100, "multipart/form-data; boundary=b"),
    "empty": (b"", "multipart/form-data; boundary=b"),
    "header-without-colon": (b"--b\r\nNoColonHeader\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b"),
    "boundary-too-long": (b"--" + b"b" * 100 + b"\r\n" + _PART + b"x\r\n--" + b"b" * 100 + b"--\r\n",
                          "multipart/form-data; boundary=" + "b" * 100),
    "part-header-too-long": (b'--b\r\nContent-Disposition: form-data; name="src"; filename="' + b"x" * 10_000
                             + b'"\r\n\r\nx\r\n--b--\r\n', "multipart/form-data; boundary=b"),
    "nested": (b"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n",
               "multipart/form-data; boundary=b"),
    "not-multipart": (b'{"src": "x"}', "application/json"),
}


@pytest.mark.parametrize("case", MALFORMED_MULTIPART)
def test_malformed_multipart_uploads_are_400(server, alice, a_folder, a_session, case):
    body, ctype = MALFORMED_MULTIPART[case]
    for path in (f"/folders/{a_folder['name']}/upload", f"/session/{a_session}/upload"):
        assert_problem(alice.request("POST", path, body=body, content_type=ctype), 400)
    alive(server)


def test_oversized_chunked_json_body_is_413(alice, a_folder):
    path = f"/folders/{a_folder['name']}/files"
    host, port = alice.netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", alice.netloc)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        for k, v in signed_headers(alice, "GET", path, "application/json").items():
            conn.putheader(k, v)
        conn.endheaders()
        chunk = b"[" + b"0," * 32767 + b"0]"
        payload = b'{"path": ".", "pad": [' + b",".join([chunk] * 70) + b"]}"  # ~4.6 MB
        for i in range(0, len(payload), 1 << 20):
            piece = payload[i:i + (1 << 20)]
            try:
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        assert resp.status == 413, resp.read()[:300]
    finally:
        conn.close()


def test_tus_upload_beyond_the_announced_size_is_413(alice, a_folder):
    vf = a_folder["name"]
    token = alice.request("POST", f"/folders/{vf}/request-upload", json={"path": "ten.bin", "size": 10}).json()["token"]
    tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    assert unsigned(alice, "PATCH", f"/storage/upload?token={token}", b"x" * 100, tus)[0] == 413
    # streamed without a length: cut off once it passes the size
    host, port = alice.netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request("PATCH", f"/storage/upload?token={token}", body=iter([b"y" * 8, b"y" * 92]),
                     headers=tus, encode_chunked=True)
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    size = {i["name"]: i["size"] for i in alice.request("GET", f"/folders/{vf}/files").json()["items"]}
    assert size.get(".ten.bin.uploading", 0) <= 10 and size.get("ten.bin", 0) <= 10


def test_duplicate_keys_last_one_wins(alice, a_folder):
    name = f"rel-dup-{PID}"
    raw = f'{{"name": "bad name!", "name": "{name}"}}'.encode()
    resp = alice.request("POST", "/folders", body=raw, content_type="application/json")
    try:
        assert resp.status == 201 and resp.json()["name"] == name
    finally:
        alice.request("DELETE", f"/folders/{name}")
    raw = b'{"path": ".", "path": "../../etc"}'
    assert_problem(alice.request("GET", f"/folders/{a_folder['name']}/files", body=raw,
                                 content_type="application/json"), 400)


@pytest.mark.parametrize("number", [
    b"1e999", b"-1e999", b"1" + b"0" * 10_000, b"-" + b"9" * 5000, b"NaN", b"Infinity", b"-Infinity",
    b"1.5", b"-0", b"1e308", b"4.9e-324", b"true",
])
def test_huge_and_odd_numbers(server, alice, a_folder, a_session, number):
    vf = a_folder["name"]
    for method, path, template in (
        ("POST", f"/folders/{vf}/request-upload", b'{"path": "n.bin", "size": %s}'),
        ("POST", f"/folders/{vf}/mkdir", b'{"path": "ndir", "parents": %s, "exist_ok": true}'),
        ("DELETE", f"/folders/{vf}/delete-files", b'{"files": ["nope"], "recursive": %s}'),
        ("POST", f"/session/{a_session}", b'{"mode": "query", "code": "", "runId": %s}'),
        ("POST", f"/session/{a_session}/complete", b'{"code": "pri", "options": {"row": %s, "col": %s}}'),
        ("POST", "/session", b'{"name": "rel-num-x", "image": "no-such-image", "reuseIfExists": %s}'),
    ):
        body = template.replace(b"%s", number)
        resp = alice.request(method, path, body=body, content_type="application/json")
        problem_or_ok(resp)
    alive(server)


LONE = ["\ud800", "\udbff\ud800", "a\udfffb", "\udcff"]


@pytest.mark.parametrize("text", LONE)
def test_lone_surrogates_in_every_kind_of_field(server, alice, a_folder, a_session, text):
    vf = a_folder["name"]
    calls = [
        ("POST", "/folders", {"name": text}),
        ("POST", "/session", {"name": text, "image": "python"}),
        ("POST", "/session", {"name": f"rel-sur-{PID}", "image": text}),
        ("POST", "/session", {"name": f"rel-sur-{PID}", "image": "no-such", "tag": text}),
        ("POST", "/session", {"name": f"rel-sur-{PID}", "image": "python", "config": {"environ": {text: "x"}}}),
        ("POST", "/session", {"name": f"rel-sur-{PID}", "image": "python", "config": {"environ": {"X": text + "\0"}}}),
        ("POST", "/session", {"name": f"rel-sur-{PID}", "image": "python", "config": {"mounts": [f"{vf}:{text}"]}}),
        ("POST", f"/session/{a_session}", {"mode": "query", "code": text, "runId": None}),
        ("POST", f"/session/{a_session}", {"mode": "batch", "code": "", "runId": None, "options": {"exec": text}}),
        ("POST", f"/session/{a_session}", {"mode": "complete", "code": text}),
        ("POST", f"/session/{a_session}", {"mode": "query", "code": "", "runId": text}),
        ("POST", f"/session/{a_session}/complete", {"code": text, "options": {"line": text}}),
        ("GET", "/session/_/match", {"id": text}),
        ("GET", f"/folders/{vf}/files", {"path": text}),
        ("POST", f"/folders/{vf}/mkdir", {"path": text}),
        ("POST", f"/folders/{vf}/request-upload", {"path": text, "size": 0}),
        ("POST", f"/folders/{vf}/request-download", {"path": text}),
        ("DELETE", f"/folders/{vf}/delete-files", {"files": [text]}),
        ("GET", "/folders/_/id", {"name": text}),
        ("DELETE", "/folders", {"id": text}),
        ("GET", "/auth", {"echo": text}),
    ]
    try:
        for method, path, body in calls:
            resp = alice.request(method, path, json=body)
            problem_or_ok(resp)
            if path == "/session" and resp.status in (200, 201):
                # only the OS-encodable surrogate-escape range may start a kernel
                assert text == "\udcff", (body, resp.status)
    finally:
        alice.request("DELETE", f"/session/rel-sur-{PID}")
        alice.request("DELETE", f"/folders/{vf}/delete-files", json={"files": [text], "recursive": True})
    # the kernel is still usable (an unencodable input once left a run stuck forever)
    console, _ = alice.run(a_session, "print(6 * 7)")
    assert "42" in "".join(d for _, d in console)
    alive(server)


def test_unencodable_input_does_not_lose_the_prompt(alice, a_session):
    result = alice.execute(a_session, "query", "x = input('q? ')\nprint('got', x)", run_id=f"inp-{PID}")
    for _ in range(50):
        if result["status"] != "continued":
            break
        result = alice.execute(a_session, "continue", "", run_id=f"inp-{PID}")
    assert result["status"] == "waiting-input"
    resp = alice.request("POST", f"/session/{a_session}", json={"mode": "input", "code": "\ud800", "runId": f"inp-{PID}"})
    assert_problem(resp, 400, "invalid-api-params")
    result = alice.execute(a_session, "input", "fine", run_id=f"inp-{PID}")
    console = result["console"]
    for _ in range(50):
        if result["status"] in ("finished", "exec-timeout"):
            break
        result = alice.execute(a_session, "continue", "", run_id=f"inp-{PID}")
        console += result["console"]
    assert "got fine" in "".join(d for _, d in console)


WRONG_VALUES = [None, 0, -1, 1.5, True, "", "str-value", [], ["x"], [1, {}], {}, {"k": "v"}]


def _session_routes(a_session):
    return [
        ("POST", "/session", NEWEST, {
            "name": f"rel-wt-{PID}", "image": "no-such-image", "type": "interactive", "tag": "t",
            "reuseIfExists": True, "config.environ": {}, "config.mounts": [], "config.mount_map": {},
            "config.resources": {}, "config": {}}),
        ("POST", "/kernel/create", V4, {"clientSessionToken": f"rel-wt-{PID}", "lang": "no-such-image",
                                        "config": {}}),
        ("POST", f"/session/{a_session}", NEWEST, {"mode": "query", "code": "1", "runId": None, "options": {}}),
        ("POST", f"/session/{a_session}", NEWEST, {"mode": "batch", "code": "", "runId": None,
                                                   "options": {}, "options.exec": "true", "options.build": ""}),
        ("POST", f"/session/{a_session}", NEWEST, {"mode": "continue", "code": "", "runId": "no-such-run"}),
        ("POST", f"/session/{a_session}/complete", NEWEST, {"code": "imp", "options": {},
                                                            "options.row": 0, "options.col": 3}),
        ("GET", f"/session/{a_session}/files", NEWEST, {"path": "."}),
        ("GET", f"/session/{a_session}/download", NEWEST, {"files": ["no-such"]}),
        ("GET", f"/session/{a_session}/download_single", NEWEST, {"file": "no-such"}),
        ("GET", "/session/_/match", NEWEST, {"id": "rel"}),
    ]


def _folder_routes(vf):
    return [
        ("POST", "/folders", NEWEST, {"name": f"rel-wt-{PID}", "permission": "rw", "usage_mode": "general",
                                      "cloneable": False}),
        ("GET", "/folders", NEWEST, {"all": False}),
        ("GET", "/folders/_/id", NEWEST, {"name": "no-such-folder"}),
        ("DELETE", "/folders", NEWEST, {"id": "no-such-folder"}),
        ("GET", f"/folders/{vf}/files", NEWEST, {"path": "."}),
        ("POST", f"/folders/{vf}/mkdir", NEWEST, {"path": "wt-dir", "parents": True, "exist_ok": True}),
        ("POST", f"/folders/{vf}/request-upload", NEWEST, {"path": "wt.bin", "size": 0}),
        ("POST", f"/folders/{vf}/request-download", NEWEST, {"path": "hello.txt", "archive": False}),
        ("GET", f"/folders/{vf}/download", NEWEST, {"files": ["hello.txt"]}),
        ("DELETE", f"/folders/{vf}/delete-files", NEWEST, {"files": ["no-such"], "recursive": False}),
        ("GET", "/auth", NEWEST, {"echo": "x"}),
    ]


def _build(baseline: dict, key: str, value) -> dict:
    body = {k: v for k, v in baseline.items() if "." not in k}
    for k, v in baseline.items():
        if "." in k:
            outer, inner = k.split(".", 1)
            if isinstance(body.get(outer), dict):
                body[outer] = {**body[outer], inner: v}
    if "." in key:
        outer, inner = key.split(".", 1)
        body[outer] = {**(body.get(outer) if isinstance(body.get(outer), dict) else {}), inner: value}
    else:
        body[key] = value
    return body


def _cleanup_created(api: SignedClient, method: str, path: str, resp) -> None:
    if resp.status not in (200, 201):
        return
    if path in ("/session", "/kernel/create"):
        api.request("DELETE", f"/session/{resp.json()['sessionName']}")
    elif path == "/folders" and method == "POST":
        api.request("DELETE", f"/folders/{resp.json()['name']}")


@pytest.mark.parametrize("family", ["session", "folder"])
def test_wrong_types_in_every_field(server, alice, a_folder, a_session, family):
    routes = _session_routes(a_session) if family == "session" else _folder_routes(a_folder["name"])
    for method, path, version, baseline in routes:
        for key in baseline:
            for value in WRONG_VALUES:
                resp = alice.request(method, path, json=_build(baseline, key, value), version=version)
                assert resp.status < 500, (method, path, key, value, resp.status, resp.body[:300])
                _cleanup_created(alice, method, path, resp)
        alive(server)


# == 5. property-based fuzz of every JSON route ====================================================

_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.lists(st.integers(0xD800, 0xDFFF).map(chr), min_size=1, max_size=3).map("".join),
)
JSON = st.recursive(
    _leaf,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=10,
)
# Code that cannot loop, wait for input or do anything else slow: no letters at all.
SAFE_CODE = st.one_of(
    st.sampled_from(["", "1", "print('x')", "x = 1", "1/0", "'\\u2713'"]),
    st.text(alphabet="0123456789+-*/%()[]{}'\" .,:;#\n\\", max_size=30),
)
SAFE_BATCH = st.fixed_dictionaries({}, optional={
    k: st.one_of(st.sampled_from(["", "true", "echo hi", "false"]), st.none(), st.integers(), st.lists(st.text(max_size=3)))
    for k in ("clean", "build", "exec")
})
NON_STR = JSON.filter(lambda v: not isinstance(v, str))
NON_DICT = JSON.filter(lambda v: not isinstance(v, dict))
PATHS = st.one_of(
    st.sampled_from([".", "x", "sub/x", "hello.txt", "fz-dir", "fz-dir/a.bin", "mnt", "mnt/hello.txt",
                     "/home/work/x", "a b", "\u00fcn\u00ef", "evil", "loop", "\udcff"]),
    st.text(alphabet="abc./-_ ~\\", min_size=1, max_size=12),
)


def mix(*plausible):
    """Plausible values for a key: the right type, valid or not (see :func:`one_key_wrong`)."""
    return st.one_of(*plausible)


@st.composite
def one_key_wrong(draw, keys: dict, wrong: dict):
    """A body with every key plausible except one, which is anything at all (or missing)."""
    body = draw(st.fixed_dictionaries(keys))
    key = draw(st.sampled_from(sorted(keys)))
    if draw(st.integers(0, 4)) == 0:
        del body[key]
    else:
        body[key] = draw(wrong.get(key, JSON))
    return body


def _fuzz_routes(a_session: str, vf: str) -> list[tuple[str, str, str, dict]]:
    """(method, path, version, {key: strategy for its value})."""
    name = mix(st.just(f"rel-fz-{PID}"))
    image = mix(st.sampled_from(["no-such-image", "cr.backend.ai/x/no-such:1.0", "no-such@sha256:00"]))
    config = mix(st.fixed_dictionaries({}, optional={
        "environ": mix(st.dictionaries(st.text("ABCxyz_=", min_size=0, max_size=4), st.text(max_size=6), max_size=3)),
        "mounts": mix(st.lists(st.sampled_from([vf, f"{vf}:x", f"{vf}:/etc", f"{vf}:../x", "nope"]), max_size=3)),
        "mount_map": mix(st.dictionaries(st.sampled_from([vf, "nope"]), st.sampled_from(["x", "/home/work/y", "/etc", ""]))),
        "resources": mix(st.dictionaries(st.sampled_from(["cpu", "mem"]), st.integers()))}))
    boolean = mix(st.booleans())
    return [
        ("POST", "/session", NEWEST, {
            "name": name, "image": image, "type": mix(st.sampled_from(["interactive", "batch"])),
            "tag": mix(st.text(max_size=8)), "reuseIfExists": boolean, "config": config,
            "sessionName": mix(st.none()), "clientSessionToken": mix(st.none()), "lang": mix(st.none())}),
        ("POST", "/kernel/create", V4, {"clientSessionToken": name, "lang": image, "config": config}),
        ("POST", f"/session/{a_session}", NEWEST, {
            "mode": mix(st.sampled_from(["query", "batch", "continue", "input", "complete"])),
            "code": SAFE_CODE,
            "runId": mix(st.none(), st.sampled_from(["r-1", "no-such-run", "x" * 65])),
            "run_id": mix(st.none()),
            "options": SAFE_BATCH,
        }),
        ("POST", f"/session/{a_session}/complete", NEWEST, {
            "code": SAFE_CODE,
            "options": mix(st.fixed_dictionaries({}, optional={
                "row": mix(st.integers(-2, 5)), "col": mix(st.integers(-2, 50)), "line": JSON, "post": JSON}))}),
        ("GET", f"/session/{a_session}/files", NEWEST, {"path": mix(PATHS)}),
        ("GET", f"/session/{a_session}/download", NEWEST, {"files": mix(st.lists(PATHS, max_size=3), PATHS)}),
        ("GET", f"/session/{a_session}/download_single", NEWEST, {"file": mix(PATHS)}),
        ("GET", "/session/_/match", NEWEST, {"id": mix(st.text(max_size=6))}),
        ("POST", "/folders", NEWEST, {
            "name": mix(st.sampled_from([f"rel-fz-{PID}", "fz.x", "-bad", "a" * 65, ".", ".."]),
                        st.text("abc-_.", min_size=1, max_size=8)),
            "permission": mix(st.sampled_from(["ro", "rw", "wd", "xx"])),
            "usage_mode": mix(st.sampled_from(["general", "model", "data", "x"])), "usageMode": mix(st.none()),
            "cloneable": boolean}),
        ("GET", "/folders", NEWEST, {"all": boolean, "group_id": mix(st.none())}),
        ("GET", "/folders/_/id", NEWEST, {"name": mix(st.sampled_from([vf, "nope"]))}),
        ("DELETE", "/folders", NEWEST, {"id": mix(st.sampled_from(["nope", "0" * 32])), "name": mix(st.none())}),
        ("GET", f"/folders/{vf}/files", NEWEST, {"path": mix(PATHS)}),
        ("POST", f"/folders/{vf}/mkdir", NEWEST, {"path": mix(PATHS, st.lists(PATHS, max_size=3)),
                                                  "parents": boolean, "exist_ok": boolean}),
        ("POST", f"/folders/{vf}/request-upload", NEWEST, {"path": mix(PATHS), "size": mix(st.integers(0, 64))}),
        ("POST", f"/folders/{vf}/request-download", NEWEST, {"path": mix(PATHS), "file": mix(PATHS),
                                                             "archive": boolean}),
        ("GET", f"/folders/{vf}/download", NEWEST, {"files": mix(st.lists(PATHS, max_size=3), PATHS)}),
        ("DELETE", f"/folders/{vf}/delete-files", NEWEST, {"files": mix(st.lists(PATHS, max_size=3), PATHS),
                                                           "recursive": boolean}),
        ("GET", "/auth", NEWEST, {"echo": JSON}),
    ]


FUZZ_ROUTE_IDS = [f"{m} {p}" for m, p, _, _ in _fuzz_routes("SESSION", "FOLDER")]


@pytest.mark.parametrize("index", range(len(FUZZ_ROUTE_IDS)), ids=FUZZ_ROUTE_IDS)
def test_fuzz_json_routes(server, alice, a_folder, a_session, index):
    method, path, version, keys = _fuzz_routes(a_session, a_folder["name"])[index]
    every_key = st.fixed_dictionaries(keys)
    some_keys = st.fixed_dictionaries({}, optional=keys)
    wrong = one_key_wrong(keys, {"code": NON_STR})  # random text is never run as code
    protected = {"hello.txt"}

    @settings(max_examples=80, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(every_key, wrong, some_keys, JSON, st.binary(max_size=40)))
    def fuzz(body):
        if isinstance(body, dict) and ("delete-files" in path or "request-upload" in path):
            named = [body.get("path"), body.get("files")]
            named = [n for v in named for n in (v if isinstance(v, list) else [v]) if isinstance(n, str)]
            if protected & set(named):
                return  # keep the module's fixture file
        if isinstance(body, dict) and any(isinstance(body.get(k), str) and body[k].startswith("python")
                                          for k in ("image", "lang")):
            return  # would start a kernel
        if isinstance(body, bytes):
            resp = alice.request(method, path, body=body, content_type="application/json", version=version)
        else:
            resp = alice.request(method, path, json=body, version=version)
        assert resp.status < 500, (method, path, body, resp.status, resp.body[:300])
        event(f"status {resp.status}")
        _cleanup_created(alice, method, path, resp)
        alive(server)

    fuzz()
    assert alice.request("GET", f"/folders/{a_folder['name']}").status == 200


# == the log, after all of the above ===============================================================

def test_log_has_no_secrets_and_no_server_errors(server, bob, log_start):
    whole = server.log_text()
    for secret in (server.secret_key, bob.secret_key, *WRONG_SECRETS):
        assert secret not in whole
    text = server.log_path.read_bytes()[log_start:].decode(errors="replace")  # this module's part
    assert text, "nothing was logged"
    five_hundreds = [line for line in text.splitlines() if re.search(r" 5\d\d [\d.]+ms$", line)]
    assert not five_hundreds, five_hundreds[:10]
    assert "unhandled error in" not in text
