"""End to end, once per storage backend (local folder, S3 on a real SeaweedFS).

The same tests run against ``storage: local`` and ``storage: s3`` (the
``backend`` fixture's parameter): the real server and the real client, with
the server side checked through the server's own :class:`Storage` for the
user (``Served``), so one test body holds for both.  For S3 the bucket is
also checked directly: no key outside the user's prefix, no multipart upload
left over.  Representative scenarios: transfers, trees, resume after a
killed client, quotas, concurrent uploads of one name, permissions, hostile
paths.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    HOST,
    STALLED_PUT,
    Account,
    Connect,
    MakeServer,
    RawSession,
    RunningServer,
    across_two_servers,
    add_settings,
    digest_of,
    error_of,
    file_digest_of,
    run_and_kill,
    run_command,
    wait_until,
)
from s3service import BUCKET

from ftpclient.client import FileTransferClient
from ftpclient.trees import get_tree, put_tree
from ftpproto.errors import ErrorCode, RemoteError
from ftpserver.storage import b3state
from ftpserver.storage.base import Storage

pytestmark = pytest.mark.timeout(120)
MIB = 1024 * 1024
OLD = 1_600_000_000  # a modification time far from now


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings changes selecting the storage backend under test."""
    if request.param == "local":
        return {}
    settings: dict[str, object] = request.getfixturevalue("s3_settings")
    return settings


class Served:
    """One user's files as the server sees them, through its Storage (any backend)."""

    def __init__(self, running: RunningServer, user: str) -> None:
        self.storage: Storage = running.server.open_storage(running.server.users.users[user])

    def read(self, virtual: str) -> bytes:
        with self.storage.open_read(virtual) as source:
            fd = source.fileno()
            if fd is not None:
                return os.pread(fd, source.size, 0)
            view = memoryview(bytearray(MIB))
            out = bytearray()
            while n := source.readinto(view):
                out += view[:n]
            return bytes(out)

    def tree(self, virtual: str = "/") -> dict[str, str]:
        """Every file under ``virtual`` by relative path -> digest; folders end with ``/``."""
        found: dict[str, str] = {}
        pending = [virtual]
        while pending:
            folder = pending.pop()
            for entry in self.storage.listdir(folder):
                path = f"{folder.rstrip('/')}/{entry.name}"
                relative = path[len(virtual.rstrip("/")) + 1 :]
                if entry.kind == "dir":
                    found[relative + "/"] = ""
                    pending.append(path)
                else:
                    found[relative] = digest_of(self.read(path))
        return found


def check_bucket_clean(running: RunningServer) -> None:
    """For S3: every key is under a user's prefix, and no multipart upload is left open."""
    settings = running.server.settings
    if settings.storage != "s3":
        return
    from ftpserver.storage.s3client import make_client

    client: Any = make_client(settings)
    prefix = settings.s3_prefix + "/"
    answer = client.list_objects_v2(Bucket=BUCKET, Prefix=settings.s3_prefix)
    for item in answer.get("Contents", []):
        assert item["Key"].startswith(prefix), item["Key"]
        assert item["Key"][len(prefix) :].split("/")[0] in (ALICE, BOB), item["Key"]
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
    assert uploads == [], "a multipart upload was left open"


@pytest.fixture
def serve(make_server: MakeServer, backend: dict[str, object]) -> Callable[..., RunningServer]:
    """``serve(*accounts, **settings)``: a server for those users (alice and bob by default)."""

    def make(*accounts: Account, **changes: object) -> RunningServer:
        accounts = accounts or (Account(ALICE, ALICE_PASSWORD), Account(BOB, BOB_PASSWORD))
        return make_server(*accounts, **backend, **changes)

    return make


@pytest.fixture
def alice(
    serve: Callable[..., RunningServer], connect: Connect
) -> Iterator[tuple[RunningServer, FileTransferClient]]:
    running = serve()
    yield running, connect(running, ALICE, ALICE_PASSWORD)
    check_bucket_clean(running)


@pytest.mark.parametrize("size", [0, 1, 11 * MIB + 7], ids=["empty", "one-byte", "multipart"])
def test_round_trip(
    alice: tuple[RunningServer, FileTransferClient], tmp_path: Path, size: int
) -> None:
    running, conn = alice
    data = os.urandom(size)
    source = tmp_path / "up.bin"
    source.write_bytes(data)
    conn.mkdir("docs")
    sent = conn.put(str(source), "docs/data.bin")
    assert sent.blake3 == digest_of(data)
    assert Served(running, ALICE).read("/docs/data.bin") == data
    assert conn.stat("docs/data.bin", digest=True).blake3 == digest_of(data)
    target = tmp_path / "down.bin"
    got = conn.get("docs/data.bin", str(target))
    assert target.read_bytes() == data and got.blake3 == digest_of(data)
    assert [(e.name, e.size) for e in conn.ls("docs")] == [("data.bin", size)]
    assert conn.quota().used == size


def test_trees_put_r_get_r_mv_rm_r(
    alice: tuple[RunningServer, FileTransferClient], tmp_path: Path
) -> None:
    running, conn = alice
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "top.txt").write_bytes(b"top")
    (tree / "a" / "mid.bin").write_bytes(os.urandom(300_000))
    (tree / "a" / "b" / "deep.txt").write_bytes(b"deep")
    put_tree(conn, str(tree), "tree")
    served = Served(running, ALICE).tree("/tree")
    assert served == {
        "a/": "",
        "a/b/": "",
        "a/b/deep.txt": digest_of(b"deep"),
        "a/mid.bin": file_digest_of(tree / "a" / "mid.bin"),
        "empty/": "",
        "top.txt": digest_of(b"top"),
    }
    assert conn.mv("tree", "moved") == "/moved"
    assert Served(running, ALICE).tree("/moved") == served
    back = tmp_path / "back"
    get_tree(conn, "moved", str(back))
    for name in ("top.txt", "a/mid.bin", "a/b/deep.txt"):
        assert file_digest_of(back / name) == file_digest_of(tree / name), name
    assert (back / "empty").is_dir()
    assert conn.rm("moved", recursive=True) == (3, 300_007)
    assert conn.ls("/") == []
    assert conn.quota().used == 0


def test_mv_replace_rm_counts_and_mirror_times(
    alice: tuple[RunningServer, FileTransferClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``mv replace``, ``rm -r``'s counts, and ``mirror`` keeping times (``touch``) and ``-c``."""
    running, conn = alice
    work = tmp_path / "work"
    files = {"a.txt": b"alpha\n", "sub/big.bin": os.urandom(6 * MIB + 3), "sub/c.csv": b"x,y\n"}
    for relative, data in files.items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_bytes(data)
        os.utime(work / relative, (OLD, OLD))

    def mirror(*args: str) -> str:
        head = ["-m", "ftpclient", "--host", HOST, "--port", str(running.port), "--user", ALICE]
        done = run_command(
            [*head, "-c", " ".join(("mirror", *args))], cwd=tmp_path, password=ALICE_PASSWORD
        )
        assert done.returncode == 0, done
        return done.stdout

    mirror("-R", "work", "backup")
    storage = Served(running, ALICE).storage
    for relative in files:
        assert storage.stat(f"/backup/{relative}").mtime == OLD, relative
    assert {e.name: e.mtime for e in storage.listdir("/backup/sub")} == {
        "big.bin": OLD,
        "c.csv": OLD,
    }
    remote = {e.path: e for e in conn.tree("backup", digests=True) if e.type == "file"}
    assert {p: (e.mtime, e.blake3) for p, e in remote.items()} == {
        p: (OLD, digest_of(data)) for p, data in files.items()
    }
    caplog.set_level(logging.INFO, logger="ftpserver.audit")
    caplog.clear()
    assert "0 files copied, 3 unchanged" in mirror("-R", "-c", "work", "backup")
    audit = [r.getMessage().split(" ", 1)[0] for r in caplog.records if r.name == "ftpserver.audit"]
    assert "put" not in audit and "get" not in audit
    mirror("backup", "copy")
    assert {p: int((tmp_path / "copy" / p).stat().st_mtime) for p in files} == dict.fromkeys(
        files, OLD
    )
    conn.mkdir("other")
    assert conn.mv("backup/a.txt", "other/a.txt") == "/other/a.txt"
    conn.mkdir("backup/sub2")
    assert conn.mv("backup/sub/c.csv", "backup/sub2/c.csv") == "/backup/sub2/c.csv"
    with pytest.raises(RemoteError) as caught:
        conn.mv("other/a.txt", "backup/sub2/c.csv")
    assert caught.value.code == ErrorCode.EXISTS
    assert conn.mv("other/a.txt", "backup/sub2/c.csv", replace=True) == "/backup/sub2/c.csv"
    assert Served(running, ALICE).read("/backup/sub2/c.csv") == files["a.txt"]
    used = len(files["a.txt"]) + len(files["sub/big.bin"])
    assert conn.quota().used == used
    assert conn.rm_counts("backup", recursive=True) == (2, used, 3)  # backup, sub, sub2
    assert conn.quota().used == 0


def test_resume_after_a_killed_client(
    alice: tuple[RunningServer, FileTransferClient], tmp_path: Path
) -> None:
    running, conn = alice
    old = b"the old version\n" * 100
    (tmp_path / "old.bin").write_bytes(old)
    conn.put(str(tmp_path / "old.bin"), "big.bin")
    data = os.urandom(12 * MIB)  # S3: over two parts, so a multipart upload that keeps parts
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    line = run_and_kill(
        tmp_path, STALLED_PUT, str(running.port), ALICE, ALICE_PASSWORD, str(source), "big.bin",
        str(6 * MIB),
    )  # fmt: skip
    assert line == f"SENT {6 * MIB}"
    # What the store keeps: every byte on disk; the finished parts (5 MiB or a little more) on S3.
    least = 5 * MIB if running.server.settings.storage == "s3" else 6 * MIB
    assert wait_until(lambda: conn.partial("big.bin") >= least, timeout=20), conn.partial("big.bin")
    kept = conn.partial("big.bin")
    assert kept <= 6 * MIB
    assert Served(running, ALICE).read("/big.bin") == old, "the old version changed"
    result = conn.put(str(source), "big.bin", resume=True)
    assert result.offset == kept
    assert Served(running, ALICE).read("/big.bin") == data
    assert conn.partial("big.bin") == 0
    assert conn.quota().used == len(data)


def test_quota_refuses_an_upload_over_it(
    serve: Callable[..., RunningServer], connect: Connect, tmp_path: Path
) -> None:
    running = serve(Account(ALICE, ALICE_PASSWORD, quota="1M"))
    conn = connect(running, ALICE, ALICE_PASSWORD)
    (tmp_path / "a").write_bytes(os.urandom(700_000))
    (tmp_path / "b").write_bytes(os.urandom(400_000))
    conn.put(str(tmp_path / "a"), "a")
    with pytest.raises(RemoteError) as caught:
        conn.put(str(tmp_path / "b"), "b")
    assert caught.value.code == ErrorCode.QUOTA_EXCEEDED
    assert [e.name for e in conn.ls("/")] == ["a"]
    assert conn.quota().used == 700_000
    conn.rm("a")
    conn.put(str(tmp_path / "b"), "b")
    assert conn.quota().used == 400_000
    check_bucket_clean(running)


def test_concurrent_uploads_of_one_name_leave_one_whole_file(
    serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    running = serve()
    contents = [bytes([65 + i]) * (2 * MIB + i) for i in range(4)]
    errors: list[BaseException] = []

    def send(index: int) -> None:
        path = tmp_path / f"src{index}"
        path.write_bytes(contents[index])
        try:
            with FileTransferClient(HOST, running.port, timeout=60) as conn:
                conn.login(ALICE, ALICE_PASSWORD)
                conn.put(str(path), "same.bin")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(contents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert Served(running, ALICE).read("/same.bin") in contents
    with FileTransferClient(HOST, running.port, timeout=60) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        assert conn.quota().used == len(Served(running, ALICE).read("/same.bin"))
    check_bucket_clean(running)


def test_permissions_of_a_read_only_user(
    serve: Callable[..., RunningServer], connect: Connect, tmp_path: Path
) -> None:
    running = serve(Account(ALICE, ALICE_PASSWORD), Account(BOB, BOB_PASSWORD, perms="list,read"))
    alice_conn = connect(running, ALICE, ALICE_PASSWORD)
    (tmp_path / "f").write_bytes(b"alice's")
    alice_conn.put(str(tmp_path / "f"), "f")
    bob = connect(running, BOB, BOB_PASSWORD)
    assert bob.ls("/") == []  # bob's home is his own
    for call in (
        lambda: bob.put(str(tmp_path / "f"), "g"),
        lambda: bob.mkdir("d"),
        lambda: bob.rm("f"),
    ):
        with pytest.raises(RemoteError) as caught:
            call()
        assert caught.value.code == ErrorCode.PERMISSION_DENIED
    assert Served(running, BOB).tree() == {}
    assert Served(running, ALICE).tree() == {"f": digest_of(b"alice's")}


def test_hostile_paths_stay_in_the_home(
    alice: tuple[RunningServer, FileTransferClient], tmp_path: Path
) -> None:
    running, conn = alice
    (tmp_path / "f").write_bytes(b"inside")
    assert conn.put(str(tmp_path / "f"), "../../../bob/../escaped").size == 6
    assert Served(running, ALICE).tree() == {"escaped": digest_of(b"inside")}
    assert Served(running, BOB).tree() == {}
    session = RawSession(running.port)
    session.login()
    for path, code in (
        ("a\0b", ErrorCode.BAD_PATH),
        ("x" * 300, ErrorCode.PATH_TOO_LONG),
        (".ftp-partial", ErrorCode.BAD_PATH),
    ):
        assert error_of(session.call("mkdir", path))[1] == code, path
    session.close()


@pytest.mark.parametrize(
    ("bucket", "endpoint", "expected"),
    [
        (BUCKET, "", "configuration OK: "),
        ("no-such-bucket-here", "", "s3: no such bucket: no-such-bucket-here"),
        (BUCKET, "http://127.0.0.1:9", "s3: endpoint unreachable: http://127.0.0.1:9"),
    ],
    ids=["ok", "missing-bucket", "unreachable"],
)
def test_check_config_reaches_the_bucket(
    s3_settings: dict[str, object],
    users_file: Path,
    tmp_path: Path,
    bucket: str,
    endpoint: str,
    expected: str,
) -> None:
    from conftest import run_command

    config = tmp_path / "s3.yaml"
    config.write_text(
        f"storage: s3\ns3_bucket: {bucket}\n"
        f"s3_endpoint: {endpoint or s3_settings['s3_endpoint']}\ns3_region: us-east-1\n"
    )
    result = run_command(
        ["-m", "ftpserver", "check-config", "--config", str(config), "--users", str(users_file)],
        cwd=tmp_path,
        timeout=60,
    )
    assert expected in result.stdout, result
    assert result.returncode == (0 if expected.startswith("configuration OK") else 1), result
    if result.returncode:
        assert result.stdout.count("\n") == 1, "one clear line"


def test_reget_after_a_killed_download_reads_the_rest(
    alice: tuple[RunningServer, FileTransferClient], tmp_path: Path
) -> None:
    from conftest import kill_mid_transfer

    running, conn = alice
    data = os.urandom(7 * MIB)
    (tmp_path / "src.bin").write_bytes(data)
    conn.put(str(tmp_path / "src.bin"), "big.bin")
    target = tmp_path / "got.bin"
    moved = kill_mid_transfer(tmp_path, running.port, "get", "big.bin", target, 2 * MIB)
    assert moved >= 2 * MIB
    result = conn.get("big.bin", str(target), resume=True)
    assert result.offset > 0, "the download started over"
    assert target.read_bytes() == data


def test_serve_with_s3_and_worker_processes(
    s3_settings: dict[str, object],
    server_config: Path,
    server_process: Callable[..., Any],
    users_file: Path,
    homes: Path,
    tmp_path: Path,
) -> None:
    """``ftpserver serve`` forks workers that each reach the bucket; sessions share one home."""
    add_settings(server_config, {"workers": 2, **s3_settings})
    started = server_process(users_file, homes)
    data = os.urandom(6 * MIB + 3)
    (tmp_path / "up.bin").write_bytes(data)
    with FileTransferClient(HOST, started.port, timeout=60) as first:
        first.login(ALICE, ALICE_PASSWORD)
        first.mkdir("in")
        first.put(str(tmp_path / "up.bin"), "in/file.bin")
    for attempt in range(4):  # new connections, served by either worker
        with FileTransferClient(HOST, started.port, timeout=60) as conn:
            conn.login(ALICE, ALICE_PASSWORD)
            target = tmp_path / f"down{attempt}.bin"
            assert conn.get("in/file.bin", str(target)).blake3 == digest_of(data)
            assert target.read_bytes() == data
            assert conn.quota().used == len(data)
    assert [p for p in homes.rglob("*") if p.is_file()] == [], "a file went to a local home"


def test_two_nodes_on_one_bucket(
    s3_settings: dict[str, object],
    server_config: Path,
    server_process: Callable[..., Any],
    users_file: Path,
    homes: Path,
    tmp_path: Path,
) -> None:
    """Two server processes on one prefix: a put through one, a get and a resume through the other.

    With libblake3 the BLAKE3 state of a kept upload is saved in its record,
    so the other node continues it; without, the state lives only in the
    process that received it and the resume starts over (docs/S3.md) - and
    still ends with the right file, the kept parts given up.
    """
    add_settings(server_config, {"workers": 1, **s3_settings})
    first, second = server_process(users_file, homes), server_process(users_file, homes)

    def login(port: int) -> FileTransferClient:
        conn = FileTransferClient(HOST, port, timeout=60)
        conn.login(ALICE, ALICE_PASSWORD)
        return conn

    data = os.urandom(12 * MIB)  # over two parts: a multipart upload that keeps parts
    with login(first.port) as one, login(second.port) as two:
        source = across_two_servers(tmp_path, one, two, first.port, data)
        kept = two.partial("g.bin") if b3state.library() else 0
        assert two.put(str(source), "g.bin", resume=True).offset == kept
        assert two.get("g.bin", str(tmp_path / "g.bin")).blake3 == digest_of(data)
        assert one.partial("g.bin") == 0
        # Without the cluster's shared state each node keeps its own quota figures.
        assert two.quota().used == 2 * len(data)
