"""Shared fixtures for the end-to-end tests: real servers on 127.0.0.1, port 0.

* ``users_file`` / ``homes``: a users file made with ``add_user`` (bcrypt rounds 4)
  holding ``alice`` and ``bob``, and the home root under ``tmp_path``.
* ``server``: an in-process :class:`FileTransferServer` in a daemon thread.
* ``client``: a factory of real :class:`FileTransferClient` objects (alice by default).
* ``raw``: a factory of raw protocol sessions (a socket plus a :class:`Channel`)
  for what the client library will not send.
* ``run_cli``: the ``ftpclient`` command line as a subprocess against ``server``.
* ``ftpserver_cli`` / ``server_process``: the ``ftpserver`` command line as a subprocess.
* ``make_server`` / ``connect``: servers for chosen users with quotas and rights
  (issue 3), and logged-in clients to any server; ``tree_digests``,
  ``tree_state``, ``bytes_on_disk`` and ``partial_file`` look at homes on disk.
* ``make_configured_server``: a factory of in-process servers with chosen settings (limits,
  timeouts, TLS, ...); ``write_users_file`` writes users with extra keys (rates).
* ``kill_mid_transfer`` / ``run_and_kill`` / ``start_script``: client scripts
  (``STOPPING_CLIENT``, ``STALLED_PUT``) stopped mid-transfer for a test to SIGKILL.

Every server these fixtures start (``server``, ``make_server``, ``start_server``,
``make_configured_server``, ``server_process``) sits behind a
:class:`~rechunk.RechunkProxy` that re-chunks both directions at random, and its
``port`` is the proxy's: every end-to-end test talks through it.  The server's
own port is ``direct_port``.  ``FTP_TEST_DIRECT=1`` turns the proxy off for a
run; a test that needs a direct connection says so with ``@pytest.mark.direct``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import pytest
import yaml
from rechunk import RechunkProxy
from s3service import s3_settings, seaweed  # noqa: F401  (fixtures for every module)

from ftpclient.client import FileTransferClient
from ftpproto.channel import Channel
from ftpproto.digest import new_hasher
from ftpproto.errors import ConnectionClosed
from ftpproto.framing import encode_frame
from ftpproto.messages import Message, request
from ftpserver.config import Settings
from ftpserver.server import FileTransferServer
from ftpserver.users import add_user, hash_password, load_users

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ALICE = "alice"
ALICE_PASSWORD = "alice-secret-1"
BOB = "bob"
BOB_PASSWORD = "b0b|pass%word 2"  # a separator and an escape character on the wire
CLIENT_TIMEOUT = 10.0
SUBPROCESS_TIMEOUT = 30.0
TEMP_PREFIX = ".ftp-upload-"
OLD_VERSION = b"the older version that must survive\n" * 100  # what a failed upload must not touch

# -- the re-chunking proxy in front of every server --------------------------------

# On by default, in every run (CI too); FTP_TEST_DIRECT=1 connects straight to the servers.
PROXY_ALL = os.environ.get("FTP_TEST_DIRECT", "").strip().lower() not in ("1", "true", "yes")


class _ProxySwitch:
    """Whether the servers started for the running test get a proxy (set per test)."""

    on = PROXY_ALL


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "direct: connect to the test servers without the re-chunking proxy"
    )
    _write_bytecode()


def _write_bytecode() -> None:
    """Compile our packages once, so the servers and clients the tests start load bytecode.

    With ``PYTHONDONTWRITEBYTECODE`` set (as on the CI machines) nothing would
    ever write it, and each of the hundreds of processes the suite starts
    would compile our modules again (0.05-0.3 s each).
    """
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("ftpproto", "ftpfiles", "ftpserver", "ftpclient"):
        compileall.compile_dir(str(root / package), quiet=2)


@pytest.fixture(autouse=True, scope="session")
def _client_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``$XDG_CACHE_HOME`` in a temporary folder: the clients' digest caches stay out of ``~``."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(autouse=True)
def _proxy_switch(request: pytest.FixtureRequest) -> Iterator[None]:
    """Sets the switch for the test: off with FTP_TEST_DIRECT=1 or a ``direct`` mark."""
    _ProxySwitch.on = PROXY_ALL and request.node.get_closest_marker("direct") is None
    yield
    _ProxySwitch.on = PROXY_ALL


def front(port: int, proxied: bool | None = None) -> tuple[int, RechunkProxy | None]:
    """``(port to hand out, proxy)``: a new RechunkProxy before ``port``, or ``port`` itself."""
    if not (_ProxySwitch.on if proxied is None else proxied):
        return port, None
    proxy = RechunkProxy(port)
    return proxy.port, proxy


def digest_of(data: bytes) -> str:
    """The protocol's file digest of ``data`` in hex (BLAKE3, from ``ftpproto.digest``)."""
    hasher = new_hasher()
    hasher.update(data)
    return hasher.hexdigest()


def file_digest_of(path: Path) -> str:
    """The protocol's file digest of the file at ``path``, in hex."""
    return digest_of(path.read_bytes())


def temp_files(folder: Path) -> list[Path]:
    """The server's temporary upload files anywhere under ``folder``."""
    return sorted(p for p in folder.rglob(f"{TEMP_PREFIX}*"))


class OsView:
    """Stands in for the ``os`` module inside one module: chosen calls replaced, the rest real."""

    def __init__(self, **replaced: Callable[..., Any]) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def subprocess_env(password: str | None = None) -> dict[str, str]:
    """An environment for ``python -m ftpclient/ftpserver`` that finds this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("FTPCLIENT_PASSWORD", None)
    if password is not None:
        env["FTPCLIENT_PASSWORD"] = password
    return env


# -- clients killed mid-transfer -----------------------------------------------

# A library client whose monitor, once LIMIT bytes went by (either way), prints
# "MOVED <bytes>" and sleeps, for the test to SIGKILL it.
STOPPING_CLIENT = textwrap.dedent(
    """
    import sys, time
    from ftpclient.client import FileTransferClient

    port, user, password, command, remote, local, limit = sys.argv[1:8]

    class StopAfterLimit:
        seen = 0

        def start(self, total, done):
            pass

        def update(self, count):
            self.seen += count
            if self.seen >= int(limit):
                print("MOVED", self.seen, flush=True)
                time.sleep(120)

        def close(self):
            pass

    client = FileTransferClient("127.0.0.1", int(port), timeout=60)
    client.login(user, password)
    if command == "put":
        client.put(local, remote, StopAfterLimit())
    else:
        client.get(remote, local, StopAfterLimit())
    print("FINISHED", flush=True)
    """
)

# A raw client that starts an upload of LOCAL to REMOTE, sends its first COUNT
# bytes, prints "SENT <count>" and sleeps, for the test to SIGKILL it.
STALLED_PUT = textwrap.dedent(
    """
    import socket, sys, time
    from ftpproto.channel import Channel
    from ftpproto.messages import request

    port, user, password, local, remote, count = sys.argv[1:7]
    data = open(local, "rb").read()
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=60)
    channel = Channel(sock)
    channel.send(request("login", user, password))
    channel.recv().expect("login", "ok", 1)
    channel.send(request("put", remote, str(len(data))))
    channel.recv().expect("put", "ready", 1)
    sock.sendall(data[: int(count)])
    print("SENT", count, flush=True)
    time.sleep(120)
    """
)


def start_script(tmp_path: Path, script: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``script`` with ``args``; return it and its first line of output ("" after 20 s)."""
    path = tmp_path / f"script-{abs(hash(script)) % 10_000}.py"
    path.write_text(script)
    proc = subprocess.Popen(
        [sys.executable, str(path), *args],
        cwd=tmp_path,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout = proc.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return proc, lines.get(timeout=20).strip()
    except queue.Empty:
        return proc, ""


def run_and_kill(tmp_path: Path, script: str, *args: str) -> str:
    """Run ``script`` with ``args``; SIGKILL it after its first line of output; return the line."""
    proc, line = start_script(tmp_path, script, *args)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, f"the script ended by itself: {line!r} {err}"
    assert line, f"the script printed nothing: {err}"
    return line


def add_settings(config: Path, settings: dict[str, object]) -> None:
    """Append ``key: value`` lines to a server settings file."""
    with config.open("a") as handle:
        handle.writelines(f"{key}: {value}\n" for key, value in settings.items())


def across_two_servers(
    tmp_path: Path, one: FileTransferClient, two: FileTransferClient, one_port: int, data: bytes
) -> Path:
    """A put of ``f.bin`` through ``one`` fetched whole through ``two``; then a put of
    ``g.bin`` through ``one_port`` killed after 7 MiB, until ``two`` sees 5 MiB of it kept.

    The local file holding ``data`` (for the resume the caller makes).
    """
    source = tmp_path / "f.bin"
    source.write_bytes(data)
    one.put(str(source), "f.bin")
    assert two.get("f.bin", str(tmp_path / "got.bin")).blake3 == digest_of(data)
    assert (tmp_path / "got.bin").read_bytes() == data
    line = run_and_kill(
        tmp_path, STALLED_PUT, str(one_port), ALICE, ALICE_PASSWORD, str(source), "g.bin",
        str(7 * 1024 * 1024),
    )  # fmt: skip
    assert line == f"SENT {7 * 1024 * 1024}"
    # The finished part (5 MiB or a little more), kept by the first server, seen by the second.
    assert wait_until(lambda: two.partial("g.bin") >= 5 * 1024 * 1024, timeout=30)
    return source


def kill_mid_transfer(
    tmp_path: Path, port: int, command: str, remote: str, local: Path, limit: int
) -> int:
    """SIGKILL a library client (alice) once LIMIT bytes of a get or put went by; the bytes."""
    line = run_and_kill(
        tmp_path,
        STOPPING_CLIENT,
        *(str(port), ALICE, ALICE_PASSWORD, command, remote, str(local), str(limit)),
    )
    word, _, count = line.partition(" ")
    assert word == "MOVED", f"the client did not get going: {line!r}"
    return int(count)


# -- users and homes ----------------------------------------------------------


@pytest.fixture
def homes(tmp_path: Path) -> Path:
    """The home root (one folder per user below it)."""
    root = tmp_path / "homes"
    root.mkdir()
    return root


@pytest.fixture
def users_file(tmp_path: Path, homes: Path) -> Path:
    """A users file with alice and bob (bcrypt rounds 4), homes created."""
    path = tmp_path / "users.yaml"
    add_user(path, homes, ALICE, ALICE_PASSWORD, rounds=4)
    add_user(path, homes, BOB, BOB_PASSWORD, rounds=4)
    return path


@pytest.fixture
def local(tmp_path: Path) -> Path:
    """A local folder for the client side of transfers."""
    folder = tmp_path / "local"
    folder.mkdir()
    return folder


# -- the in-process server ------------------------------------------------------


@dataclass
class RunningServer:
    """A server serving in a daemon thread, with the paths the tests look at."""

    server: FileTransferServer
    port: int
    homes: Path
    users_file: Path
    thread: threading.Thread
    direct_port: int = 0  # the server's own port (``port`` is the proxy's, if there is one)
    proxy: RechunkProxy | None = None

    @property
    def alice_home(self) -> Path:
        return self.homes / ALICE

    @property
    def bob_home(self) -> Path:
        return self.homes / BOB

    def home(self, name: str) -> Path:
        """The home folder of user ``name``."""
        return self.homes / name

    def assert_serving(self) -> None:
        """A fresh client can still connect, log in and ask pwd."""
        with FileTransferClient(HOST, self.port, timeout=CLIENT_TIMEOUT) as fresh:
            assert fresh.login(ALICE, ALICE_PASSWORD) == ALICE, "fresh login failed"
            assert fresh.pwd() == "/", "fresh session does not start at /"
            fresh.quit()
        assert self.thread.is_alive(), "the serve_forever thread died"


@pytest.fixture
def server(users_file: Path, homes: Path) -> Iterator[RunningServer]:
    """A real FileTransferServer on 127.0.0.1, port 0, serving in a daemon thread."""
    running = start_server(users_file, homes)
    try:
        yield running
    finally:
        stop_server(running)


ClientFactory = Callable[..., FileTransferClient]


@pytest.fixture
def client(server: RunningServer) -> Iterator[ClientFactory]:
    """A factory: ``client()`` is a FileTransferClient logged in as alice.

    ``client(user, password)`` logs in as someone else, ``client(login=False)``
    only connects.  Every client made is closed on teardown.
    """
    made: list[FileTransferClient] = []

    def make(
        user: str = ALICE, password: str = ALICE_PASSWORD, *, login: bool = True
    ) -> FileTransferClient:
        conn = FileTransferClient(HOST, server.port, timeout=CLIENT_TIMEOUT)
        made.append(conn)
        if login:
            assert conn.login(user, password) == user
        return conn

    yield make
    for conn in made:
        conn.close()


# -- raw protocol sessions ------------------------------------------------------


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    """The next ``count`` bytes of ``sock`` (fewer only at the end of the stream).

    A loop, not ``MSG_WAITALL``: a socket with a timeout is non-blocking
    underneath, and there ``MSG_WAITALL`` returns what has arrived.
    """
    data = b""
    while len(data) < count:
        part = sock.recv(count - len(data))
        if not part:
            break
        data += part
    return data


class _Sink:
    """Keeps what it is given, in ``into``."""

    def __init__(self, into: bytearray) -> None:
        self.into = into

    def write(self, data: bytes | memoryview) -> None:
        self.into += data


class RawSession:
    """A socket and a Channel for sending what the client library would not."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.channel = Channel(self.sock)
        self.farewell: Message | None = None  # a timed-out server's last word

    def send(self, *messages: Message) -> None:
        """Send messages (several in one write)."""
        self.channel.send(*messages)

    def request(self, command: str, *args: str) -> None:
        """Send one request."""
        self.channel.send(request(command, *args))

    def frame(self, command: str, *args: str) -> bytes:
        """The framed bytes of a request, for sending by hand."""
        return encode_frame(request(command, *args).encode())

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendall(data)

    def recv(self) -> Message:
        """The next message from the server."""
        return self.channel.recv()

    def recv_raw(self, count: int) -> bytes:
        """The next ``count`` bytes as they are (fewer only at the end of the stream)."""
        return recv_exactly(self.sock, count)

    def recv_file(self, size: int) -> bytes:
        """The ``size`` bytes of file data that follow a ``ready`` (read through the channel)."""
        received = bytearray()
        self.channel.recv_file(_Sink(received), size, new_hasher())
        return bytes(received)

    def call(self, command: str, *args: str) -> Message:
        """Send a request and return the next message."""
        self.request(command, *args)
        return self.recv()

    def login(self, user: str = ALICE, password: str = ALICE_PASSWORD) -> None:
        """Log in and check the reply."""
        reply = self.call("login", user, password)
        assert reply == Message("login", ("ok", user)), f"login failed: {reply}"

    def is_closed_by_server(self, timeout: float = 5.0) -> bool:
        """Whether the server closed the connection (EOF or reset) within ``timeout``.

        The error a timed-out server sends before it closes (``408``) is read
        and kept in :attr:`farewell`; anything else sent means "not closed".
        """
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if self.sock.recv(1, socket.MSG_PEEK) == b"":
                    return True
                message = self.channel.recv()
            except (ConnectionResetError, ConnectionClosed):
                return True
            except TimeoutError:
                return False
            if message.command != "error" or message.fields[:2] != ("error", "408"):
                return False
            self.farewell = message

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@pytest.fixture
def raw(server: RunningServer) -> Iterator[Callable[[], RawSession]]:
    """A factory of raw sessions to ``server`` (not logged in); closed on teardown."""
    made: list[RawSession] = []

    def make() -> RawSession:
        session = RawSession(server.port)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close()


def error_of(reply: Message) -> tuple[str, int, str]:
    """``(command, code, text)`` of an error reply; fails the test for anything else."""
    assert reply.status == "error", f"expected an error reply, got {reply}"
    assert len(reply.fields) == 3, f"malformed error reply {reply}"
    return reply.command, int(reply.fields[1]), reply.fields[2]


# -- the ftpclient command line -------------------------------------------------


class CliResult(NamedTuple):
    """What a command-line run produced."""

    returncode: int
    stdout: str
    stderr: str


def run_command(
    args: Sequence[str],
    *,
    cwd: Path,
    password: str | None = None,
    stdin: str | None = None,
    timeout: float = SUBPROCESS_TIMEOUT,
) -> CliResult:
    """Run ``python ARGS`` and return its exit status and output."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=subprocess_env(password),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


RunCli = Callable[..., CliResult]


@pytest.fixture
def run_cli(server: RunningServer, local: Path) -> RunCli:
    """``run_cli(*args)`` runs ``ftpclient --port PORT --user alice ARGS`` in ``local``.

    Keywords: ``password`` (FTPCLIENT_PASSWORD, alice's by default), ``stdin``,
    ``user`` (None leaves out --user), ``port`` (None leaves out --port).
    """

    def run(
        *args: str,
        password: str | None = ALICE_PASSWORD,
        stdin: str | None = None,
        user: str | None = ALICE,
        port: int | None = server.port,
    ) -> CliResult:
        head: list[str] = ["-m", "ftpclient", "--host", HOST]
        if port is not None:
            head += ["--port", str(port)]
        if user is not None:
            head += ["--user", user]
        return run_command([*head, *args], cwd=local, password=password, stdin=stdin)

    return run


# -- the ftpserver command line -------------------------------------------------


@pytest.fixture
def server_config(tmp_path: Path) -> Path:
    """A server settings file: cheap bcrypt, short login delay."""
    path = tmp_path / "server.yaml"
    path.write_text("bcrypt_rounds: 4\nlogin_failure_delay: 0.05\nlog_level: DEBUG\n")
    return path


RunFtpserver = Callable[..., CliResult]


@pytest.fixture
def ftpserver_cli(tmp_path: Path) -> RunFtpserver:
    """``ftpserver_cli(*args, stdin=...)`` runs ``python -m ftpserver ARGS`` to completion."""

    def run(*args: str, stdin: str | None = None) -> CliResult:
        return run_command(["-m", "ftpserver", *args], cwd=tmp_path, stdin=stdin)

    return run


@dataclass
class ServerProcess:
    """A ``python -m ftpserver serve`` subprocess that printed its listening line."""

    proc: subprocess.Popen[str]
    port: int  # the proxy's port, if there is one
    lines: list[str] = field(default_factory=list)  # stdout lines up to "listening on"
    log: Path | None = None
    direct_port: int = 0  # the port the process listens on
    proxy: RechunkProxy | None = None


class _ServerPopen(subprocess.Popen):  # type: ignore[type-arg]
    """A Popen whose proxy goes when the process is seen to have exited.

    Once ``wait()`` or ``poll()`` reports the exit, the proxy stops listening,
    so a test that then connects is refused just as by the process itself.
    """

    proxy: RechunkProxy | None = None

    def _exited(self) -> None:
        if self.returncode is not None and self.proxy is not None:
            self.proxy.close()

    def wait(self, timeout: float | None = None) -> int:
        status = super().wait(timeout)
        self._exited()
        return int(status)

    def poll(self) -> int | None:
        status = super().poll()
        self._exited()
        return status


def _read_lines(stream: IO[str], out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line.rstrip("\n"))
    out.put(None)


@pytest.fixture
def server_process(tmp_path: Path, server_config: Path) -> Iterator[Callable[..., ServerProcess]]:
    """A factory: start ``ftpserver serve --port 0 --users U --home H --config C``.

    Waits for the ``listening on HOST:PORT`` line and returns the port and the
    lines printed before it.  Every process started is terminated on teardown.
    """
    started: list[_ServerPopen] = []

    def start(users: Path, home: Path, *extra: str) -> ServerProcess:
        log = tmp_path / f"serve-{len(started)}.log"
        args = [sys.executable, "-m", "ftpserver", "serve", "--port", "0"]
        args += ["--users", str(users), "--home", str(home), "--config", str(server_config)]
        with log.open("w") as log_handle:
            proc = _ServerPopen(
                [*args, *extra],
                cwd=tmp_path,
                env=subprocess_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_handle,
                text=True,
            )
        started.append(proc)
        assert proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
        seen: list[str] = []
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no 'listening on' line; stdout so far: {seen}"
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, (
                f"server exited ({proc.wait()}) before listening; stdout: {seen}; "
                f"log: {log.read_text()}"
            )
            if line.startswith("listening on "):
                host, _, port_text = line.removeprefix("listening on ").rpartition(":")
                assert host == HOST, f"listening line names {host!r}, not {HOST}"
                assert port_text.isdigit() and int(port_text) > 0, f"bad port in {line!r}"
                port, proxy = front(int(port_text))
                proc.proxy = proxy
                return ServerProcess(proc, port, seen, log, int(port_text), proxy)
            seen.append(line)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.proxy is not None:
            proc.proxy.close()


# -- servers with chosen users, quotas and rights (issue 3) ----------------------


@dataclass(frozen=True)
class Account:
    """A user for ``make_server``; ``quota`` and ``perms`` as written in users.yaml."""

    name: str
    password: str
    quota: str | None = None
    perms: str | None = None


MakeServer = Callable[..., RunningServer]


@pytest.fixture
def s3_server(
    s3_settings: dict[str, object],  # noqa: F811 (the fixture of that name)
    server_config: Path,
    server_process: Callable[..., ServerProcess],
    users_file: Path,
    homes: Path,
) -> Callable[[], ServerProcess]:
    """A factory: the real server (two workers) with ``storage: s3`` on the test's
    SeaweedFS prefix; call it again for a restart on the same store."""
    add_settings(server_config, {"workers": 2, **s3_settings})
    return lambda: server_process(users_file, homes)


def start_server(
    users_file: Path, homes: Path, *, proxied: bool | None = None, **changes: object
) -> RunningServer:
    """Start a FileTransferServer (port 0) for ``users_file`` in a daemon thread.

    The settings are those of the ``server`` fixture, with ``changes`` applied.
    It sits behind a RechunkProxy if the switch says so (or ``proxied``).
    The caller stops it with :func:`stop_server`.
    """
    settings = Settings(
        host=HOST,
        port=0,
        users=users_file,
        home=homes,
        login_failure_delay=0.05,
        fsync_uploads=False,
        idle_timeout=30,
    ).replace(**changes)
    srv = FileTransferServer(settings, load_users(users_file, homes))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    port, proxy = front(srv.address[1], proxied)
    return RunningServer(srv, port, homes, users_file, thread, srv.address[1], proxy)


def stop_server(running: RunningServer) -> None:
    """Stop a server started by :func:`start_server` (and its proxy)."""
    running.server.shutdown()
    running.server.server_close()
    running.thread.join(timeout=5)
    if running.proxy is not None:
        running.proxy.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[MakeServer]:
    """A factory: ``make_server(Account(...), ...)`` serves exactly those users.

    Each server gets its own users file (written with ``add_user``, bcrypt
    rounds 4, with each account's quota and perms) and home root under
    ``tmp_path``; ``populate`` (a callable taking the home root) runs before
    the server starts, so the quota book measures what it wrote.  Keyword
    arguments change the settings.  Every server is stopped on teardown.
    """
    started: list[RunningServer] = []

    def make(
        *accounts: Account,
        populate: Callable[[Path], None] | None = None,
        **changes: object,
    ) -> RunningServer:
        base = tmp_path / f"server-{len(started)}"
        homes = base / "homes"
        homes.mkdir(parents=True)
        users = base / "users.yaml"
        for account in accounts:
            add_user(
                users,
                homes,
                account.name,
                account.password,
                rounds=4,
                quota=account.quota,
                perms=account.perms,
            )
        if populate is not None:
            populate(homes)
        running = start_server(users, homes, **changes)
        started.append(running)
        return running

    yield make
    for running in started:
        stop_server(running)


Connect = Callable[[RunningServer, str, str], FileTransferClient]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """A factory: ``connect(server, user, password)`` is a logged-in client; closed on teardown."""
    made: list[FileTransferClient] = []

    def make(running: RunningServer, user: str, password: str) -> FileTransferClient:
        conn = FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT)
        made.append(conn)
        assert conn.login(user, password) == user
        return conn

    yield make
    for conn in made:
        conn.close()


def tree_digests(folder: Path) -> dict[str, str]:
    """``relative path -> digest`` of each regular file under ``folder`` (links not followed)."""
    found: dict[str, str] = {}
    for top, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(top) / name
            if path.is_file() and not path.is_symlink():
                found[path.relative_to(folder).as_posix()] = file_digest_of(path)
    return found


def tree_state(folder: Path, *, times: bool = True) -> dict[str, tuple[object, ...]]:
    """Everything under ``folder`` (itself included), for before/after comparisons.

    Files: content digest, size, inode and (with ``times``) mtime; folders:
    (with ``times``) mtime; symlinks: their target.  Nothing is followed.
    """
    state: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(folder):
        for name in [".", *dirs, *files]:
            path = Path(top) if name == "." else Path(top) / name
            key = path.relative_to(folder).as_posix()
            st = path.lstat()
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif path.is_dir():
                state[key] = ("dir", st.st_mtime_ns if times else 0)
            else:
                state[key] = (
                    "file",
                    file_digest_of(path),
                    st.st_size,
                    st.st_ino,
                    st.st_mtime_ns if times else 0,
                )
    return state


def bytes_on_disk(home: Path) -> int:
    """Bytes of regular files under ``home`` (partial uploads included, links not followed)."""
    total = 0
    for top, _dirs, files in os.walk(home):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            if not name.startswith(TEMP_PREFIX) and (st.st_mode & 0o170000) == 0o100000:
                total += st.st_size
    return total


def partial_file(home: Path, virtual: str) -> Path:
    """Where the server keeps the partial upload of ``virtual`` (an absolute virtual path)."""
    # The name is the SHA-256 of the virtual path (LocalStorage._partial), not a file digest.
    return home / ".ftp-partial" / hashlib.sha256(virtual.encode("utf-8")).hexdigest()


# -- a throttling, connection-dropping TCP proxy --------------------------------


class ThrottleProxy:
    """A TCP proxy on 127.0.0.1, port 0, in front of ``target_port``.

    Each direction of each connection is forwarded in chunks of at most
    ``chunk`` bytes, with a pause after each so that it moves at most ``rate``
    bytes per second (None: no cap), which makes a loopback transfer last
    long enough for a progress bar or a Ctrl-C.  With ``drop_after`` the first
    connection only is cut (both sides shut down) once that many bytes went
    through it in either direction; later connections are left alone.
    """

    def __init__(
        self,
        target_port: int,
        rate: float | None = None,
        drop_after: int | None = None,
        chunk: int = 16 * 1024,
    ) -> None:
        self.target_port = target_port
        self.rate = rate
        self.drop_after = drop_after
        self.chunk = chunk
        self.connections = 0
        self.dropped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window so the client cannot park a whole upload in buffers.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.listener.bind((HOST, 0))
        self.listener.listen(8)
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                index = self.connections
                self.connections += 1
                self._sockets += [downstream, upstream]
            pair = (downstream, upstream)
            moved = [0]  # bytes through this connection, both directions
            drop = self.drop_after if index == 0 else None
            for source, dest in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(
                    target=self._pump, args=(source, dest, pair, moved, drop), daemon=True
                ).start()

    def _pump(
        self,
        source: socket.socket,
        dest: socket.socket,
        pair: tuple[socket.socket, socket.socket],
        moved: list[int],
        drop: int | None,
    ) -> None:
        try:
            while True:
                data = source.recv(self.chunk)
                if not data:
                    break
                if drop is not None:
                    with self._lock:
                        room = drop - moved[0]
                        moved[0] += len(data)
                    if room <= len(data):
                        if room > 0:
                            dest.sendall(data[:room])
                        self.dropped.set()
                        break
                dest.sendall(data)
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        """Stop listening and cut every connection."""
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


ProxyFactory = Callable[..., ThrottleProxy]
THROTTLE_RATE = 2 * 1024 * 1024  # bytes per second through a throttling proxy


@pytest.fixture
def proxy(server: RunningServer) -> Iterator[ProxyFactory]:
    """A factory: ``proxy(rate=..., drop_after=...)`` is a ThrottleProxy in front of ``server``."""
    made: list[ThrottleProxy] = []

    def make(rate: float | None = THROTTLE_RATE, drop_after: int | None = None) -> ThrottleProxy:
        made.append(ThrottleProxy(server.port, rate, drop_after))
        return made[-1]

    yield make
    for item in made:
        item.close()


# -- an isolated environment for ftpclient processes ----------------------------


@dataclass
class ClientEnv:
    """Environment variables for ``python -m ftpclient`` with its own home and config."""

    env: dict[str, str]
    home: Path  # $HOME: the history file goes here
    config_home: Path  # $XDG_CONFIG_HOME

    @property
    def config_file(self) -> Path:
        return self.config_home / "ftpclient" / "config.yaml"

    @property
    def history_file(self) -> Path:
        return self.home / ".ftpclient_history"

    def write_config(self, text: str) -> Path:
        """Write the client's config.yaml; return its path."""
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text, encoding="utf-8")
        return self.config_file


@pytest.fixture
def client_env(tmp_path: Path) -> ClientEnv:
    """alice's password, HOME and XDG_CONFIG_HOME under ``tmp_path``, TERM=xterm, colours on."""
    home = tmp_path / "client-home"
    config_home = tmp_path / "client-config"
    home.mkdir()
    config_home.mkdir()
    env = subprocess_env(ALICE_PASSWORD)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(config_home), TERM="xterm")
    for name in ("NO_COLOR", "COLUMNS", "LINES", "INPUTRC"):
        env.pop(name, None)
    return ClientEnv(env, home, config_home)


# -- daemon features (issue 5): servers with chosen settings ----------------------


def write_users_file(
    path: Path, homes: Path, users: dict[str, tuple[str, dict[str, object]]], rounds: int = 4
) -> Path:
    """Write a users file: ``{name: (password, extra keys such as upload_rate)}``.

    The homes are created; the passwords are stored as bcrypt hashes of ``rounds``.
    """
    entries = {
        name: {"password": hash_password(password, rounds), **extra}
        for name, (password, extra) in users.items()
    }
    path.write_text(yaml.safe_dump({"users": entries}, sort_keys=True))
    for name in users:
        (homes / name).mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def make_configured_server(users_file: Path, homes: Path) -> Iterator[Callable[..., RunningServer]]:
    """A factory: ``make_configured_server(**settings)`` starts a FileTransferServer on 127.0.0.1:0.

    The defaults are those of ``server`` (alice and bob from ``users_file``,
    short login delay, no fsync); keywords override any :class:`Settings` field,
    e.g. ``make_configured_server(max_sessions_per_ip=2, users=other_file)``.  Every
    server started is shut down, its sessions interrupted, on teardown.
    """
    started: list[RunningServer] = []

    def make(**overrides: object) -> RunningServer:
        fields: dict[str, object] = {
            "host": HOST,
            "port": 0,
            "users": users_file,
            "home": homes,
            "login_failure_delay": 0.05,
            "fsync_uploads": False,
            "idle_timeout": 30,
        }
        fields.update(overrides)
        settings = Settings(**fields)  # type: ignore[arg-type]
        srv = FileTransferServer(settings, load_users(settings.users, settings.home))
        thread = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        thread.start()
        port, proxy = front(srv.address[1])
        running = RunningServer(
            srv, port, settings.home, settings.users, thread, srv.address[1], proxy
        )
        started.append(running)
        return running

    yield make
    for running in started:
        running.server.shutdown()
        for session in running.server.sessions.snapshot():
            session.interrupt()
        running.server.server_close()
        running.thread.join(timeout=5)
        if running.proxy is not None:
            running.proxy.close()
