"""End to end: pipelined transfers (issue 15): many files in flight on one connection.

Through the real server and client: batches up and down with every file
verified; one file refused mid-batch (missing, quota, a folder in the way)
while the others complete; a client that withdraws or stops early; a wrong
digest; the server's window (a small one holds no more offers); the
one-file exchange on the same session; ``mget``/``mput`` on the command line
(patterns, ``-p``, ``-d``); ``copy_files`` pipelined.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    Account,
    ClientFactory,
    Connect,
    MakeServer,
    RawSession,
    RunCli,
    RunningServer,
    digest_of,
    error_of,
    temp_files,
)

from ftpclient.client import FileTransferClient, LocalError
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.framing import encode_frame
from ftpproto.messages import Message

pytestmark = pytest.mark.timeout(60)

CAROL = Account("carol", "carol pw", quota="1M")


def make_files(folder: Path, count: int, size: int = 3000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"f{n:03d}.bin"
        path.write_bytes(bytes([n % 251]) * (size + n * 7))
        paths.append(path)
    return paths


def test_put_many_and_get_many(server: RunningServer, client: ClientFactory, local: Path) -> None:
    paths = make_files(local / "up", 80)
    (local / "up" / "big.bin").write_bytes(b"x" * 3_000_000)  # bigger than one write
    paths.append(local / "up" / "big.bin")
    conn = client()
    outcomes = list(conn.put_many([(p.name, str(p)) for p in paths]))
    assert [o.local for o in outcomes] == [str(p) for p in paths]
    assert all(
        o.result is not None and o.result.blake3 == digest_of(p.read_bytes())
        for o, p in zip(outcomes, paths, strict=True)
    )
    for path in paths:
        assert (server.alice_home / path.name).read_bytes() == path.read_bytes()
    down = local / "down"
    down.mkdir()
    back = list(conn.get_many([(p.name, str(down / p.name)) for p in paths]))
    assert all(o.result is not None for o in back)
    for path in paths:
        assert (down / path.name).read_bytes() == path.read_bytes()
    assert not list(down.glob("*.part"))
    assert conn.pwd() == "/"  # the session is in step afterwards


def test_get_many_refusals_mid_batch(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    for n in range(6):
        (server.alice_home / f"g{n}").write_bytes(b"g" * (n + 1))
    (server.alice_home / "folder").mkdir()
    names = ["g0", "g1", "missing", "g2", "folder", "g3", "g4", "g5"]
    conn = client()
    outcomes = list(conn.get_many([(n, str(local / n)) for n in names]))
    codes = {o.remote: o.error.code for o in outcomes if isinstance(o.error, RemoteError)}
    assert codes == {"missing": ErrorCode.NOT_FOUND, "folder": ErrorCode.IS_DIRECTORY}
    assert "missing" in str(outcomes[2].error)
    for n in range(6):
        assert (local / f"g{n}").read_bytes() == b"g" * (n + 1)
    assert not (local / "missing").exists() and not (local / "missing.part").exists()


def test_put_many_refusals_quota_and_folder(
    make_server: MakeServer, connect: Connect, local: Path
) -> None:
    running = make_server(CAROL)
    home = running.home(CAROL.name)
    (home / "taken").mkdir()
    paths = make_files(local / "up", 6, 1000)
    big = local / "up" / "huge.bin"
    big.write_bytes(b"h" * 2_000_000)  # over carol's 1M quota
    pairs = [(p.name, str(p)) for p in paths[:3]]
    pairs += [("huge.bin", str(big)), ("taken", str(paths[3])), ("no/such/dir/x", str(paths[4]))]
    pairs += [(paths[5].name, str(paths[5])), ("gone", str(local / "not-here"))]
    conn = connect(running, CAROL.name, CAROL.password)
    outcomes = list(conn.put_many(pairs))
    codes = [o.error.code if isinstance(o.error, RemoteError) else o.error for o in outcomes]
    assert codes[:3] == [None, None, None]
    assert codes[3:6] == [ErrorCode.QUOTA_EXCEEDED, ErrorCode.IS_DIRECTORY, ErrorCode.NOT_FOUND]
    assert codes[6] is None and isinstance(outcomes[7].error, LocalError)
    assert "not-here" in str(outcomes[7].error)
    for path in [*paths[:3], paths[5]]:
        assert (home / path.name).read_bytes() == path.read_bytes()
    assert not (home / "huge.bin").exists() and temp_files(home) == []
    used = sum(p.stat().st_size for p in [*paths[:3], paths[5]])
    assert conn.quota().used == used  # no reservation left behind


def test_stopping_early_withdraws_what_is_in_flight(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    paths = make_files(local / "up", 40)
    conn = client()
    outcomes = conn.put_many([(p.name, str(p)) for p in paths])
    first = next(outcomes)
    assert first.result is not None
    outcomes.close()  # the caller stops: offers still in flight are withdrawn
    stored = sorted(p.name for p in server.alice_home.iterdir())
    assert stored == [p.name for p in paths[: len(stored)]]  # a prefix, each complete
    for name in stored:
        assert (server.alice_home / name).read_bytes() == (local / "up" / name).read_bytes()
    assert temp_files(server.alice_home) == []
    assert conn.quota().used == sum((server.alice_home / n).stat().st_size for n in stored)
    downloads = conn.get_many([(p.name, str(local / p.name)) for p in paths[:20]])
    next(downloads)
    downloads.close()  # files on the way are received and thrown away
    assert conn.pwd() == "/"
    assert not list(local.glob("*.part"))


def test_withdraw_mismatch_and_send_without_offer(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    session = raw()
    session.login()
    assert session.call("window") == Message("window", ("ok", "64", str(64 * 1024 * 1024)))
    session.send(Message("offer", ("a", "5")), Message("offer", ("b", "5")))
    assert session.recv() == Message("offer", ("ready", "5"))
    assert session.recv() == Message("offer", ("ready", "5"))
    assert len(temp_files(server.alice_home)) == 2  # reserved, invisible
    session.request("send", "abort")
    assert error_of(session.recv())[1:] == (461, "upload aborted: /a")
    session.send_raw(session.frame("send") + b"hello" + session.frame("send", "digest", "0" * 64))
    assert error_of(session.recv())[1] == 460
    assert not (server.alice_home / "a").exists() and not (server.alice_home / "b").exists()
    assert temp_files(server.alice_home) == []
    assert error_of(session.call("get", "nothing"))[1] == ErrorCode.NOT_FOUND  # in step
    session.request("send", "abort")  # nothing to withdraw: refused, the session goes on
    assert error_of(session.recv())[1:] == (409, "send without a ready offer")
    session.request("send")  # data may follow that belongs to nothing: refused and closed
    assert error_of(session.recv())[1] == ErrorCode.BAD_STATE
    assert session.is_closed_by_server()


def test_small_window_holds_no_more(make_server: MakeServer, connect: Connect, local: Path) -> None:
    running = make_server(CAROL, pipeline_files=2, pipeline_bytes=10_000)
    home = running.home(CAROL.name)
    session = RawSession(running.port)
    try:
        session.login(CAROL.name, CAROL.password)
        assert session.call("window") == Message("window", ("ok", "2", "10000"))
        session.send(*(Message("offer", (f"o{n}", "100")) for n in range(3)))
        assert session.recv() == Message("offer", ("ready", "100"))
        assert session.recv() == Message("offer", ("ready", "100"))
        assert error_of(session.recv())[1] == ErrorCode.BAD_STATE  # the window is full
        assert len(temp_files(home)) == 2
        session.send_raw(
            session.frame("send")
            + b"z" * 100
            + session.frame("send", "digest", digest_of(b"z" * 100))
        )
        assert session.recv() == Message("send", ("ok", "100", digest_of(b"z" * 100)))
        assert session.call("offer", "big", "20000") == Message(
            "offer",
            ("error", "409", "pipeline window full: 2 files, 10000 bytes in flight at most"),
        )
    finally:
        session.close()
    # The real client keeps to the window and still moves everything.
    paths = make_files(local / "w", 9, 3000)
    conn = connect(running, CAROL.name, CAROL.password)
    assert all(o.result for o in conn.put_many([(p.name, str(p)) for p in paths]))
    for path in paths:
        assert (home / path.name).read_bytes() == path.read_bytes()
    sent: list[int] = []
    real_send = conn.channel.send

    def counting(*messages: Message) -> None:
        sent.append(sum(m.command == "fetch" for m in messages))
        real_send(*messages)

    conn.channel.send = counting  # type: ignore[method-assign]
    down = local / "wd"
    down.mkdir()
    assert all(o.result for o in conn.get_many([(p.name, str(down / p.name)) for p in paths]))
    batches = [n for n in sent if n]
    assert batches[0] == 2 and max(batches) <= 2 and sum(batches) == len(paths)  # 2 in flight


def test_one_file_exchange_on_the_same_session(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    paths = make_files(local / "m", 3)
    conn = client()
    assert all(o.result for o in conn.put_many([(p.name, str(p)) for p in paths]))
    conn.put(str(paths[0]), "single")  # the old exchange, between batches
    done = conn.get("single", str(local / "single"))
    assert done.blake3 == digest_of(paths[0].read_bytes())
    assert all(o.result for o in conn.get_many([("single", str(local / "again"))]))
    assert (local / "again").read_bytes() == paths[0].read_bytes()


def test_old_server_gets_one_file_at_a_time(
    server: RunningServer, client: ClientFactory, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server without ``window`` (405): get_many/put_many fall back to get/put."""
    paths = make_files(local / "o", 4)
    conn: FileTransferClient = client()
    real_call = conn._call

    def no_window(command: str, *args: str) -> Message:
        return real_call("nosuchcommand" if command == "window" else command, *args)

    monkeypatch.setattr(conn, "_call", no_window)
    outcomes = list(conn.put_many([(p.name, str(p)) for p in paths] + [("x/y", str(paths[0]))]))
    assert [o.error is None for o in outcomes] == [True] * 4 + [False]
    back = list(conn.get_many([(p.name, str(local / (p.name + ".b"))) for p in paths]))
    assert all(o.result for o in back)


def test_mget_mput_cli_json(server: RunningServer, run_cli: RunCli, local: Path) -> None:
    paths = make_files(local, 3, 500)
    put = run_cli("--json", "-c", "mput " + " ".join(p.name for p in paths))
    assert put.returncode == 0, put.stderr
    events = [json.loads(line) for line in put.stdout.splitlines()]
    assert [e["event"] for e in events] == ["put"] * 3
    assert [e["remote"] for e in events] == [p.name for p in paths]
    for path in paths:
        path.unlink()
    got = run_cli("--json", "-c", f"mget {paths[0].name} nope {paths[2].name}")
    assert got.returncode != 0
    events = [json.loads(line) for line in got.stdout.splitlines()]
    assert [e["event"] for e in events] == ["get", "error", "get", "error"]
    assert events[1]["code"] == 404 and "nope" in events[1]["text"]
    assert (local / paths[0].name).read_bytes() == (server.alice_home / paths[0].name).read_bytes()
    assert not (local / "nope").exists()
    assert "nope" in got.stderr


def test_worked_example_of_protocol_md(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    """docs/PROTOCOL.md 5.4's example, frame by frame."""
    doc = (Path(__file__).parent.parent / "docs" / "PROTOCOL.md").read_text()
    example = doc.split("### 5.4")[1].split("Worked example")[1].split("```")[1]
    data = {"abc": b"abc", "hello": b"hello", "second file\\n": b"second file\n"}
    session = raw()
    session.login()
    for line in example.strip().splitlines():
        side, _, text = line.partition(": ")
        if side == "C":
            payload = data.get(text)
            session.send_raw(payload if payload is not None else encode_frame(text.encode()))
        elif text in data:
            assert session.recv_file(len(data[text])) == data[text]
        else:
            assert session.recv() == Message.parse(text.encode()), text
    assert (server.alice_home / "c.txt").read_bytes() == b"second file\n"


def test_one_upload_aborted_mid_data_others_complete(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    """A local file that shrinks while it is sent: padded, ``send|abort``, 461; nothing stored."""
    paths = make_files(local / "s", 5)
    shrinking = local / "s" / "shrinks.bin"
    shrinking.write_bytes(b"s" * 2_000_000)
    pairs = [(p.name, str(p)) for p in paths[:2]]
    pairs += [("shrinks.bin", str(shrinking))]
    pairs += [(p.name, str(p)) for p in paths[2:]]

    class Shrink:
        def start(self, total: int, done: int) -> None:
            pass

        def update(self, count: int) -> None:
            with shrinking.open("r+b") as handle:
                handle.truncate(1000)

        def close(self) -> None:
            pass

    conn = client()
    outcomes = list(conn.put_many(pairs, lambda name: Shrink() if name == str(shrinking) else None))
    assert isinstance(outcomes[2].error, LocalError)
    assert "shrank" in str(outcomes[2].error) and "shrinks.bin" in str(outcomes[2].error)
    assert [o.error is None for o in outcomes] == [True, True, False, True, True, True]
    assert not (server.alice_home / "shrinks.bin").exists()
    for path in paths:
        assert (server.alice_home / path.name).read_bytes() == path.read_bytes()
    assert temp_files(server.alice_home) == []
    assert conn.pwd() == "/"


def test_download_digest_mismatch_names_the_file(
    server: RunningServer, client: ClientFactory, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that arrive changed (one flipped here, as the client sees them): 460, no file."""
    for n in range(4):
        (server.alice_home / f"d{n}").write_bytes(b"d" * 5000)
    conn = client()
    real = conn.channel.recv_file
    calls = []

    def corrupting(sink: object, size: int, hasher: object, progress: object = None) -> None:
        calls.append(size)

        class Flip:
            def update(self, data: bytes | memoryview) -> None:
                hasher.update(b"X" + bytes(data)[1:])  # type: ignore[attr-defined]

        real(sink, size, Flip() if len(calls) == 2 else hasher, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(conn.channel, "recv_file", corrupting)
    outcomes = list(conn.get_many([(f"d{n}", str(local / f"d{n}")) for n in range(4)]))
    assert isinstance(outcomes[1].error, RemoteError)
    assert outcomes[1].error.code == ErrorCode.DIGEST_MISMATCH and "d1" in outcomes[1].error.text
    assert not (local / "d1").exists() and not (local / "d1.part").exists()
    assert [(local / f"d{n}").exists() for n in range(4)] == [True, False, True, True]


def test_mget_mput_cli_text_and_folders(
    server: RunningServer, run_cli: RunCli, local: Path
) -> None:
    paths = make_files(local / "src", 3, 200)
    (server.alice_home / "dest").mkdir()
    names = " ".join(f"src/{p.name}" for p in paths)
    put = run_cli("-c", f"mput -d dest {names}")
    assert put.returncode == 0, put.stderr
    for path in paths:
        assert (server.alice_home / "dest" / path.name).read_bytes() == path.read_bytes()
        assert f"dest/{path.name} <- src/{path.name}" in put.stdout
    (local / "back").mkdir()
    got = run_cli("-c", f"mget -d back dest/{paths[0].name} dest/gone dest/{paths[1].name}")
    assert got.returncode == 1
    assert "remote: no such file or folder: dest/gone" in got.stderr
    assert "mget: 1 of 3 files failed" in got.stderr
    assert (local / "back" / paths[1].name).read_bytes() == paths[1].read_bytes()
    assert run_cli("-c", "mget").returncode != 0


def test_mget_mput_patterns_times_folder_and_a_failure(
    server: RunningServer, run_cli: RunCli, local: Path
) -> None:
    """The one mget/mput: patterns (quoted: a name), -p, -d, one failed file among others."""
    paths = make_files(local / "src", 4, 300)
    old = 1_600_000_000
    for path in paths:
        os.utime(path, (old, old))
    (local / "src" / "star*.bin").write_bytes(b"literal")
    (server.alice_home / "up").mkdir()
    put = run_cli("--json", "-c", "mput -p -d up src/f*.bin src/gone.bin 'src/star*.bin'")
    assert put.returncode == 1
    events = [json.loads(line) for line in put.stdout.splitlines()]
    assert [e["event"] for e in events] == ["put"] * 4 + ["error", "put", "error"]
    assert "src/gone.bin" in events[4]["text"]
    assert events[-1]["text"] == "mput: 1 of 6 files failed"
    home = server.alice_home / "up"
    assert sorted(p.name for p in home.iterdir()) == [p.name for p in paths] + ["star*.bin"]
    assert all(int((home / p.name).stat().st_mtime) == old for p in paths)
    (local / "back").mkdir()
    got = run_cli("-c", "mget -p -d back up/f00[0-2].bin up/nope")
    assert got.returncode == 1
    assert "remote: no such file or folder: up/nope" in got.stderr
    assert "mget: 1 of 4 files failed" in got.stderr
    for path in paths[:3]:
        copy = local / "back" / path.name
        assert copy.read_bytes() == path.read_bytes() and int(copy.stat().st_mtime) == old
    assert not (local / "back" / paths[3].name).exists()
    assert run_cli("-c", "mget -d nowhere up/f000.bin").returncode != 0


def test_copy_files_goes_pipelined(
    server: RunningServer, client: ClientFactory, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_files (under mirror, mget, get -r) moves several files pipelined, not one by one."""
    from ftpclient.copying import copy_files

    paths = make_files(local / "p", 5)
    conn = client()

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a single-file transfer")

    monkeypatch.setattr(conn, "get", refused)
    monkeypatch.setattr(conn, "put", refused)
    up = copy_files(conn, "put", [(str(p), p.name) for p in paths], preserve=True)
    assert [r.remote for r in up.files] == [p.name for p in paths] and not up.mtime_failures
    (local / "q").mkdir()
    down = copy_files(conn, "get", [(p.name, str(local / "q")) for p in paths], preserve=True)
    assert [Path(r.local).read_bytes() for r in down.files] == [p.read_bytes() for p in paths]
