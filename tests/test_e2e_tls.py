"""End to end: TLS for the whole connection, with certificates made by trustme.

* A client trusting the server's CA transfers files byte-identical, as a
  library and on the command line (``--cafile``).
* A certificate from another CA, or one for another host name, is refused:
  ``ssl.SSLCertVerificationError`` in the library, exit 2 and one line on the
  command line (also with ``--tls`` and only the system's CAs).
* A plain-TCP client against the TLS server (and a TLS client against a plain
  server) fails at once and cleanly; a silent client is cut off after
  ``request_timeout``; the server keeps serving and holds no session slot.
* ``serve`` takes ``tls_cert``/``tls_key`` from server.yaml.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    CliResult,
    RawSession,
    RunningServer,
    ServerProcess,
    digest_of,
    file_digest_of,
    run_command,
    wait_until,
)

from ftpclient.client import FileTransferClient, tls_context
from ftpproto.errors import ErrorCode, ProtocolError, RemoteError

pytestmark = pytest.mark.timeout(60)

MakeServer = Callable[..., RunningServer]


@dataclass
class Pki:
    """PEM files: the server's certificate chain and key, and CA files for clients."""

    cert: Path  # issued for 127.0.0.1 by ``ca``
    key: Path
    ca: Path  # the CA that issued ``cert``
    other_ca: Path  # an unrelated CA
    other_host_cert: Path  # issued by ``ca`` for other.example only
    other_host_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()

    def write(cert: trustme.LeafCert, name: str) -> tuple[Path, Path]:
        chain, key = folder / f"{name}.pem", folder / f"{name}.key"
        for index, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(str(chain), append=index > 0)
        cert.private_key_pem.write_to_path(str(key))
        return chain, key

    cert, key = write(ca.issue_cert(HOST), "server")
    other_cert, other_key = write(ca.issue_cert("other.example"), "other-host")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    return Pki(cert, key, folder / "ca.pem", folder / "other-ca.pem", other_cert, other_key)


@pytest.fixture
def tls_server(make_configured_server: MakeServer, pki: Pki) -> RunningServer:
    return make_configured_server(tls_cert=pki.cert, tls_key=pki.key, request_timeout=2)


def tls_client(running: RunningServer, cafile: Path) -> FileTransferClient:
    return FileTransferClient(HOST, running.port, timeout=10, tls=tls_context(str(cafile)))


def assert_no_sessions(running: RunningServer) -> None:
    srv = running.server
    assert wait_until(lambda: not srv.sessions.snapshot() and srv.limiter.count == 0), (
        f"sessions left: {srv.sessions.snapshot()}, slots: {srv.limiter.count}"
    )


def assert_tls_serving(running: RunningServer, pki: Pki) -> None:
    with tls_client(running, pki.ca) as conn:
        assert conn.login(ALICE, ALICE_PASSWORD) == ALICE
        assert conn.pwd() == "/"
        conn.quit()
    assert running.thread.is_alive()


def run_client(running_port: int, cwd: Path, *args: str) -> CliResult:
    return run_command(
        ["-m", "ftpclient", "--host", HOST, "--port", str(running_port), "--user", ALICE, *args],
        cwd=cwd,
        password=ALICE_PASSWORD,
        timeout=20,
    )


def one_error_line(result: CliResult) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    return lines[0]


# -- the right CA ---------------------------------------------------------------------


def test_transfer_over_tls_is_byte_identical(
    tls_server: RunningServer, pki: Pki, local: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = local / "up.bin"
    source.write_bytes(data)
    with tls_client(tls_server, pki.ca) as conn:
        sock = conn.channel.sock
        assert isinstance(sock, ssl.SSLSocket), "the client did not use TLS"
        assert sock.version() in ("TLSv1.2", "TLSv1.3"), sock.version()
        assert conn.login(ALICE, ALICE_PASSWORD) == ALICE
        sent = conn.put(str(source), "up.bin")
        got = conn.get("up.bin", str(local / "down.bin"))
        conn.quit()
    assert sent.blake3 == got.blake3 == digest_of(data)
    assert file_digest_of(tls_server.alice_home / "up.bin") == digest_of(data), (
        "stored bytes differ"
    )
    assert file_digest_of(local / "down.bin") == digest_of(data), "downloaded bytes differ"
    assert_no_sessions(tls_server)


def test_cli_with_cafile_transfers(tls_server: RunningServer, pki: Pki, local: Path) -> None:
    data = os.urandom(200_000)
    (local / "cli.bin").write_bytes(data)
    result = run_client(
        tls_server.port, local, "--cafile", str(pki.ca), "-q",
        "-c", "put cli.bin; get cli.bin back.bin",
    )  # fmt: skip
    assert result.returncode == 0, result
    assert file_digest_of(tls_server.alice_home / "cli.bin") == digest_of(data)
    assert file_digest_of(local / "back.bin") == digest_of(data)


# -- refused certificates ----------------------------------------------------------------


def test_certificate_from_another_ca_is_refused(tls_server: RunningServer, pki: Pki) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(tls_server, pki.other_ca)
    assert_no_sessions(tls_server)
    assert_tls_serving(tls_server, pki)


def test_certificate_for_another_host_is_refused(
    make_configured_server: MakeServer, pki: Pki
) -> None:
    running = make_configured_server(tls_cert=pki.other_host_cert, tls_key=pki.other_host_key)
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        tls_client(running, pki.ca)
    assert "127.0.0.1" in str(refused.value) or "mismatch" in str(refused.value), refused.value
    assert_no_sessions(running)
    # The same certificate is fine for the name it was issued for (the CA is right).
    context = tls_context(str(pki.ca))
    with (
        socket.create_connection((HOST, running.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="other.example") as tls,
    ):
        assert tls.version() is not None


def test_cli_refuses_a_wrong_ca(tls_server: RunningServer, pki: Pki, local: Path) -> None:
    line = one_error_line(
        run_client(tls_server.port, local, "--cafile", str(pki.other_ca), "-c", "pwd")
    )
    assert "certificate" in line, line
    assert_tls_serving(tls_server, pki)


def test_cli_refuses_a_certificate_for_another_host(
    make_configured_server: MakeServer, pki: Pki, local: Path
) -> None:
    running = make_configured_server(tls_cert=pki.other_host_cert, tls_key=pki.other_host_key)
    line = one_error_line(run_client(running.port, local, "--cafile", str(pki.ca), "-c", "pwd"))
    assert "certificate" in line, line


def test_cli_tls_with_system_cas_refuses_a_private_ca(
    tls_server: RunningServer, local: Path
) -> None:
    line = one_error_line(run_client(tls_server.port, local, "--tls", "-c", "pwd"))
    assert "certificate" in line, line


# -- mismatched clients and silent ones ----------------------------------------------------


def test_plain_client_against_tls_server_fails_cleanly(tls_server: RunningServer, pki: Pki) -> None:
    started = time.monotonic()
    with (
        FileTransferClient(HOST, tls_server.port, timeout=10) as plain,
        pytest.raises((ConnectionError, ProtocolError)),
    ):
        plain.login(ALICE, ALICE_PASSWORD)
    assert time.monotonic() - started < 3, "the plain client waited for a timeout"
    assert_no_sessions(tls_server)
    assert_tls_serving(tls_server, pki)


def test_tls_client_against_plain_server_fails_cleanly(
    make_configured_server: MakeServer, pki: Pki
) -> None:
    running = make_configured_server()
    started = time.monotonic()
    with pytest.raises((ConnectionError, ssl.SSLError)):
        tls_client(running, pki.ca)
    assert time.monotonic() - started < 3, "the TLS client waited for a timeout"
    assert_no_sessions(running)
    running.assert_serving()


def test_silent_client_is_cut_off_during_the_handshake(tls_server: RunningServer, pki: Pki) -> None:
    """Connect and send nothing: the handshake gives up after request_timeout (2 s)."""
    session = RawSession(tls_server.port)
    try:
        started = time.monotonic()
        assert session.is_closed_by_server(6), "a silent client kept its connection"
        waited = time.monotonic() - started
        assert 1.5 <= waited <= 4, f"closed after {waited:.2f} s with request_timeout 2"
    finally:
        session.close()
    assert_no_sessions(tls_server)
    assert_tls_serving(tls_server, pki)


def test_a_connection_in_its_handshake_holds_a_session_slot(
    make_configured_server: MakeServer, pki: Pki
) -> None:
    """With one session per address, a silent handshake takes the slot: the next gets 421."""
    running = make_configured_server(
        tls_cert=pki.cert, tls_key=pki.key, request_timeout=2, max_sessions_per_ip=1
    )
    silent = RawSession(running.port)
    try:
        assert wait_until(lambda: running.server.limiter.count == 1), "the handshake took no slot"
        with pytest.raises(RemoteError) as refused, tls_client(running, pki.ca) as conn:
            conn.login(ALICE, ALICE_PASSWORD)
        assert refused.value.code == ErrorCode.TOO_MANY_SESSIONS, refused.value
        assert silent.is_closed_by_server(6), "a silent client kept its connection"
    finally:
        silent.close()
    assert_no_sessions(running)
    assert_tls_serving(running, pki)


def test_a_silent_handshake_gives_way_when_out_of_descriptors(
    make_configured_server: MakeServer, pki: Pki
) -> None:
    """Out of descriptors, a connection stuck in its handshake for a second is evicted."""
    running = make_configured_server(tls_cert=pki.cert, tls_key=pki.key, request_timeout=30)
    silent = RawSession(running.port)
    try:
        assert wait_until(lambda: len(running.server.sessions.snapshot()) == 1)
        time.sleep(1.2)  # older than a real client takes for its handshake and login
        make_room = running.server.gate.make_room  # what accept does when out of descriptors
        assert make_room is not None and make_room(), "nothing was evicted"
        assert silent.is_closed_by_server(5), "the silent handshake kept its connection"
    finally:
        silent.close()
    assert_no_sessions(running)
    assert_tls_serving(running, pki)


# -- serve with TLS in server.yaml -----------------------------------------------------------


def test_serve_with_tls_from_the_config(
    tmp_path: Path,
    pki: Pki,
    server_config: Path,
    users_file: Path,
    homes: Path,
    server_process: Callable[..., ServerProcess],
    local: Path,
) -> None:
    with server_config.open("a") as handle:
        handle.write(f"tls_cert: {pki.cert}\ntls_key: {pki.key}\n")
    running = server_process(users_file, homes)
    data = b"over TLS from the command line\n" * 1000
    (local / "t.txt").write_bytes(data)
    result = run_client(running.port, local, "--cafile", str(pki.ca), "-q", "-c", "put t.txt")
    assert result.returncode == 0, result
    assert (homes / ALICE / "t.txt").read_bytes() == data
    plain = run_client(running.port, local, "-c", "pwd")
    one_error_line(plain)
    running.proc.terminate()
    assert running.proc.wait(timeout=10) == 0


def test_pipelined_batch_over_tls(tls_server: RunningServer, pki: Pki, local: Path) -> None:
    """put_many/get_many (issue 15) over TLS: small files in one write, a big one streamed."""
    sizes = [0, 1, 5000, 300_000, 2 * 1024 * 1024 + 3]
    for n, size in enumerate(sizes):
        (local / f"p{n}").write_bytes(os.urandom(size))
    with tls_client(tls_server, pki.ca) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        up = list(conn.put_many([(f"p{n}", str(local / f"p{n}")) for n in range(len(sizes))]))
        down = list(conn.get_many([(f"p{n}", str(local / f"q{n}")) for n in range(len(sizes))]))
        conn.quit()
    assert all(o.result for o in up) and all(o.result for o in down)
    for n in range(len(sizes)):
        assert file_digest_of(local / f"q{n}") == file_digest_of(local / f"p{n}")
        assert file_digest_of(tls_server.alice_home / f"p{n}") == file_digest_of(local / f"p{n}")
