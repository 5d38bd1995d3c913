"""End to end: the ``workers`` setting, with ``python -m ftpserver serve`` as a subprocess.

With ``workers: 2`` (one case ``workers: 0``, one per CPU) the supervisor
forks workers that accept on one listening socket; real clients check that

* several clients at once transfer through the workers, byte for byte;
* what the sessions share lives once, in the supervisor: the quota book with
  its upload reservations, the session limits and the ban list;
* a worker killed with SIGKILL is replaced, and the session slots and the
  upload reservation it held are given back;
* SIGHUP applies new limits (a broken file is refused, the old limits stay);
  SIGTERM stops every worker, leaving no partial upload visible;
* ``check-config`` and ``serve`` refuse a ``workers`` out of range.

The workers are the server's child processes (/proc/PID/task/*/children).
Where it matters which worker serves a session, the test chooses: it stops
the other workers (SIGSTOP) while the session connects and logs in, so the
kernel can only hand the connection to the one left running.  The last tests
are unit tests of :class:`ftpserver.state.owner.StateOwner`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    HOST,
    RawSession,
    RunFtpserver,
    ServerProcess,
    bytes_on_disk,
    digest_of,
    error_of,
    file_digest_of,
    run_command,
    temp_files,
    wait_until,
    write_users_file,
)
from test_e2e_lifecycle import (
    Background,
    assert_nothing_partial_visible,
    assert_problems,
    check_config,
    configure,
    connect,
    log_text,
    login_result,
    serve_refusal,
    sigterm_and_wait,
    start_slow_upload,
    wait_for_log,
)

# logged_in and refused_raw only use the ``port`` of the server they are given.
from test_e2e_limits import logged_in, refused_raw, timed_parallel

from ftpclient.client import FileTransferClient, Quota
from ftpproto.errors import ConnectionClosed, ErrorCode, RemoteError
from ftpserver.config import Settings
from ftpserver.jail import TEMP_PREFIX
from ftpserver.state.ledger import Unmeasured, Usage
from ftpserver.state.owner import StateOwner
from ftpserver.state.pipe import remote_shared
from ftpserver.state.shared import LocalState
from ftpserver.state.wire import PipeClient
from ftpserver.users import User

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
CPUS = len(os.sched_getaffinity(0))
WRONG_LOGIN = ("login", ErrorCode.LOGIN_FAILED, "login incorrect")
PER_IP_REFUSAL = (ErrorCode.TOO_MANY_SESSIONS, "too many sessions from your address")

# -- the processes ------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    """The fields of /proc/PID/status (FileNotFoundError once the process is gone)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {
        key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())
    }


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return proc_status(pid)["State"][:1] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def workers_of(running: ServerProcess) -> set[int]:
    """The server's running child processes: its workers."""
    task_root = Path(f"/proc/{running.proc.pid}/task")
    children: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for task in task_root.iterdir():
            with contextlib.suppress(FileNotFoundError):
                children.update(int(pid) for pid in (task / "children").read_text().split())
    return {pid for pid in children if is_running(pid)}


def _bit(signum: signal.Signals) -> int:
    return 1 << (signum - 1)


def is_serving(pid: int) -> bool:
    """Whether a worker got through its start: it ignores SIGINT and a SIGHUP cannot kill it.

    A new worker first has the supervisor's handlers, then the defaults, and
    handles SIGHUP (reloads) again only once it serves.
    """
    try:
        status = proc_status(pid)
    except FileNotFoundError:
        return False
    ignored, caught, blocked = (int(status[key], 16) for key in ("SigIgn", "SigCgt", "SigBlk"))
    hup = _bit(signal.SIGHUP)
    return bool(ignored & _bit(signal.SIGINT)) and bool((ignored | caught | blocked) & hup)


def wait_for_workers(running: ServerProcess, count: int, timeout: float = 10) -> set[int]:
    """Wait until the server has exactly ``count`` workers, all serving; their pids."""
    seen: set[int] = set()

    def check() -> bool:
        seen.clear()
        seen.update(workers_of(running))
        return len(seen) == count and all(is_serving(pid) for pid in seen)

    assert wait_until(check, timeout, 0.05), (
        f"expected {count} serving workers, found {sorted(seen)}\n{log_text(running)}"
    )
    return set(seen)


@pytest.fixture
def start_workers(
    server_config: Path, server_process: Callable[..., ServerProcess], users_file: Path, homes: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """``start_workers(**settings)``: ``ftpserver serve`` with ``workers: 2`` and ``settings``.

    Serves alice and bob (``users_file``, ``homes``) unless ``users``/``home``
    say otherwise; returns once every worker serves.  Call it once per test
    (the settings are appended to the ``server_config`` file).  On teardown
    the server is stopped, and any worker it left behind is killed.
    """
    started: list[ServerProcess] = []

    def start(
        workers: int = 2, users: Path | None = None, home: Path | None = None, **settings: object
    ) -> ServerProcess:
        configure(server_config, workers=workers, **settings)
        running = server_process(users or users_file, home or homes)
        started.append(running)
        wait_for_workers(running, workers or CPUS)
        return running

    yield start
    for running in started:
        workers = workers_of(running)
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGTERM)
            try:
                running.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                running.proc.kill()
                running.proc.wait(timeout=5)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                if is_running(pid):
                    os.kill(pid, signal.SIGKILL)


# -- which worker serves a connection ----------------------------------------------------------


def is_stopped(pid: int) -> bool:
    try:
        return proc_status(pid)["State"].startswith("T")
    except FileNotFoundError:
        return True


@contextlib.contextmanager
def only(running: ServerProcess, pid: int) -> Iterator[None]:
    """Only worker ``pid`` accepts connections meanwhile: the others are stopped (SIGSTOP).

    The kernel gives a new connection to a worker that is waiting on the
    listening socket, so every connection made in the block is served by
    ``pid``, provided it is accepted before the block ends (a logged-in
    session, or one that got a reply, is).
    """
    others = workers_of(running) - {pid}
    try:
        for other in others:
            os.kill(other, signal.SIGSTOP)
        assert wait_until(lambda: all(is_stopped(other) for other in others)), "SIGSTOP"
        yield
    finally:
        for other in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(other, signal.SIGCONT)


def sessions_on(
    running: ServerProcess, pid: int, count: int, open_session: Callable[[], Any] | None = None
) -> list[Any]:
    """``count`` sessions served by worker ``pid`` (alice logged in, by default)."""
    with only(running, pid):
        return [(open_session or (lambda: logged_in(running)))() for _ in range(count)]


def close_all(*sessions: Any) -> None:
    for session in sessions:
        session.close()


# -- 1. transfers ------------------------------------------------------------------------------


def test_transfers_through_two_workers(
    start_workers: Callable[..., ServerProcess], homes: Path, local: Path
) -> None:
    """Six clients at once, three on each worker, put and get files of 0 B, 1 B and 3 MiB."""
    served = os.urandom(2 * MIB + 5)
    for user in (ALICE, BOB):
        (homes / user).mkdir(exist_ok=True)
        (homes / user / "served.bin").write_bytes(served)
    running = start_workers()
    sizes = {"empty.bin": 0, "one.bin": 1, "big.bin": 3 * MIB + 7}
    users = [(ALICE, ALICE_PASSWORD), (ALICE, ALICE_PASSWORD), (BOB, BOB_PASSWORD)] * 2
    for index in range(len(users)):
        (local / f"c{index}" / "back").mkdir(parents=True)
        for name, size in sizes.items():
            (local / f"c{index}" / name).write_bytes(os.urandom(size))
    first, second = sorted(workers_of(running))
    logins = iter(users)
    clients = [
        conn
        for pid in (first, second)
        for conn in sessions_on(running, pid, 3, lambda: logged_in(running, *next(logins)))
    ]

    def session(index: int, conn: FileTransferClient) -> None:
        folder = local / f"c{index}"
        for name in sizes:
            conn.put(str(folder / name), f"c{index}-{name}")
        for name in sizes:
            conn.get(f"c{index}-{name}", str(folder / "back" / name))
        conn.get("served.bin", str(folder / "back" / "served.bin"))
        conn.quit()

    try:
        timed_parallel([lambda i=i, c=c: session(i, c) for i, c in enumerate(clients)])
    finally:
        close_all(*clients)
    for index, (user, _) in enumerate(users):
        folder = local / f"c{index}"
        for name in sizes:
            expected = file_digest_of(folder / name)
            stored = homes / user / f"c{index}-{name}"
            assert file_digest_of(stored) == expected, f"{stored} differs from what was sent"
            assert file_digest_of(folder / "back" / name) == expected, f"c{index}: {name} differs"
        assert file_digest_of(folder / "back" / "served.bin") == digest_of(served)
    assert temp_files(homes) == [], "temporary upload files left"

    with logged_in(running) as alice:
        alice_clients = [i for i, (user, _) in enumerate(users) if user == ALICE]
        expected_names = {"served.bin"} | {f"c{i}-{n}" for i in alice_clients for n in sizes}
        assert [entry.name for entry in alice.ls()] == sorted(expected_names)
        for name, size in sizes.items():
            info = alice.stat(f"c0-{name}", digest=True)
            assert (info.type, info.size) == ("file", size)
            assert info.blake3 == file_digest_of(local / "c0" / name)
        alice.quit()

    # The command-line client, through the same workers.
    (local / "cli.txt").write_bytes(b"from the command line\n")
    result = run_command(
        ["-m", "ftpclient", "--host", HOST, "--port", str(running.port), "--user", BOB, "-q",
         "-c", "put cli.txt; ls; get c2-big.bin cli-big.bin"],
        cwd=local, password=BOB_PASSWORD,
    )  # fmt: skip
    assert result.returncode == 0, result
    assert "c2-big.bin" in result.stdout.split(), result.stdout
    assert (homes / BOB / "cli.txt").read_bytes() == b"from the command line\n"
    assert file_digest_of(local / "cli-big.bin") == file_digest_of(local / "c2" / "big.bin")


def test_listening_line_comes_once_every_worker_serves(
    start_workers: Callable[..., ServerProcess],
) -> None:
    """The supervisor says it listens only after each worker accepts.

    A crowd that connects on seeing the line then finds both workers taking
    connections; before, one worker could take thousands while the other
    was still starting (docs/PERFORMANCE.md, "A crowd that leaves at once").
    Each worker logs before it tells the supervisor, and the supervisor logs
    after it heard from both, so the order in the shared log is the order of
    events.
    """
    running = start_workers()
    lines = log_text(running).splitlines()
    supervisor = next(i for i, line in enumerate(lines) if "with 2 workers" in line)
    serving = {
        found.group(1): i
        for i, line in enumerate(lines)
        if (found := re.search(r"worker (\d+) serving \(pid ", line))
    }
    assert set(serving) == {"0", "1"}, lines
    assert max(serving.values()) < supervisor, lines
    with logged_in(running) as alice:
        assert alice.pwd() == "/"
        alice.quit()


# -- 2. the quota book is shared ----------------------------------------------------------------


def test_quota_is_shared_by_the_workers(
    start_workers: Callable[..., ServerProcess], tmp_path: Path, local: Path
) -> None:
    """8 uploads of 2 MiB at once, 4 on each worker, under a 10 MiB quota: exactly 5 fit.

    With a quota book per worker each worker would let its 4 through.
    """
    homes = tmp_path / "quota-homes"
    users = write_users_file(
        tmp_path / "quota-users.yaml", homes, {ALICE: (ALICE_PASSWORD, {"quota": "10M"})}
    )
    running = start_workers(users=users, home=homes)
    home = homes / ALICE
    sessions = [
        conn for pid in sorted(workers_of(running)) for conn in sessions_on(running, pid, 4)
    ]
    source = local / "two.bin"
    source.write_bytes(os.urandom(2 * MIB))
    outcomes: list[object] = [None] * len(sessions)

    def upload(index: int, conn: FileTransferClient) -> None:
        try:
            outcomes[index] = conn.put(str(source), f"up-{index}.bin")
        except RemoteError as exc:
            outcomes[index] = exc

    try:
        timed_parallel([lambda i=i, c=c: upload(i, c) for i, c in enumerate(sessions)])
        refused = [o for o in outcomes if isinstance(o, RemoteError)]
        fitted = len(sessions) - len(refused)
        assert fitted == 5, f"{fitted} of 8 uploads of 2 MiB fit a 10 MiB quota: {outcomes}"
        assert {error.code for error in refused} == {ErrorCode.QUOTA_EXCEEDED}, refused
        # the other worker's settles are held back up to POST_DELAY: its reservations count
        # until then, so what is left is exact at once, what is used a moment later
        assert sessions[0].quota().available == 0
        seen: list[Quota] = []
        assert wait_until(
            lambda: seen.append(sessions[0].quota()) or seen[-1] == Quota(10 * MIB, 10 * MIB, 0),
            5,
        ), f"the figures last seen: {seen[-1]}"
    finally:
        close_all(*sessions)
    stored = sorted(p.name for p in home.iterdir())
    assert len(stored) == 5, f"in the home: {stored}"
    for name in stored:
        assert file_digest_of(home / name) == file_digest_of(source), f"{name} differs"
    assert bytes_on_disk(home) == 10 * MIB
    assert temp_files(home) == [], "temporary upload files left"


# -- 3. the session limits are shared -------------------------------------------------------------


def assert_login_refused(running: ServerProcess) -> None:
    """A client connecting now gets error 421 at login."""
    with connect(running.port) as extra, pytest.raises(RemoteError) as refused:
        extra.login(BOB, BOB_PASSWORD)
    assert refused.value.code == ErrorCode.TOO_MANY_SESSIONS


def hold_sessions(running: ServerProcess, count: int) -> list[FileTransferClient] | None:
    """``count`` logged-in sessions, or None (all closed) if one was refused with 421."""
    made: list[FileTransferClient] = []
    try:
        for _ in range(count):
            made.append(connect(running.port))
            made[-1].login(ALICE, ALICE_PASSWORD)
    except RemoteError as exc:
        assert exc.code == ErrorCode.TOO_MANY_SESSIONS, exc
        close_all(*made)
        return None
    return made


def wait_to_hold(running: ServerProcess, count: int) -> list[FileTransferClient]:
    """``count`` logged-in sessions, once the server has that many slots free."""
    held: list[list[FileTransferClient]] = []

    def attempt() -> bool:
        sessions = hold_sessions(running, count)
        held.extend([sessions] if sessions is not None else [])
        return sessions is not None

    assert wait_until(attempt, 5, 0.1), f"{count} new sessions were not accepted"
    return held[0]


def test_session_limit_is_shared_by_the_workers(
    start_workers: Callable[..., ServerProcess],
) -> None:
    """max_sessions_per_ip 3: two sessions on one worker and one on the other fill it."""
    running = start_workers(max_sessions_per_ip=3)
    first, second = sorted(workers_of(running))
    held = sessions_on(running, first, 2) + sessions_on(running, second, 1)
    try:
        for pid in (first, second):
            with only(running, pid):
                assert_login_refused(running)
                assert refused_raw(running) == PER_IP_REFUSAL
        for _ in range(2):  # wherever they land
            assert_login_refused(running)
        assert [conn.pwd() for conn in held] == ["/"] * 3, "a refusal disturbed the others"
    finally:
        close_all(*held)
    again = wait_to_hold(running, 3)
    try:
        assert [conn.pwd() for conn in again] == ["/"] * 3
        assert_login_refused(running)
    finally:
        close_all(*again)


# -- 4. a worker killed ---------------------------------------------------------------------------


def test_killed_worker_is_replaced_and_its_slots_given_back(
    start_workers: Callable[..., ServerProcess], tmp_path: Path, local: Path
) -> None:
    homes = tmp_path / "kill-homes"
    users = write_users_file(
        tmp_path / "kill-users.yaml",
        homes,
        {ALICE: (ALICE_PASSWORD, {"quota": "4M", "upload_rate": "256K"}), BOB: (BOB_PASSWORD, {})},
    )
    running = start_workers(users=users, home=homes, max_sessions_per_ip=4)
    home = homes / ALICE
    victim, survivor = sorted(workers_of(running))
    doomed = sessions_on(running, victim, 2)
    kept = sessions_on(running, survivor, 2)
    fresh: list[FileTransferClient] = []
    try:
        # An upload on the victim holds a 3 MiB reservation (256 KiB/s: it would take ~11 s).
        source = local / "big.bin"
        source.write_bytes(os.urandom(3 * MIB))
        upload = Background(lambda: doomed[0].put(str(source), "big.bin"))
        assert wait_until(lambda: any(p.stat().st_size > 0 for p in temp_files(home)), 10)
        assert kept[0].quota() == Quota(0, 4 * MIB, 1 * MIB), "the upload reserved no space"
        assert refused_raw(running) == PER_IP_REFUSAL

        os.kill(victim, signal.SIGKILL)
        upload.join()
        assert upload.error is not None, "the upload on the killed worker succeeded"
        with pytest.raises((ConnectionError, OSError)):
            doomed[1].pwd()
        wait_for_log(running, "ended unexpectedly (signal 9)")
        wait_for_log(running, "left 2 sessions and 1 uploads behind; released")
        assert temp_files(home) == [], "the killed upload's temporary file was left"
        replaced = wait_for_workers(running, 2)
        assert victim not in replaced and survivor in replaced, (victim, survivor, replaced)

        # The survivor's sessions go on; the victim's reservation was given back.
        assert [conn.pwd() for conn in kept] == ["/", "/"]
        (local / "small.bin").write_bytes(b"s" * 1000)
        kept[1].put(str(local / "small.bin"), "small.bin")
        assert kept[0].quota() == Quota(1000, 4 * MIB, 4 * MIB - 1000)
        assert (home / "small.bin").read_bytes() == b"s" * 1000
        assert not (home / "big.bin").exists()

        # The victim's two slots are free again, and only those; the new worker serves.
        (newcomer,) = replaced - {survivor}
        fresh.extend(sessions_on(running, newcomer, 2))
        assert [conn.pwd() for conn in fresh] == ["/", "/"]
        assert refused_raw(running) == PER_IP_REFUSAL
    finally:
        close_all(*doomed, *kept, *fresh)


# -- 5. SIGHUP --------------------------------------------------------------------------------


def test_sighup_applies_new_limits_to_every_worker(
    start_workers: Callable[..., ServerProcess], server_config: Path
) -> None:
    running = start_workers(max_sessions_per_ip=10)
    workers = workers_of(running)
    original = server_config.read_text()

    def write_limit(value: str) -> None:
        server_config.write_text(
            original.replace("max_sessions_per_ip: 10", f"max_sessions_per_ip: {value}")
        )

    def refused_on_each_worker() -> None:
        for pid in sorted(workers):
            with only(running, pid):
                assert_login_refused(running)

    held = [logged_in(running), logged_in(running, BOB, BOB_PASSWORD)]
    try:
        write_limit("2")
        running.proc.send_signal(signal.SIGHUP)
        wait_for_log(running, "reloaded: 2 users")  # once, by the supervisor
        refused_on_each_worker()
        assert [conn.pwd() for conn in held] == ["/", "/"]

        # A broken file is refused (by the supervisor, once); the limit of 2 stays.
        write_limit("lots")
        running.proc.send_signal(signal.SIGHUP)
        wait_for_log(running, "reload refused")
        refusals = [line for line in log_text(running).splitlines() if "reload refused" in line]
        assert len(refusals) == 1 and str(server_config) in refusals[0], refusals
        refused_on_each_worker()
        held.pop().quit()
        held += wait_to_hold(running, 1)
        assert_login_refused(running)
        assert log_text(running).count("reloaded: 2 users") == 1, "the broken file was taken"

        write_limit("3")
        running.proc.send_signal(signal.SIGHUP)
        wait_for_log(running, "reloaded: 2 users", count=2)
        reloads = [line for line in log_text(running).splitlines() if "reloaded:" in line]
        assert all("ftpserver: supervisor: reloaded: 2 users" in line for line in reloads), reloads
        held.append(logged_in(running, BOB, BOB_PASSWORD))
        assert_login_refused(running)
        assert [conn.pwd() for conn in held] == ["/"] * 3
    finally:
        close_all(*held)
    assert workers_of(running) == workers, "a worker was replaced during the reloads"
    assert running.proc.poll() is None, "the server stopped"


def test_reload_does_not_hand_tls_to_a_respawned_worker(
    start_workers: Callable[..., ServerProcess], server_config: Path, tmp_path: Path
) -> None:
    """Started without TLS, the file gains tls_cert/tls_key: a restart-only change.

    A worker started after the reload must still speak plain TCP like its
    siblings (the reload once kept the old ``None`` out and took the new paths).
    """
    running = start_workers()
    cert = trustme.CA().issue_cert(HOST)
    chain, key = tmp_path / "late.pem", tmp_path / "late.key"
    cert.cert_chain_pems[0].write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    configure(server_config, tls_cert=chain, tls_key=key)
    running.proc.send_signal(signal.SIGHUP)
    wait_for_log(running, "supervisor: reloaded: 2 users")
    for index in (0, 1):  # each worker says so at DEBUG, the level of these tests
        wait_for_log(running, f"worker {index}: reloaded")
    restart = "tls_cert, tls_key kept as before: changing them takes a restart"
    assert log_text(running).count(restart) == 1
    victim, survivor = sorted(workers_of(running))
    os.kill(victim, signal.SIGKILL)
    wait_for_log(running, "ended unexpectedly (signal 9)")
    (newcomer,) = wait_for_workers(running, 2) - {survivor}
    for pid in (newcomer, survivor):
        with only(running, pid), logged_in(running) as conn:
            assert conn.pwd() == "/"


def test_sighup_after_a_log_rotation_writes_to_the_new_file(
    start_workers: Callable[..., ServerProcess], server_config: Path, tmp_path: Path
) -> None:
    """With ``log_file``, logrotate moves the file away: every process writes to a new one.

    The main process's "reload refused" (a broken file: the workers get no
    SIGHUP) and a worker's audit line both land in the new file.
    """
    log_file = tmp_path / "server.log"
    running = start_workers(log_file=log_file)
    assert wait_until(lambda: "with 2 workers" in log_file.read_text(), 10)
    rotated = log_file.rename(tmp_path / "server.log.1")
    configure(server_config, max_sessions="lots")
    running.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: log_file.exists() and "reload refused" in log_file.read_text(), 10), (
        rotated.read_text()
    )
    for pid in sorted(workers_of(running)):
        with only(running, pid), logged_in(running) as conn:
            conn.quit()
    assert wait_until(lambda: log_file.read_text().count("login user='alice'") == 2, 10), (
        log_file.read_text()
    )
    assert "reload refused" not in rotated.read_text()
    assert "login user=" not in rotated.read_text()


# -- 6. SIGTERM --------------------------------------------------------------------------------


def test_sigterm_stops_every_worker(
    start_workers: Callable[..., ServerProcess], tmp_path: Path, local: Path
) -> None:
    homes = tmp_path / "rated-homes"
    users = write_users_file(
        tmp_path / "rated-users.yaml",
        homes,
        {ALICE: (ALICE_PASSWORD, {"upload_rate": "64K"}), BOB: (BOB_PASSWORD, {})},
    )
    running = start_workers(users=users, home=homes, shutdown_grace=1)
    workers = workers_of(running)
    home = homes / ALICE
    first, second = sorted(workers)
    (idle,) = sessions_on(running, first, 1, lambda: logged_in(running, BOB, BOB_PASSWORD))
    with only(running, second):
        conn, upload = start_slow_upload(running.port, local, home, 4 * MIB)  # 64 s at 64K/s
    try:
        took = sigterm_and_wait(running, 15)
        upload.join()
        assert upload.error is not None, "the cut-off upload reported success"
        with pytest.raises((ConnectionError, OSError)):
            idle.pwd()
    finally:
        close_all(conn, idle)
    assert 0.8 <= took <= 4, f"exited {took:.2f} s after SIGTERM with shutdown_grace 1"
    assert wait_until(lambda: not any(is_running(pid) for pid in workers), 3), (
        f"workers left running: {[pid for pid in workers if is_running(pid)]}"
    )
    text = log_text(running)  # the stop is announced once; each worker says it at DEBUG
    assert text.count("INFO ftpserver: supervisor: stopping: no new sessions") == 1, text
    for index in (0, 1):
        assert text.count(f"DEBUG ftpserver: worker {index}: stopping: no new") == 1, text
    assert "unexpectedly" not in log_text(running)
    assert_nothing_partial_visible(home)
    with pytest.raises(ConnectionRefusedError):
        connect(running.port)


# -- 7. the ban list is shared -----------------------------------------------------------------


def test_ban_is_shared_by_the_workers(start_workers: Callable[..., ServerProcess]) -> None:
    """ban_failures 3: two failed logins on one worker and one on the other ban the address.

    Then the right password fails on both, as a wrong one.  With a ban list
    per worker neither would have seen three failures.
    """
    running = start_workers(ban_failures=3, ban_window=60, ban_time=60)
    first, second = sorted(workers_of(running))
    sessions: list[RawSession] = []

    def login(user: str, password: str) -> tuple[str, int, str]:
        sessions.append(RawSession(running.port))
        return error_of(sessions[-1].call("login", user, password))

    try:
        with only(running, first):
            assert login(ALICE, "wrong 1") == WRONG_LOGIN
            assert login(BOB, "wrong 2") == WRONG_LOGIN
        with only(running, second):
            assert login("nobody", "wrong 3") == WRONG_LOGIN
            assert login(ALICE, ALICE_PASSWORD) == WRONG_LOGIN, "not banned on this worker"
        with only(running, first):
            assert login(BOB, BOB_PASSWORD) == WRONG_LOGIN, "not banned on this worker"
    finally:
        close_all(*sessions)
    assert not login_result(running.port, ALICE, ALICE_PASSWORD)
    wait_for_log(running, "banned 127.0.0.1 after repeated failed logins")


# -- 8. workers: 0 and out-of-range values -----------------------------------------------------


def test_workers_zero_starts_one_per_cpu(
    start_workers: Callable[..., ServerProcess], homes: Path, local: Path
) -> None:
    running = start_workers(workers=0)
    workers = workers_of(running)
    assert len(workers) == CPUS
    pinned = sorted(proc_status(pid)["Cpus_allowed_list"] for pid in workers)
    assert pinned == sorted(str(cpu) for cpu in os.sched_getaffinity(0)), pinned
    wait_for_log(running, f"with {CPUS} workers")
    data = os.urandom(MIB + 3)
    (local / "up.bin").write_bytes(data)
    with logged_in(running) as conn:
        conn.put(str(local / "up.bin"), "up.bin")
        conn.get("up.bin", str(local / "down.bin"))
        conn.quit()
    assert file_digest_of(homes / ALICE / "up.bin") == digest_of(data)
    assert file_digest_of(local / "down.bin") == digest_of(data)


def test_workers_stop_when_the_main_process_is_gone(
    start_workers: Callable[..., ServerProcess],
) -> None:
    """SIGKILL of the main process: each worker stops at once, its idle session closed.

    Nothing knocks: no new session calls the shared state, so the workers
    learn it from the kernel (the parent-death signal), not from a broken pipe.
    Closing the sessions finds the pipe broken: a log line each, no traceback.
    """
    running = start_workers()
    workers = workers_of(running)

    def direct() -> FileTransferClient:
        # Straight to the server's port: the test proxy gives up once the process is gone.
        conn = FileTransferClient(HOST, running.direct_port, timeout=10)
        conn.login(ALICE, ALICE_PASSWORD)
        return conn

    idle = [session for pid in workers for session in sessions_on(running, pid, 1, direct)]
    running.proc.kill()  # SIGKILL: nothing is passed on to the workers
    running.proc.wait(timeout=5)
    try:
        gone = wait_until(lambda: not any(is_running(pid) for pid in workers), timeout=10)
        assert gone, f"orphaned workers kept serving\n{log_text(running)}"
        for session in idle:
            with pytest.raises((ConnectionClosed, OSError, RemoteError)):
                session.pwd()
        text = log_text(running)
        assert "Traceback" not in text, text
        assert text.count("the main process is gone") == len(workers), text
    finally:
        close_all(*idle)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                if is_running(pid):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("value", [-1, 999])
def test_check_config_refuses_workers_out_of_range(
    ftpserver_cli: RunFtpserver, tmp_path: Path, users_file: Path, homes: Path, value: int
) -> None:
    config = tmp_path / "bad-workers.yaml"
    config.write_text(f"bcrypt_rounds: 4\nworkers: {value}\n")
    status, problems, output = check_config(ftpserver_cli, config, users_file, homes)
    assert status == 1, output
    assert_problems(problems, config, {2: "workers"})
    assert f"workers: {value} is out of range (from 0 to 256)" in problems[0], problems
    if value > 0:
        line = serve_refusal(ftpserver_cli, config, users_file, homes)
        assert f"{config}:2" in line and "workers" in line, line


# -- StateOwner: what a worker holds is given back once ----------------------------------------


@pytest.mark.timeout(10)
def test_state_owner_gives_back_what_a_closed_worker_held(tmp_path: Path) -> None:
    shared = LocalState.create(Settings(max_sessions=0, max_sessions_per_ip=2))
    owner = StateOwner(shared)
    mine, theirs = Pipe()
    thread = owner.attach(mine, 7)
    remote = remote_shared(theirs)
    user = User("carol", b"", tmp_path, quota=1000)
    ip = "10.0.0.1"

    def usage(shared: LocalState) -> Usage:
        return shared.quotas.usage(user.name, user.quota, free)

    assert remote.limiter.acquire(ip) is None
    assert remote.limiter.acquire(ip) is None
    assert remote.limiter.acquire(ip) == "too many sessions from your address"  # holds nothing
    remote.limiter.release(ip)
    temps = [tmp_path / f"{TEMP_PREFIX}{n}" for n in range(3)]
    for temp in temps:
        temp.write_bytes(b"x" * 100)
    free = 10**12
    remote.quotas.record(user.name, 0)  # the storage measured the (empty) home
    kept = remote.quotas.reserve(user.name, user.quota, 300, 0, free, str(temps[0]))
    done = remote.quotas.reserve(user.name, user.quota, 200, 0, free, str(temps[1]))
    remote.quotas.release(done)
    moved = remote.quotas.reserve(user.name, user.quota, 100, 0, free, str(temps[2]))
    # The storage renames temps[2] into place and reports the growth with the reservation.
    os.replace(temps[2], tmp_path / "kept")
    remote.quotas.settle(user.name, 100, user.quota, moved)
    assert usage(shared).used == 100  # the kept file counts, its reservation not
    assert (kept.quota_bytes, usage(shared).reserved, shared.limiter.count) == (
        300, 300, 1,
    )  # fmt: skip
    with pytest.raises(AttributeError):
        PipeClient(theirs).call("limiter", "configure", 0, 0)  # only the listed methods are shared
    theirs.close()  # the worker is gone
    thread.join(5)
    assert not thread.is_alive()
    assert shared.limiter.count == 0, "the slot was not given back (or given back twice)"
    with pytest.raises(Unmeasured):  # given back, then the figures dropped (held-back settles)
        usage(shared)
    assert not temps[0].exists(), "the dead worker's upload file was left"
    assert temps[1].exists(), "a file whose reservation was released was removed"
    assert (tmp_path / "kept").read_bytes() == b"x" * 100
    assert shared.limiter.acquire(ip) is None and shared.limiter.acquire(ip) is None
    assert shared.limiter.acquire(ip) is not None


@pytest.mark.timeout(10)
def test_state_owner_keeps_a_replacement_apart_from_the_worker_it_replaces() -> None:
    # A replacement worker gets the dead one's number, possibly before the dead
    # one's pipe has been seen to close: their holdings must stay apart.
    shared = LocalState.create(Settings(max_sessions=0, max_sessions_per_ip=3))
    owner = StateOwner(shared)
    old_mine, old_theirs = Pipe()
    old_thread = owner.attach(old_mine, 0)
    old = remote_shared(old_theirs)
    assert old.limiter.acquire("10.0.0.2") is None
    assert old.limiter.acquire("10.0.0.2") is None
    new_mine, new_theirs = Pipe()
    new_thread = owner.attach(new_mine, 0)  # the replacement, same number
    new = remote_shared(new_theirs)
    assert new.limiter.acquire("10.0.0.2") is None
    old_theirs.close()  # now the old pipe closes: only its two slots come back
    old_thread.join(5)
    assert shared.limiter.count == 1
    assert new.limiter.acquire("10.0.0.2") is None  # the replacement still works
    assert shared.limiter.count == 2
    new_theirs.close()
    new_thread.join(5)
    assert shared.limiter.count == 0, "the replacement's slots were not given back"


# -- 5. pipelined uploads: the ledger's answers read later, settles posted ------------------------


def test_pipelined_uploads_through_a_worker_keep_the_quota_exact(
    start_workers: Callable[..., ServerProcess], tmp_path: Path, local: Path
) -> None:
    """30 files of 100 KiB offered at once under a 1 MiB quota: the first 10 fit, in order.

    The worker sends each offer's reservation to the supervisor without
    waiting and reads the answers before it says ``offer|ready``: a refused
    offer is answered with its error in its turn, nothing of it is stored,
    and the figures stay exact (every settle, posted without a reply, was
    counted).
    """
    homes = tmp_path / "pipe-homes"
    users = write_users_file(
        tmp_path / "pipe-users.yaml", homes, {ALICE: (ALICE_PASSWORD, {"quota": "1M"})}
    )
    running = start_workers(users=users, home=homes)
    names = [f"f{i:02d}.bin" for i in range(30)]
    for name in names:
        (local / name).write_bytes(os.urandom(100 * 1024))
    with logged_in(running) as conn:
        outcomes = list(conn.put_many([(name, str(local / name)) for name in names]))
        assert [o.remote for o in outcomes] == names
        stored = [o.remote for o in outcomes if o.error is None]
        assert stored == names[:10], stored
        for outcome in outcomes[10:]:
            assert isinstance(outcome.error, RemoteError), outcome
            assert outcome.error.code == ErrorCode.QUOTA_EXCEEDED, outcome
        assert conn.quota() == Quota(10 * 100 * 1024, MIB, MIB - 10 * 100 * 1024)
        # the session goes on: a download, and one more upload that fits
        assert conn.get("f00.bin", str(local / "back.bin")).size == 100 * 1024
        (local / "small.bin").write_bytes(b"s" * 1000)
        assert conn.put(str(local / "small.bin"), "small.bin").size == 1000
        assert conn.quota().used == 10 * 100 * 1024 + 1000
    home = homes / ALICE
    assert sorted(p.name for p in home.iterdir()) == sorted([*names[:10], "small.bin"])
    for name in names[:10]:
        assert file_digest_of(home / name) == file_digest_of(local / name), name
    assert temp_files(home) == [], "temporary upload files left"


def test_pipelined_uploads_without_a_quota_are_all_counted(
    start_workers: Callable[..., ServerProcess], homes: Path, local: Path
) -> None:
    """200 small files through a worker, then overwritten by smaller ones: used = bytes on disk."""
    running = start_workers()
    pairs = []
    for i in range(200):
        (local / f"s{i:03d}.bin").write_bytes(os.urandom(1000 + i))
        pairs.append((f"tree/s{i:03d}.bin", str(local / f"s{i:03d}.bin")))
    with logged_in(running) as conn:
        conn.mkdir("tree")
        assert all(o.error is None for o in conn.put_many(pairs))
        for i in range(0, 200, 2):
            (local / f"s{i:03d}.bin").write_bytes(b"x" * 10)
        assert all(o.error is None for o in conn.put_many(pairs[::2]))
        used = conn.quota().used
    assert used == bytes_on_disk(homes / ALICE)
    assert temp_files(homes / ALICE) == []
