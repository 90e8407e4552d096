"""backendai:// on the embedded server: the fsspec filesystem through fsspec itself, pandas and
pyarrow; listing, reading by ranges, writing, trees both ways, the errors fsspec users expect,
and one user's folders out of another's reach."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import fsspec
import pandas
import pytest

from backend_jupyter.config import Config
from backend_jupyter.filesystem import BackendAIFileSystem


@pytest.fixture
def fs(server):
    return BackendAIFileSystem(config=Config.from_env(server.env()), skip_instance_cache=True)


@pytest.fixture
def folder(fs, request):
    name = "fs-" + request.node.name[5:25].strip("_") + f"-{os.getpid() % 1000}"
    fs.mkdir(name)
    return name


@pytest.fixture
def from_env(server, monkeypatch):
    """fsspec URLs configured as users do: the BACKEND_* variables of this process."""
    for key, value in server.env().items():
        if key.startswith("BACKEND_"):
            monkeypatch.setenv(key, value)
    BackendAIFileSystem.clear_instance_cache()
    yield
    BackendAIFileSystem.clear_instance_cache()


def test_the_root_lists_folders_and_a_folder_its_files(fs, folder):
    assert {"name": folder, "type": "directory", "size": 0} in [
        {k: e[k] for k in ("name", "type", "size")} for e in fs.ls("", detail=True)]
    fs.pipe(f"{folder}/a.txt", b"alpha")
    fs.pipe(f"{folder}/sub/b.bin", b"\x00" * 10)
    assert sorted(fs.ls(folder, detail=False)) == [f"{folder}/a.txt", f"{folder}/sub"]
    assert fs.info(f"{folder}/a.txt") | {"mtime": None} == {"name": f"{folder}/a.txt", "type": "file", "size": 5,
                                                             "mtime": None}
    assert fs.info(f"{folder}/sub")["type"] == "directory" and fs.isdir(folder) and fs.isfile(f"{folder}/a.txt")
    assert fs.find(folder) == [f"{folder}/a.txt", f"{folder}/sub/b.bin"]
    assert fs.glob(f"{folder}/**/*.bin") == [f"{folder}/sub/b.bin"]
    assert fs.exists(f"backendai://{folder}/a.txt") and not fs.exists(f"{folder}/nope")
    assert fs.cat(f"{folder}/a.txt") == b"alpha" and fs.du(folder) == 15


def test_reads_take_ranges(fs, folder):
    data = os.urandom(3 * 1024 * 1024 + 17)
    fs.pipe(f"{folder}/big.bin", data)
    assert fs.cat_file(f"{folder}/big.bin", start=10, end=20) == data[10:20]
    assert fs.cat_file(f"{folder}/big.bin", start=-5) == data[-5:]
    with fs.open(f"{folder}/big.bin", "rb", block_size=256 * 1024) as f:
        f.seek(2 * 1024 * 1024)
        assert f.read(100) == data[2 * 1024 * 1024:2 * 1024 * 1024 + 100]
        assert f.cache.total_requested_bytes < 1024 * 1024  # ranges of the block size, not the file
        f.seek(0)
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()


def test_write_then_read_back_through_fsspec_open(fs, folder):
    with fs.open(f"{folder}/notes/today.txt", "w") as f:
        for i in range(1000):
            f.write(f"line {i}\n")
    with fs.open(f"{folder}/notes/today.txt") as f:
        assert f.read().decode().splitlines()[-1] == "line 999"
    assert fs.size(f"{folder}/notes/today.txt") == sum(len(f"line {i}\n") for i in range(1000))


def test_put_and_get_a_tree_with_progress(fs, folder, tmp_path):
    src = tmp_path / "src"
    for rel, size in (("a.csv", 100), ("deep/b.npy", 2_000_000), ("deep/deeper/c.txt", 0)):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(os.urandom(size))
    seen = []

    class Progress(fsspec.callbacks.Callback):
        def call(self, *args, **kwargs):
            seen.append(self.value)

    fs.put(str(src) + "/", f"{folder}/tree", recursive=True, callback=Progress())
    assert fs.find(f"{folder}/tree") == [f"{folder}/tree/{p}" for p in ("a.csv", "deep/b.npy", "deep/deeper/c.txt")]
    fs.get(f"{folder}/tree/", str(tmp_path / "back") + "/", recursive=True)
    for rel in ("a.csv", "deep/b.npy", "deep/deeper/c.txt"):
        assert (tmp_path / "back" / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert not list((tmp_path / "back").rglob(".*.part"))  # downloads are renamed whole
    assert seen  # fsspec's callbacks advanced


def test_pandas_pyarrow_and_upath_use_urls(from_env, server, tmp_path):
    fs = fsspec.filesystem("backendai")
    fs.mkdir("pd-data")
    df = pandas.DataFrame({"x": range(1000), "y": [f"v{i}" for i in range(1000)]})
    df.to_csv("backendai://pd-data/train.csv", index=False)
    assert pandas.read_csv("backendai://pd-data/train.csv").equals(df)
    df.to_parquet("backendai://pd-data/train.parquet")
    assert pandas.read_parquet("backendai://pd-data/train.parquet").equals(df)
    with fsspec.open("backendai://pd-data/train.csv", "rt") as f:
        assert f.readline() == "x,y\n"
    from upath import UPath

    path = UPath("backendai://pd-data") / "train.csv"
    assert path.exists() and path.read_text().startswith("x,y\n0,v0\n")
    assert sorted(p.name for p in UPath("backendai://pd-data").iterdir()) == ["train.csv", "train.parquet"]


def test_errors_are_the_ones_fsspec_users_expect(fs, folder):
    fs.pipe(f"{folder}/file.txt", b"x")
    fs.makedirs(f"{folder}/dir", exist_ok=True)
    cases = [
        (lambda: fs.cat(f"{folder}/missing.txt"), FileNotFoundError),
        (lambda: fs.ls("no-such-folder"), FileNotFoundError),
        (lambda: fs.open(f"{folder}/dir"), IsADirectoryError),
        (lambda: fs.cat_file(f"{folder}/dir"), IsADirectoryError),
        (lambda: fs.mkdir(folder), FileExistsError),
        (lambda: fs.makedirs(f"{folder}/dir"), FileExistsError),
        (lambda: fs.cat(f"{folder}/../other/x"), PermissionError),
        (lambda: fs.rm(folder, recursive=True), PermissionError),
        (lambda: fs.rm(f"{folder}/dir"), IsADirectoryError),
    ]
    for action, kind in cases:
        with pytest.raises(kind) as caught:
            action()
        assert caught.value.filename, caught.value  # the path, named
    fs.rm(f"{folder}/dir", recursive=True)
    assert not fs.exists(f"{folder}/dir")


def test_symlinks_out_of_a_folder_are_refused_by_name(fs, folder, server):
    fs.pipe(f"{folder}/anchor-{folder}.txt", b"here")  # found on the server's disk by its unique name
    [placed] = server.data_dir.rglob(f"anchor-{folder}.txt")
    os.symlink("/etc/passwd", placed.parent / "escape")
    os.symlink("/etc", placed.parent / "escdir")
    for action, path in ((lambda: fs.cat(f"{folder}/escape"), "escape"), (lambda: fs.ls(f"{folder}/escdir"), "escdir"),
                         (lambda: fs.pipe(f"{folder}/escdir/planted", b"x"), "escdir/planted")):
        with pytest.raises(PermissionError, match=f"Invalid path '{path}': it points outside"):
            action()
    assert not os.path.exists("/etc/planted")


def test_another_key_cannot_reach_my_folders(fs, folder, server):
    fs.pipe(f"{folder}/secret.txt", b"mine")
    access, secret = server.new_keypair()
    other = BackendAIFileSystem(config=Config(endpoints=(server.endpoint,), access_key=access, secret_key=secret),
                                skip_instance_cache=True)
    assert folder not in other.ls("", detail=False)
    for action in (lambda: other.cat(f"{folder}/secret.txt"), lambda: other.ls(folder),
                   lambda: other.pipe(f"{folder}/planted.txt", b"theirs")):
        with pytest.raises((FileNotFoundError, PermissionError)) as caught:
            action()
        assert caught.value.errno in (errno.ENOENT, errno.EACCES)
    assert fs.ls(folder, detail=False) == [f"{folder}/secret.txt"]


def test_a_broken_upload_resumes_from_the_servers_offset(fs, folder, tmp_path):
    """A connection cut midway (a fault proxy in front of the server): the upload goes on from the
    offset the server has, and the file arrives byte-exact."""
    from tests.fault_proxy import FaultProxy

    data = os.urandom(20 * 1024 * 1024)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    proxy = FaultProxy(fs.config.endpoints[0]).start()
    try:  # the second 8 MiB PATCH: 3 MiB reach the server, then the connection breaks
        proxy.inject(1, match="PATCH /storage/upload", skip=1, cut=3 * 1024 * 1024)
        through = BackendAIFileSystem(config=Config(endpoints=(proxy.endpoint,), access_key=fs.config.access_key,
                                                    secret_key=fs.config.secret_key), skip_instance_cache=True)
        through.put_file(str(local), f"{folder}/big.bin")
        assert [m for m, qs, _ in proxy.seen if qs.startswith("/storage/upload")] == [
            "PATCH", "PATCH", "HEAD", "PATCH", "PATCH"]  # 8 MiB, 3 of 8 (cut), the offset asked, 8, the last 1
    finally:
        proxy.stop()
    assert hashlib.sha256(fs.cat(f"{folder}/big.bin")).digest() == hashlib.sha256(data).digest()
    assert Path(local).stat().st_size == fs.size(f"{folder}/big.bin")


def test_an_upload_that_keeps_breaking_leaves_nothing_under_its_name(fs, folder, tmp_path):
    from tests.fault_proxy import FaultProxy

    local = tmp_path / "doomed.bin"
    local.write_bytes(os.urandom(12 * 1024 * 1024))
    proxy = FaultProxy(fs.config.endpoints[0]).start()
    try:  # every PATCH after the first breaks before any byte arrives: more times in a row than it retries
        proxy.inject(100, match="PATCH /storage/upload", skip=1, cut=0)
        through = BackendAIFileSystem(config=Config(endpoints=(proxy.endpoint,), access_key=fs.config.access_key,
                                                    secret_key=fs.config.secret_key), skip_instance_cache=True)
        with pytest.raises(OSError, match="broke off") as caught:
            through.put_file(str(local), f"{folder}/doomed.bin")
        assert caught.value.errno == errno.EIO and caught.value.filename == f"{folder}/doomed.bin"
    finally:
        proxy.stop()
    assert not fs.exists(f"{folder}/doomed.bin")  # the server keeps the partial upload under another name
