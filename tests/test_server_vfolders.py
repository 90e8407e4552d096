"""VFolders of the embedded server over raw HTTP: both transfer generations, mounts, isolation."""

from __future__ import annotations

import json
import os
import urllib.request
from urllib.error import HTTPError
from urllib.parse import urlsplit

import pytest

from tests.test_server_bad_input import assert_problem, multipart


@pytest.fixture
def folder(api, request):
    name = "vf-" + request.node.name[-20:].strip("_[]").replace("[", "-").replace("]", "") + f"-{os.getpid() % 1000}"
    resp = api.request("POST", "/folders", json={"name": name})
    assert resp.status == 201, resp.body
    yield name
    api.request("DELETE", f"/folders/{name}")


def raw(method: str, url: str, data: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_create_list_info_delete(api, folder):
    listed = api.request("GET", "/folders", json={"all": False}).json()
    entry = next(f for f in listed if f["name"] == folder)
    assert len(entry["id"]) == 32 and entry["is_owner"] is True and entry["permission"] == "rw"
    info = api.request("GET", f"/folders/{folder}").json()
    assert info["name"] == folder and info["num_files"] == 0
    by_id = api.request("GET", "/folders/_/id", json={"name": folder}).json()
    assert by_id["id"] == entry["id"]
    assert api.request("GET", f"/folders/{entry['id']}").json()["name"] == folder
    dup = api.request("POST", "/folders", json={"name": folder})
    assert_problem(dup, 400, "vfolder-already-exists")
    assert api.request("DELETE", "/folders", json={"id": entry["id"]}).status == 204
    assert_problem(api.request("GET", f"/folders/{folder}"), 404, "vfolder-not-found")


def test_tus_upload_and_token_download(api, folder):
    payload = os.urandom(100_000)
    grant = api.request("POST", f"/folders/{folder}/request-upload", json={"path": "sub/data.bin", "size": len(payload)})
    assert grant.status == 200
    url = grant.json()["url"] + "?token=" + grant.json()["token"]
    assert urlsplit(url).hostname == "127.0.0.1"
    tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    status, headers, _ = raw("PATCH", url, payload[:40_000], {**tus, "Upload-Offset": "0"})
    assert status == 204 and headers["Upload-Offset"] == "40000"
    status, headers, _ = raw("HEAD", url, None, {"Tus-Resumable": "1.0.0"})
    assert status == 200 and headers["Upload-Offset"] == "40000" and headers["Upload-Length"] == str(len(payload))
    status, headers, _ = raw("PATCH", url, payload[40_000:], {**tus, "Upload-Offset": "12"})
    assert status == 409  # wrong offset: nothing written
    status, headers, _ = raw("PATCH", url, payload[40_000:], {**tus, "Upload-Offset": "40000"})
    assert status == 204 and headers["Upload-Offset"] == str(len(payload))
    files = api.request("GET", f"/folders/{folder}/files", params={"path": "sub"}).json()
    assert [(i["name"], i["type"], i["size"]) for i in files["items"]] == [("data.bin", "FILE", len(payload))]
    assert json.loads(files["files"])[0]["filename"] == "data.bin"
    grant = api.request("POST", f"/folders/{folder}/request-download", json={"path": "sub/data.bin"}).json()
    status, headers, body = raw("GET", grant["url"] + "?token=" + grant["token"])
    assert status == 200 and body == payload and headers["Content-Length"] == str(len(payload))
    status, headers, body = raw("GET", grant["url"] + "?token=" + grant["token"], None, {"Range": "bytes=10-19"})
    assert status == 206 and body == payload[10:20]
    assert raw("GET", grant["url"] + "?token=forged")[0] == 403
    assert raw("PATCH", url.replace("token=", "token=x"), b"x", {**tus, "Upload-Offset": "0"})[0] == 403


def test_empty_file_upload(api, folder):
    grant = api.request("POST", f"/folders/{folder}/request-upload", json={"path": "empty.txt", "size": 0})
    assert grant.status == 200
    files = api.request("GET", f"/folders/{folder}/files", json={"path": "."}).json()
    assert [(i["name"], i["size"]) for i in files["items"]] == [("empty.txt", 0)]


def test_multipart_upload_download_and_delete_files(api, folder):
    body, ctype = multipart("notes/a.txt", b"alpha")
    assert api.request("POST", f"/folders/{folder}/upload", body=body, content_type=ctype).status == 201
    resp = api.request("GET", f"/folders/{folder}/download", json={"files": ["notes/a.txt"]})
    assert resp.status == 200 and resp.headers["x-total-payloads-length"] == "5"
    assert b"alpha" in resp.body and b'filename="a.txt"' in resp.body
    mk = api.request("POST", f"/folders/{folder}/mkdir", json={"path": "x/y", "parents": True})
    assert mk.status == 201 and mk.json()["results"]["success"][0]["item"] == "x/y"
    refused = api.request("DELETE", f"/folders/{folder}/delete-files", json={"files": ["x"], "recursive": False})
    assert_problem(refused, 400)
    assert api.request("DELETE", f"/folders/{folder}/delete-files", json={"files": ["x"], "recursive": True}).status == 200
    assert api.request("DELETE", f"/folders/{folder}/delete_files", json={"files": ["notes/a.txt"]}).status == 200
    names = [i["name"] for i in api.request("GET", f"/folders/{folder}/files", json={"path": "."}).json()["items"]]
    assert names == ["notes"]


def test_mounts_with_alias_and_mount_map(api, folder, session_name):
    body, ctype = multipart("in.txt", b"from the folder")
    api.request("POST", f"/folders/{folder}/upload", body=body, content_type=ctype)
    resp = api.create(session_name, config={"mounts": [f"{folder}:data/input"]})
    assert resp.status == 201, resp.body
    try:
        console, _ = api.run(session_name, "print(open('data/input/in.txt').read())\n_ = open('data/input/out.txt','w').write('back')")
        assert "".join(d for k, d in console if k == "stdout") == "from the folder\n"
        listing = api.request("GET", f"/folders/{folder}/files", json={"path": "."}).json()
        assert sorted(i["name"] for i in listing["items"]) == ["in.txt", "out.txt"]
        # the mount is visible through the session's file routes too
        files = api.request("GET", f"/session/{session_name}/files", json={"path": "data/input"}).json()
        assert sorted(e["filename"] for e in json.loads(files["files"])) == ["in.txt", "out.txt"]
    finally:
        api.destroy(session_name)
    resp = api.create(session_name, config={"mounts": [folder], "mount_map": {folder: "/home/work/mapped"}})
    assert resp.status == 201
    try:
        console, _ = api.run(session_name, "print(open('/'.join(['mapped', 'out.txt'])).read())")
        assert "".join(d for k, d in console if k == "stdout") == "back\n"
    finally:
        api.destroy(session_name)
    # destroying the session left the folder's files alone
    assert api.request("GET", f"/folders/{folder}").json()["num_files"] == 2


# (another key can neither see nor mount our folders: tests/reliability/test_server_attacks.py)
