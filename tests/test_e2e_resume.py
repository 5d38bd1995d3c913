"""End to end: resuming interrupted transfers (issue 3).

A client process is SIGKILLed in the middle of a ``get`` or a ``put``; the
transfer is then continued (``reget``/``reput`` on the command line,
``resume=True`` in the library) and gives a byte-identical file while moving
fewer bytes than the whole.  Tampered partial data restarts from zero and
still gives the right file.  Partial uploads are private to their user,
hidden from ``ls``, and swept away when stale, with the quota following.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    STALLED_PUT,
    STOPPING_CLIENT,
    Account,
    ClientFactory,
    Connect,
    MakeServer,
    RawSession,
    RunCli,
    RunningServer,
    bytes_on_disk,
    digest_of,
    file_digest_of,
    kill_mid_transfer,
    partial_file,
    run_and_kill,
    start_script,
    temp_files,
    wait_until,
)

from ftpclient.client import LocalError
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.messages import Message

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


def kill_mid_put(
    tmp_path: Path, port: int, source: Path, remote: str, count: int, user: str = ALICE
) -> None:
    """SIGKILL a raw client after it sent ``count`` bytes of ``source`` to ``remote``."""
    password = ALICE_PASSWORD if user == ALICE else BOB_PASSWORD
    line = run_and_kill(
        tmp_path, STALLED_PUT, str(port), user, password, str(source), remote, str(count)
    )
    assert line == f"SENT {count}", line


# -- get ---------------------------------------------------------------------------------


@pytest.fixture
def big_remote(server: RunningServer) -> bytes:
    """An 8 MiB file in alice's home, ``big.bin``."""
    data = os.urandom(8 * MIB)
    (server.alice_home / "big.bin").write_bytes(data)
    return data


def test_killed_get_leaves_part_then_reget_cli(
    server: RunningServer, big_remote: bytes, run_cli: RunCli, local: Path, tmp_path: Path
) -> None:
    target = local / "big.bin"
    part = local / "big.bin.part"
    received = kill_mid_transfer(tmp_path, server.port, "get", "big.bin", target, 2 * MIB)
    assert not target.exists(), "a truncated file appeared under the real name"
    assert part.is_file(), "no .part file was left"
    kept = part.stat().st_size
    assert received <= kept < len(big_remote), f".part has {kept} bytes"
    assert part.read_bytes() == big_remote[:kept], "the .part file holds other bytes"
    result = run_cli("-c", "reget big.bin")
    assert result.returncode == 0, result
    assert "resumed at" in result.stdout, f"reget did not resume: {result.stdout!r}"
    assert file_digest_of(target) == digest_of(big_remote), "the resumed file differs"
    assert not part.exists(), "the .part file was left after a finished reget"
    assert (server.alice_home / "big.bin").read_bytes() == big_remote


def test_killed_get_then_library_resume(
    server: RunningServer, big_remote: bytes, client: ClientFactory, local: Path, tmp_path: Path
) -> None:
    target = local / "copy.bin"
    kill_mid_transfer(tmp_path, server.port, "get", "big.bin", target, 3 * MIB)
    kept = (local / "copy.bin.part").stat().st_size
    assert not target.exists()
    result = client().get("big.bin", str(target), resume=True)
    assert result.offset == kept > 0, f"resumed at {result.offset}, .part had {kept}"
    assert result.size == len(big_remote) - kept, "more than the missing bytes were moved"
    assert result.blake3 == digest_of(big_remote)
    assert file_digest_of(target) == digest_of(big_remote)
    assert not (local / "copy.bin.part").exists()


def test_get_a_flag_resumes(
    server: RunningServer, big_remote: bytes, run_cli: RunCli, local: Path
) -> None:
    (local / "big.bin.part").write_bytes(big_remote[: 5 * MIB + 17])
    result = run_cli("-c", "get -a big.bin")
    assert result.returncode == 0, result
    assert "resumed at 5.0 MiB" in result.stdout, result.stdout
    assert file_digest_of(local / "big.bin") == digest_of(big_remote)


@pytest.mark.parametrize("where", [0, 1000, -1], ids=["first-byte", "middle", "last-byte"])
def test_tampered_local_part_restarts_from_zero(
    server: RunningServer,
    big_remote: bytes,
    client: ClientFactory,
    local: Path,
    tmp_path: Path,
    where: int,
) -> None:
    target = local / "big.bin"
    kill_mid_transfer(tmp_path, server.port, "get", "big.bin", target, MIB)
    part = local / "big.bin.part"
    data = bytearray(part.read_bytes())
    data[where] ^= 0xFF
    part.write_bytes(bytes(data))
    result = client().get("big.bin", str(target), resume=True)
    assert result.offset == 0, "a tampered .part was continued"
    assert result.size == len(big_remote)
    assert file_digest_of(target) == digest_of(big_remote)
    assert not part.exists()


def test_remote_changed_since_the_part_restarts_from_zero(
    server: RunningServer, big_remote: bytes, client: ClientFactory, local: Path
) -> None:
    (local / "big.bin.part").write_bytes(big_remote[:MIB])
    changed = bytes([big_remote[0] ^ 0xFF]) + big_remote[1:]  # differs whatever the first byte
    (server.alice_home / "big.bin").write_bytes(changed)
    result = client().get("big.bin", str(local / "big.bin"), resume=True)
    assert result.offset == 0
    assert file_digest_of(local / "big.bin") == digest_of(changed)


def test_part_longer_than_the_remote_file_restarts(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    data = os.urandom(100_000)
    (server.alice_home / "small.bin").write_bytes(data)
    (local / "small.bin.part").write_bytes(data + os.urandom(5000))
    result = client().get("small.bin", str(local / "small.bin"), resume=True)
    assert result.offset == 0
    assert file_digest_of(local / "small.bin") == digest_of(data)


def test_reget_of_a_complete_part(
    server: RunningServer, big_remote: bytes, client: ClientFactory, local: Path
) -> None:
    (local / "big.bin.part").write_bytes(big_remote)
    result = client().get("big.bin", str(local / "big.bin"), resume=True)
    assert (result.offset, result.size) == (len(big_remote), 0)
    assert file_digest_of(local / "big.bin") == digest_of(big_remote)


# -- put ---------------------------------------------------------------------------------


@pytest.fixture
def big_local(local: Path) -> Path:
    """A 6 MiB local file, ``big.bin``."""
    path = local / "big.bin"
    path.write_bytes(os.urandom(6 * MIB))
    return path


def wait_partial(conn_factory: ClientFactory, name: str, count: int) -> None:
    conn = conn_factory()
    assert wait_until(lambda: conn.partial(name) == count), (
        f"partial({name}) is {conn.partial(name)}, expected {count}"
    )


def test_killed_put_then_reput_cli(
    server: RunningServer,
    big_local: Path,
    client: ClientFactory,
    run_cli: RunCli,
    tmp_path: Path,
) -> None:
    sent = 2 * MIB + 123
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", sent)
    wait_partial(client, "big.bin", sent)
    home = server.alice_home
    assert not (home / "big.bin").exists(), "a partial upload became visible as the file"
    kept = partial_file(home, "/big.bin")
    assert kept.read_bytes() == big_local.read_bytes()[:sent], "the kept bytes differ"
    assert temp_files(home) == []
    names = [e.name for e in client().ls("/")]
    assert names == [], f"ls shows the partial upload: {names}"
    assert client().stat(".").type == "dir"
    with pytest.raises(RemoteError) as caught:
        client().ls(".ftp-partial")
    assert caught.value.code == ErrorCode.BAD_PATH
    result = run_cli("-c", "reput big.bin")
    assert result.returncode == 0, result
    assert "resumed at 2.0 MiB" in result.stdout, result.stdout
    assert file_digest_of(home / "big.bin") == file_digest_of(big_local)
    assert not kept.exists(), "the partial upload was kept after it was completed"
    assert client().partial("big.bin") == 0
    assert temp_files(home) == []


def test_killed_put_then_library_resume(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    old = b"the old version\n" * 1000
    (server.alice_home / "dir").mkdir()
    (server.alice_home / "dir" / "big.bin").write_bytes(old)
    sent = 4 * MIB
    kill_mid_put(tmp_path, server.port, big_local, "dir/big.bin", sent)
    wait_partial(client, "/dir/big.bin", sent)
    assert (server.alice_home / "dir" / "big.bin").read_bytes() == old, "the old file changed"
    conn = client()
    conn.cd("dir")
    assert conn.partial("big.bin") == sent, "the partial is keyed by the virtual path"
    result = conn.put(str(big_local), "big.bin", resume=True)
    assert result.offset == sent, f"resumed at {result.offset}, expected {sent}"
    assert result.size == big_local.stat().st_size - sent
    assert file_digest_of(server.alice_home / "dir" / "big.bin") == file_digest_of(big_local)
    assert conn.partial("big.bin") == 0
    assert os.listdir(server.alice_home / ".ftp-partial") == []


def test_put_a_flag_resumes(
    server: RunningServer, big_local: Path, run_cli: RunCli, client: ClientFactory
) -> None:
    session = RawSession(server.port)
    session.login()
    size = big_local.stat().st_size
    assert session.call("put", "big.bin", str(size)) == Message("put", ("ready", str(size)))
    session.send_raw(big_local.read_bytes()[:MIB])
    wait_until(lambda: any(p.stat().st_size >= MIB for p in temp_files(server.alice_home)))
    session.close()
    wait_partial(client, "big.bin", MIB)
    result = run_cli("-c", "put -a big.bin")
    assert result.returncode == 0, result
    assert "resumed at 1.0 MiB" in result.stdout, result.stdout
    assert file_digest_of(server.alice_home / "big.bin") == file_digest_of(big_local)


@pytest.mark.parametrize("where", [0, MIB, -1], ids=["first-byte", "middle", "last-byte"])
def test_tampered_server_partial_restarts_from_zero(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path, where: int
) -> None:
    sent = 2 * MIB
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", sent)
    wait_partial(client, "big.bin", sent)
    kept = partial_file(server.alice_home, "/big.bin")
    data = bytearray(kept.read_bytes())
    data[where] ^= 0x55
    kept.write_bytes(bytes(data))
    conn = client()
    result = conn.put(str(big_local), "big.bin", resume=True)
    assert result.offset == 0, "a tampered partial upload was continued"
    assert result.size == big_local.stat().st_size
    assert file_digest_of(server.alice_home / "big.bin") == file_digest_of(big_local)
    assert conn.partial("big.bin") == 0
    assert conn.quota().used == bytes_on_disk(server.alice_home) == big_local.stat().st_size


def test_changed_local_file_restarts_from_zero(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", MIB)
    wait_partial(client, "big.bin", MIB)
    changed = bytearray(big_local.read_bytes())
    changed[10] ^= 1
    big_local.write_bytes(bytes(changed))
    result = client().put(str(big_local), "big.bin", resume=True)
    assert result.offset == 0
    assert file_digest_of(server.alice_home / "big.bin") == digest_of(bytes(changed))


def test_put_without_resume_replaces_the_partial(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", MIB)
    wait_partial(client, "big.bin", MIB)
    conn = client()
    result = conn.put(str(big_local), "big.bin")
    assert result.offset == 0
    assert file_digest_of(server.alice_home / "big.bin") == file_digest_of(big_local)
    assert conn.partial("big.bin") == 0, "a finished upload left its partial behind"
    assert conn.quota().used == bytes_on_disk(server.alice_home) == big_local.stat().st_size


def test_only_the_same_user_can_resume(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    sent = MIB + 1
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", sent)
    wait_partial(client, "big.bin", sent)
    kept = partial_file(server.alice_home, "/big.bin")
    kept_digest = file_digest_of(kept)
    bob = client(BOB, BOB_PASSWORD)
    assert bob.partial("big.bin") == 0, "bob sees alice's partial upload"
    assert bob.partial("/big.bin") == 0
    result = bob.put(str(big_local), "big.bin", resume=True)
    assert result.offset == 0, "bob resumed alice's partial upload"
    assert file_digest_of(server.bob_home / "big.bin") == file_digest_of(big_local)
    assert file_digest_of(kept) == kept_digest, "bob's upload touched alice's partial"
    assert client().partial("big.bin") == sent
    assert not (server.alice_home / "big.bin").exists()


def test_bob_partial_is_not_alices(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", MIB, user=BOB)
    wait_partial(lambda: client(BOB, BOB_PASSWORD), "big.bin", MIB)  # type: ignore[arg-type]
    assert client().partial("big.bin") == 0
    assert not (server.alice_home / ".ftp-partial").exists()


def test_stale_partials_are_swept_and_the_quota_follows(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    conn = client()
    (server.alice_home / "keep.txt").write_bytes(b"k" * 1000)
    kill_mid_put(tmp_path, server.port, big_local, "old.bin", 2 * MIB)
    kill_mid_put(tmp_path, server.port, big_local, "fresh.bin", MIB)
    wait_partial(client, "old.bin", 2 * MIB)
    wait_partial(client, "fresh.bin", MIB)
    used = conn.quota().used
    assert used == bytes_on_disk(server.alice_home) == 1000 + 3 * MIB
    old = partial_file(server.alice_home, "/old.bin")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    srv = server.server
    removed = srv.sweep_partials(max_age=600)
    assert removed == 1
    assert not old.exists(), "the stale partial upload is still there"
    assert partial_file(server.alice_home, "/fresh.bin").stat().st_size == MIB
    assert conn.partial("old.bin") == 0 and conn.partial("fresh.bin") == MIB
    assert conn.quota().used == used - 2 * MIB == bytes_on_disk(server.alice_home)
    assert (server.alice_home / "keep.txt").read_bytes() == b"k" * 1000
    # Nothing is stale any more: a second sweep removes nothing.
    assert srv.sweep_partials(max_age=600) == 0


def test_resume_fields_must_come_together(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    session = raw()
    session.login()
    (server.alice_home / "f").write_bytes(b"f")
    digest = digest_of(b"")
    reply = session.call("get", "f", "0")
    assert reply.status == "error" and reply.fields[1] == "400", reply
    reply = session.call("get", "f", "x", digest)
    assert reply.status == "error" and reply.fields[1] == "400", reply
    reply = session.call("put", "g", "5", "0", "nothex")
    assert reply.status == "error" and reply.fields[1] == "400", reply
    assert not (server.alice_home / "g").exists()
    assert temp_files(server.alice_home) == []


def test_killed_get_keeps_an_older_local_file(
    server: RunningServer, big_remote: bytes, client: ClientFactory, local: Path, tmp_path: Path
) -> None:
    target = local / "big.bin"
    old = b"the older local copy\n" * 500
    target.write_bytes(old)
    kill_mid_transfer(tmp_path, server.port, "get", "big.bin", target, 2 * MIB)
    assert target.read_bytes() == old, "the older local file was truncated or changed"
    assert (local / "big.bin.part").stat().st_size >= 2 * MIB
    result = client().get("big.bin", str(target), resume=True)
    assert result.offset > 0
    assert file_digest_of(target) == digest_of(big_remote)


def test_a_second_download_into_the_same_part_is_refused(
    server: RunningServer, big_remote: bytes, client: ClientFactory, local: Path, tmp_path: Path
) -> None:
    """While one client writes ``big.bin.part``, another's get of it fails and changes nothing."""
    target = local / "big.bin"
    part = local / "big.bin.part"
    first, line = start_script(
        tmp_path,
        STOPPING_CLIENT,
        *(str(server.port), ALICE, ALICE_PASSWORD, "get", "big.bin", str(target), str(2 * MIB)),
    )
    conn = client()
    try:
        assert line.startswith("MOVED"), f"the first download did not get going: {line!r}"
        held = part.read_bytes()
        with pytest.raises(LocalError, match="another download is writing") as caught:
            conn.get("big.bin", str(target))  # would start over: truncate the part to 0
        assert str(part) in str(caught.value)
        assert part.read_bytes() == held == big_remote[: len(held)], "the part was changed"
        assert not target.exists()
        assert conn.pwd() == "/", "the session is out of step"
    finally:
        first.kill()
        first.communicate(timeout=10)
    result = conn.get("big.bin", str(target), resume=True)
    assert result.offset == len(held) > 0
    assert file_digest_of(target) == digest_of(big_remote)
    assert not part.exists()


def test_resumed_upload_interrupted_again_keeps_growing(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    data = big_local.read_bytes()
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", MIB)
    wait_partial(client, "big.bin", MIB)
    session = RawSession(server.port)
    session.login()
    prefix = digest_of(data[:MIB])
    reply = session.call("put", "big.bin", str(len(data)), str(MIB), prefix)
    assert reply == Message("put", ("ready", str(len(data) - MIB), str(MIB))), reply
    session.send_raw(data[MIB : 3 * MIB])
    assert wait_until(
        lambda: any(p.stat().st_size >= 3 * MIB for p in temp_files(server.alice_home))
    ), "the resumed upload does not continue the kept bytes"
    session.close()
    wait_partial(client, "big.bin", 3 * MIB)
    assert partial_file(server.alice_home, "/big.bin").read_bytes() == data[: 3 * MIB]
    result = client().put(str(big_local), "big.bin", resume=True)
    assert result.offset == 3 * MIB
    assert file_digest_of(server.alice_home / "big.bin") == digest_of(data)


def test_resume_offsets_that_do_not_match_start_over(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    data = big_local.read_bytes()
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", MIB)
    wait_partial(client, "big.bin", MIB)
    session = RawSession(server.port)
    session.login()
    # A claimed offset other than what is kept: the upload starts at 0.
    half = MIB // 2
    reply = session.call("put", "big.bin", str(len(data)), str(half), digest_of(data[:half]))
    assert reply == Message("put", ("ready", str(len(data)), "0")), reply
    session.send_raw(data)
    session.request("put", "digest", digest_of(data))
    assert session.recv() == Message("put", ("ok", str(len(data)), digest_of(data)))
    assert file_digest_of(server.alice_home / "big.bin") == digest_of(data)
    assert client().partial("big.bin") == 0
    assert temp_files(server.alice_home) == []


def test_failed_resumed_upload_keeps_nothing(
    server: RunningServer, big_local: Path, client: ClientFactory, tmp_path: Path
) -> None:
    data = big_local.read_bytes()
    kill_mid_put(tmp_path, server.port, big_local, "big.bin", MIB)
    wait_partial(client, "big.bin", MIB)
    session = RawSession(server.port)
    session.login()
    reply = session.call("put", "big.bin", str(len(data)), str(MIB), digest_of(data[:MIB]))
    assert reply == Message("put", ("ready", str(len(data) - MIB), str(MIB))), reply
    session.send_raw(data[MIB:])
    session.request("put", "digest", digest_of(b"something else"))
    reply = session.recv()
    assert reply.status == "error" and reply.fields[1] == "460", reply
    assert not (server.alice_home / "big.bin").exists()
    assert client().partial("big.bin") == 0
    assert temp_files(server.alice_home) == []
    assert client().quota().used == bytes_on_disk(server.alice_home) == 0


def test_upload_cut_after_the_last_byte_is_kept_for_resuming(
    server: RunningServer, big_local: Path, client: ClientFactory
) -> None:
    """Every byte arrived but the connection was lost before the digest: what arrived is kept
    (PROTOCOL.md 5.2/5.3: after a lost connection what arrived is kept for resuming)."""
    data = big_local.read_bytes()
    session = RawSession(server.port)
    session.login()
    assert session.call("put", "big.bin", str(len(data))) == Message(
        "put", ("ready", str(len(data)))
    )
    session.send_raw(data)
    assert wait_until(
        lambda: any(p.stat().st_size == len(data) for p in temp_files(server.alice_home))
    )
    session.close()
    assert wait_until(lambda: temp_files(server.alice_home) == [])
    assert not (server.alice_home / "big.bin").exists()
    conn = client()
    size = len(data)
    kept = conn.partial("big.bin")
    assert kept == size, f"a whole upload that lacked only its digest was lost: {kept} kept"
    result = conn.put(str(big_local), "big.bin", resume=True)
    assert (result.offset, result.size) == (size, 0)
    assert file_digest_of(server.alice_home / "big.bin") == digest_of(data)


def test_upload_stalled_until_the_idle_timeout_is_kept(
    make_server: MakeServer, connect: Connect, local: Path
) -> None:
    running = make_server(Account("kim", "kim pw"), idle_timeout=1, stall_timeout=1)
    home = running.home("kim")
    data = os.urandom(3 * MIB)
    (local / "k.bin").write_bytes(data)
    session = RawSession(running.port)
    session.login("kim", "kim pw")
    assert session.call("put", "k.bin", str(len(data))).status == "ready"
    session.send_raw(data[:MIB])
    # The client stalls; the server gives up after idle_timeout and keeps what arrived.
    assert session.is_closed_by_server(timeout=10), "the stalled upload was not timed out"
    conn = connect(running, "kim", "kim pw")
    assert wait_until(lambda: conn.partial("k.bin") == MIB)
    assert partial_file(home, "/k.bin").read_bytes() == data[:MIB]
    result = conn.put(str(local / "k.bin"), "k.bin", resume=True)
    assert result.offset == MIB
    assert file_digest_of(home / "k.bin") == digest_of(data)


@pytest.mark.parametrize(
    "command, args",
    [
        ("get", (".ftp-partial/{key}",)),
        ("stat", (".ftp-partial/{key}",)),
        ("ls", (".ftp-partial",)),
        ("rm", (".ftp-partial/{key}",)),
        ("rm", (".ftp-partial", "recursive")),
        ("mv", (".ftp-partial/{key}", "stolen.bin")),
        ("mv", ("keep.txt", ".ftp-partial/{key}")),
        ("put", (".ftp-partial/{key}", "3")),
        ("mkdir", ("sub/.ftp-partial",)),
        ("cd", (".ftp-partial",)),
    ],
)
def test_partial_uploads_cannot_be_named(
    server: RunningServer,
    big_local: Path,
    client: ClientFactory,
    raw: Callable[[], RawSession],
    command: str,
    args: tuple[str, ...],
) -> None:
    (server.alice_home / "keep.txt").write_bytes(b"keep")
    session = raw()
    session.login()
    assert session.call("put", "big.bin", "5000").status == "ready"
    session.send_raw(big_local.read_bytes()[:3000])
    session.close()
    wait_partial(client, "big.bin", 3000)
    kept = partial_file(server.alice_home, "/big.bin")
    before = (file_digest_of(kept), sorted(os.listdir(server.alice_home)))
    other = raw()
    other.login()
    reply = other.call(command, *(a.format(key=kept.name) for a in args))
    assert reply.status == "error" and reply.fields[1] == "415", reply
    assert (file_digest_of(kept), sorted(os.listdir(server.alice_home))) == before


def test_the_sweeper_thread_removes_stale_partials(
    make_server: MakeServer, connect: Connect, local: Path
) -> None:
    running = make_server(Account("lee", "lee pw"), partial_upload_ttl=1)
    running.server.start_sweeper()
    home = running.home("lee")
    conn = connect(running, "lee", "lee pw")
    session = RawSession(running.port)
    session.login("lee", "lee pw")
    assert session.call("put", "s.bin", str(MIB)).status == "ready"
    session.send_raw(bytes(200_000))
    session.close()
    assert wait_until(lambda: partial_file(home, "/s.bin").exists())
    assert wait_until(lambda: not partial_file(home, "/s.bin").exists(), timeout=10), (
        "a partial upload older than partial_upload_ttl was not swept"
    )
    assert conn.partial("s.bin") == 0
    assert conn.quota().used == bytes_on_disk(home) == 0
