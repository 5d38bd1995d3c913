"""End to end (issue 15, "only what changed"): ``tree``, ``touch``, ``-p``, ``mirror``, globs.

Through the real server: the ``tree`` request (raw and through the client
library), ``touch``, modification times kept by ``get -p``/``put -p`` and by
``mirror`` both ways, ``mirror`` copying only what changed (by size and
time, or by BLAKE3 with ``-c``), ``--delete``, ``--dry-run``, a second
mirror that moves no data (the server's audit trail shows no transfer), and
globs in ``get``/``rm``/``ls``/``mget``/``mput`` with quoting for literal
names (in a terminal, with pexpect).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import test_e2e_shell
from conftest import (
    ClientFactory,
    RawSession,
    RunCli,
    RunningServer,
    digest_of,
    error_of,
    tree_digests,
)
from test_e2e_shell import SpawnShell, plain

from ftpclient.copying import copy_files
from ftpclient.treehash import FORK_FROM
from ftpproto.commands import lookup
from ftpproto.messages import Message
from ftpserver import handler, treeinfo

pytestmark = pytest.mark.timeout(120)
spawn_shell = test_e2e_shell.spawn_shell  # the fixture, shared
OLD = 1_600_000_000  # a modification time far from now


def make_tree(root: Path, files: dict[str, bytes], mtime: int | None = OLD) -> None:
    """Files (by relative path) under ``root``, with ``mtime`` set."""
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mtime is not None:
            os.utime(path, (mtime, mtime))


def mtimes(root: Path) -> dict[str, int]:
    """``relative path -> mtime (s)`` of each regular file under ``root``."""
    found: dict[str, int] = {}
    for top, _dirs, files in os.walk(root):
        for name in files:
            path = Path(top) / name
            found[path.relative_to(root).as_posix()] = int(path.stat().st_mtime)
    return found


def transfers(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The audit lines of transfers (``get``/``put``) logged so far."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ftpserver.audit" and r.getMessage().split(" ", 1)[0] in ("get", "put")
    ]


def tree_replies(session: RawSession, *args: str) -> list[Message]:
    """Every reply to one ``tree`` request, up to its ``ok`` or error."""
    session.request("tree", *args)
    replies = []
    while True:
        reply = session.recv()
        replies.append(reply)
        if reply.status != "entry":
            return replies


SAMPLE = {
    "a.txt": b"alpha\n",
    "sub/b.bin": bytes(range(256)) * 40,
    "sub/deeper/c.csv": b"x,y\n1,2\n",
}


# -- the tree and touch requests ---------------------------------------------------------


def test_tree_request_lists_the_whole_tree_with_digests_in_one_answer(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    make_tree(server.alice_home / "site", SAMPLE)
    (server.alice_home / "site" / "link").symlink_to("a.txt")
    session = raw()
    session.login()
    replies = tree_replies(session, "site", "blake3")
    assert replies[-1] == Message("tree", ("ok", str(len(replies) - 1)))
    entries = {r.fields[2]: r.fields[1:] for r in replies[:-1]}
    assert entries["a.txt"] == ("file", "a.txt", "6", str(OLD), digest_of(b"alpha\n"))
    assert entries["sub"][0] == "dir" and entries["sub"][4] == "-"
    assert entries["sub/deeper/c.csv"][4] == digest_of(SAMPLE["sub/deeper/c.csv"])
    assert entries["link"][0] == "link"  # listed, never followed
    order = [r.fields[2] for r in replies[:-1]]
    assert order.index("sub") < order.index("sub/b.bin") < order.index("sub/deeper/c.csv")
    # without blake3: no digests; a file is not a tree; a bad flag is a usage error
    plain_replies = tree_replies(session, "site")
    assert {r.fields[5] for r in plain_replies[:-1]} == {"-"}
    assert error_of(session.call("tree", "site/a.txt"))[1] == 412
    assert error_of(session.call("tree", "nowhere"))[1] == 404
    assert error_of(session.call("tree", "site", "sha1"))[1] == 400
    assert session.call("pwd").fields == ("ok", "/")  # still in step


def test_tree_request_is_bounded(
    server: RunningServer, raw: Callable[[], RawSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(treeinfo, "MAX_ENTRIES", 5)
    make_tree(server.alice_home / "big", {f"f{i}": b"x" for i in range(12)})
    session = raw()
    session.login()
    replies = tree_replies(session, "big", "blake3")
    assert all(r.status == "entry" for r in replies[:-1]) and len(replies) <= 6
    _, code, text = error_of(replies[-1])
    assert code == 400 and "tree too big: more than 5 entries under /big" in text
    assert session.call("pwd").fields == ("ok", "/")


def test_touch_sets_the_time_and_refuses_what_it_cannot(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    make_tree(server.alice_home, {"f.txt": b"data"}, mtime=None)
    session = raw()
    session.login()
    assert session.call("touch", "f.txt", str(OLD)) == Message("touch", ("ok", "/f.txt", str(OLD)))
    assert int((server.alice_home / "f.txt").stat().st_mtime) == OLD
    # the digest remembered for the bytes is kept for the new time (no rehash later)
    assert session.call("stat", "f.txt", "blake3").fields[4] == digest_of(b"data")
    assert session.call("touch", "f.txt", str(OLD + 1)).status == "ok"
    assert server.server.digests.get((server.alice_home / "f.txt").stat()) == digest_of(b"data")
    assert error_of(session.call("touch", "missing", "5"))[1] == 404
    assert error_of(session.call("touch", "f.txt", "-5"))[1] == 400
    assert error_of(session.call("touch", "f.txt", "9" * 20))[1] == 400
    assert (server.alice_home / "f.txt").read_bytes() == b"data"


def test_client_tree_reads_answers_of_many_batches(
    server: RunningServer, client: ClientFactory
) -> None:
    make_tree(server.alice_home / "many", {f"d{i % 3}/f{i:03}": b"%d" % i for i in range(600)})
    entries = client().tree("many", digests=True)
    files = {e.path: e for e in entries if e.type == "file"}
    assert len(files) == 600 and len(entries) == 603
    assert files["d1/f001"].blake3 == digest_of(b"1") and files["d1/f001"].mtime == OLD


def test_client_tree_reads_escaped_and_unusual_names_as_the_server_sent_them(
    server: RunningServer, client: ClientFactory, raw: Callable[[], RawSession]
) -> None:
    """The client's fast parse of plain entries and its general one agree with the raw answer."""
    names = {
        "plain.bin": b"p",
        "with|bar/and%percent": b"escaped",  # escaped on the wire: the general parse
        "ümlaut ünd space/é.txt": b"utf-8, no escape",  # the fast parse
        "UPPER/Case.TXT": b"",
        "100%": b"x" * 3000,
    }
    make_tree(server.alice_home / "odd", names)
    (server.alice_home / "odd" / "to-plain").symlink_to("plain.bin")
    session = raw()
    session.login()
    for digests in (True, False):
        replies = tree_replies(session, "odd", *(["blake3"] if digests else []))
        expected = [
            (f[1], f[2], int(f[3]), int(f[4]), None if f[5] == "-" else f[5])
            for f in (r.fields for r in replies[:-1])
        ]
        entries = client().tree("odd", digests=digests)
        assert [tuple(e) for e in entries] == expected
    files = {e.path: e for e in client().tree("odd", digests=True) if e.type == "file"}
    assert set(files) == set(names)
    for relative, data in names.items():
        assert files[relative].blake3 == digest_of(data) and files[relative].size == len(data)


def test_client_tree_raises_for_a_malformed_entry_and_an_error_after_entries() -> None:
    """What the fast parse does not take goes through the general checks (a fake server)."""
    import socket
    import threading

    from ftpclient.client import FileTransferClient
    from ftpproto.errors import MessageError, RemoteError
    from ftpproto.framing import encode_frame

    good = Message("tree", ("entry", "file", "a", "1", "2", "-"))
    end = Message("tree", ("ok", "2"))
    cases = [  # the whole answer is read, then the first fault raised
        ([Message("tree", ("entry", "file", "a", "1", "2", "ABC")), good, end], MessageError),
        ([good, Message("tree", ("entry", "file", "a", "x1", "2", "-")), end], MessageError),
        ([good, Message("tree", ("error", "400", "tree too big: ..."))], RemoteError),
        ([good, end], MessageError),  # a count that does not match
    ]
    for answer, raised in cases:
        listener = socket.create_server(("127.0.0.1", 0))

        def serve(answer: list[Message] = answer, listener: socket.socket = listener) -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)  # the request
                conn.sendall(b"".join(encode_frame(m.encode()) for m in answer))
                conn.recv(4096)  # until the client closes

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        conn = FileTransferClient("127.0.0.1", listener.getsockname()[1], timeout=10)
        with pytest.raises(raised):
            conn.tree("t", digests=True)
        conn.close()
        thread.join(10)
        listener.close()


def test_mirror_c_of_a_bigger_tree_copies_exactly_what_differs(
    server: RunningServer, run_cli: RunCli, local: Path
) -> None:
    """``mirror -c --delete`` of 300 files: an answer of several batches read beside the hashing.

    Enough files for the client to fork a helper hashing a share of them
    (:data:`ftpclient.treehash.FORK_FROM`) where it has two cores.
    """
    site = server.alice_home / "site"
    files = {f"d{i % 4}/f{i:03}.bin": bytes([i % 256]) * (100 + 37 * i) for i in range(300)}
    assert len(files) >= FORK_FROM
    make_tree(site, files)
    copy = local / "copy"
    make_tree(copy, files)
    make_tree(copy, {"d1/f001.bin": b"\x00" * len(files["d1/f001.bin"])})  # same size and time
    make_tree(copy, {"d2/f002.bin": files["d2/f002.bin"]}, mtime=OLD + 5)  # same bytes, new time
    (copy / "d3" / "f003.bin").unlink()
    make_tree(copy, {"d0/extra.bin": b"stale", "gone/inner.bin": b"stale"})
    done = run_cli("--json", "-c", "mirror -c --delete site copy")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    actions = sorted((e["action"], e["path"]) for e in events if e["event"] == "mirror")
    assert actions == [
        ("copy", "d1/f001.bin"),
        ("copy", "d3/f003.bin"),
        ("removed", "d0/extra.bin"),
        ("removed", "gone"),
        ("time set", "d2/f002.bin"),
    ]
    summary = events[-1]
    assert summary["event"] == "mirror_summary" and summary["unchanged"] == 298
    assert tree_digests(copy) == tree_digests(site) and mtimes(copy) == mtimes(site)
    again = run_cli("-c", "mirror -c site copy")
    assert "mirror: 0 files copied, 300 unchanged" in again.stdout, again.stdout


# -- modification times with -p ------------------------------------------------------------


def test_get_and_put_with_p_keep_the_modification_time(
    server: RunningServer, run_cli: RunCli, local: Path
) -> None:
    make_tree(server.alice_home, {"remote.txt": b"from the server"}, mtime=OLD)
    make_tree(local, {"mine.txt": b"from here"}, mtime=OLD + 7)
    done = run_cli("-c", "get -p remote.txt; put -p mine.txt; get remote.txt plain.txt")
    assert done.returncode == 0, done.stderr
    assert int((local / "remote.txt").stat().st_mtime) == OLD
    assert int((server.alice_home / "mine.txt").stat().st_mtime) == OLD + 7
    assert int((local / "plain.txt").stat().st_mtime) != OLD  # without -p: now


def test_put_p_against_a_server_without_touch_copies_and_says_so(
    server: RunningServer,
    client: ClientFactory,
    local: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # an older server: touch is not in its command table (405)
    monkeypatch.setattr(handler, "lookup", lambda name: None if name == "touch" else lookup(name))
    make_tree(local, {"one.txt": b"1", "two.txt": b"2"}, mtime=OLD)
    pairs = [(str(local / n), n) for n in ("one.txt", "two.txt")]
    result = copy_files(client(), "put", pairs, preserve=True)
    assert [r.size for r in result.files] == [1, 1]
    assert result.mtime_failures == ["the server cannot set modification times (touch)"]
    assert (server.alice_home / "two.txt").read_bytes() == b"2"


# -- mirror ------------------------------------------------------------------------------


def test_mirror_download_copies_only_what_changed(
    server: RunningServer, run_cli: RunCli, local: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ftpserver.audit")
    site = server.alice_home / "site"
    make_tree(site, SAMPLE)
    first = run_cli("-c", "mirror site copy")
    assert first.returncode == 0, first.stderr
    assert "mirror: 3 files copied" in first.stdout
    copy = local / "copy"
    assert tree_digests(copy) == tree_digests(site) and mtimes(copy) == mtimes(site)

    caplog.clear()
    again = run_cli("-c", "mirror site copy")
    assert "mirror: 0 files copied, 3 unchanged" in again.stdout, again.stdout
    assert transfers(caplog) == []  # no file data moved

    # another size is copied; the same size and time with other bytes only with -c
    # (b.bin replaced as writers do, by a rename: a new version for the server's digest cache)
    make_tree(site, {"a.txt": b"alpha, longer\n", "new.tmp": b"\xff" * 10240})
    os.replace(site / "new.tmp", site / "sub" / "b.bin")
    changed = run_cli("-c", "mirror site copy")
    assert "mirror: 1 file copied" in changed.stdout, changed.stdout
    assert (copy / "a.txt").read_bytes() == b"alpha, longer\n"
    assert (copy / "sub" / "b.bin").read_bytes() != b"\xff" * 10240
    by_digest = run_cli("-c", "mirror -c site copy")
    assert "mirror: 1 file copied" in by_digest.stdout, by_digest.stdout
    assert tree_digests(copy) == tree_digests(site)


def test_mirror_delete_and_dry_run(server: RunningServer, run_cli: RunCli, local: Path) -> None:
    site = server.alice_home / "site"
    make_tree(site, SAMPLE)
    copy = local / "copy"
    make_tree(copy, {"extra.txt": b"stale", "old/inner.txt": b"gone"})
    dry = run_cli("--json", "-c", "mirror --delete --dry-run site copy")
    assert dry.returncode == 0, dry.stderr
    events = [json.loads(line) for line in dry.stdout.splitlines()]
    actions = {(e["action"], e["path"]) for e in events if e["event"] == "mirror"}
    assert ("copied", "sub/deeper/c.csv") in actions and ("removed", "old") in actions
    assert ("removed", "extra.txt") in actions
    assert events[-1]["event"] == "mirror_summary" and events[-1]["dry_run"] is True
    assert sorted(p.name for p in copy.iterdir()) == ["extra.txt", "old"]  # nothing done

    done = run_cli("--json", "-c", "mirror --delete site copy")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    copied = [e["path"] for e in events if e.get("action") == "copy"]
    assert sorted(copied) == sorted(SAMPLE)
    assert events[-1]["event"] == "mirror_summary" and events[-1]["removed"] == 2
    assert tree_digests(copy) == tree_digests(site)
    assert not (copy / "old").exists()


def test_mirror_upload_keeps_times_and_skips_unchanged(
    server: RunningServer, run_cli: RunCli, local: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ftpserver.audit")
    make_tree(local / "work", SAMPLE)
    make_tree(server.alice_home / "backup", {"leftover.txt": b"x"})
    first = run_cli("-c", "mirror -R --delete work backup")
    assert first.returncode == 0, first.stderr
    backup = server.alice_home / "backup"
    assert tree_digests(backup) == tree_digests(local / "work")
    assert mtimes(backup) == mtimes(local / "work")
    caplog.clear()
    again = run_cli("-c", "mirror -R -c work backup")
    assert "mirror: 0 files copied, 3 unchanged" in again.stdout, again.stdout
    assert transfers(caplog) == []
    # same size and time, other bytes: only -c sees it
    make_tree(local / "work", {"a.txt": b"ALPHA\n"})
    assert "0 files copied" in run_cli("-c", "mirror -R work backup").stdout
    assert "1 file copied" in run_cli("-c", "mirror -R -c work backup").stdout
    assert (backup / "a.txt").read_bytes() == b"ALPHA\n"


def test_mirror_of_a_missing_source_is_one_error(run_cli: RunCli) -> None:
    done = run_cli("-c", "mirror nowhere here")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["remote: no such folder: nowhere"]


# -- globs, mget, mput -------------------------------------------------------------------


def test_globs_in_get_ls_rm_and_mget_mput_with_quoting(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    home = server.alice_home
    make_tree(home, {"a.csv": b"1", "b.csv": b"22", "c.txt": b"3", "star*.csv": b"literal"})
    make_tree(home, {"logs/2025-01": b"x", "logs/2025-02": b"y", "logs/2026-01": b"z"})
    make_tree(local, {"up1.log": b"u1", "up2.log": b"u2", "keep.txt": b"k"})
    shell = spawn_shell()
    listing = plain(shell.run("ls *.csv")).splitlines()[1:]  # after the echoed command
    assert sorted(" ".join(listing).split()) == ["a.csv", "b.csv", "star*.csv"]
    assert plain(shell.run("ls 'star*.csv'")).splitlines()[1:] == ["star*.csv"]
    shell.run("get -p *.csv")
    assert sorted(p.name for p in local.glob("*.csv")) == ["a.csv", "b.csv", "star*.csv"]
    assert int((local / "a.csv").stat().st_mtime) == OLD
    (local / "a.csv").unlink()
    shell.run('get "star*.csv" only.csv')  # quoted: the one file of that name
    assert (local / "only.csv").read_bytes() == b"literal"
    shell.run("rm logs/2025-*")
    assert sorted(p.name for p in (home / "logs").iterdir()) == ["2026-01"]
    shell.run(r"rm star\*.csv")
    assert sorted(p.name for p in home.glob("*.csv")) == ["a.csv", "b.csv"]
    shell.run("mput -p *.log keep.txt")
    assert (home / "up1.log").read_bytes() == b"u1" and (home / "keep.txt").exists()
    shell.run("lmkdir down")
    shell.run("lcd down")
    shell.run("mget *.log c.txt")
    assert sorted(p.name for p in (local / "down").iterdir()) == ["c.txt", "up1.log", "up2.log"]
    nothing = plain(shell.run("get *.none"))
    assert "no match: *.none" in nothing
    assert shell.quit() == 0
