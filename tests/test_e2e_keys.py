"""End to end: key login on the wire (``challenge``, ``login_key``), against real servers.

* A key in users.yaml logs in with the library client, also over TLS; a
  user with keys and no password logs in with the key, never a password.
* A wrong key, an unknown user and a bad signature all get ``430 login
  incorrect`` after the failure delay, count towards ``max_login_attempts``
  (``431`` and the connection closed) and the address's ban, and are
  audited with the key's fingerprint and a reason, never key material.
* A signature is worth nothing on another connection, or twice on one; a
  ``login_key`` without a fresh challenge is ``409``; over TLS a signature
  made without the certificate binding fails.
* A key removed with ``ftpserver usermod --remove-key`` while the server runs
  is refused at the next login after SIGHUP (the reload the server does
  today); a session already logged in goes on.
"""

from __future__ import annotations

import base64
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    CLIENT_TIMEOUT,
    HOST,
    RawSession,
    RunFtpserver,
    RunningServer,
    ServerProcess,
    error_of,
    wait_until,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ftpclient.client import FileTransferClient, tls_context
from ftpclient.identity import Identity
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.keylogin import NO_BINDING, Binding, signed_data
from ftpproto.messages import Message, request
from ftpserver.users import change_keys

pytestmark = pytest.mark.timeout(90)

MakeServer = Callable[..., RunningServer]
StartProcess = Callable[..., ServerProcess]


def new_identity(tmp_path: Path, name: str = "key") -> Identity:
    return Identity(tmp_path / name, Ed25519PrivateKey.generate())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def login_fields(
    identity: Identity,
    challenge: str,
    user: str = ALICE,
    binding: Binding = NO_BINDING,
) -> tuple[str, str, str, str]:
    """The fields of a ``login_key`` request signing ``challenge`` (base64) for ``user``."""
    data = signed_data(base64.b64decode(challenge), user, identity.blob, binding)
    return user, "ssh-ed25519", b64(identity.blob), b64(identity.sign(data))


def challenge_of(session: RawSession) -> str:
    reply = session.call("challenge")
    assert reply.command == "challenge" and reply.status == "ok", reply
    (text,) = reply.fields[1:]
    assert len(base64.b64decode(text)) == 32, text
    return text


@pytest.fixture
def alice_key(tmp_path: Path, users_file: Path) -> Identity:
    """A key of alice's, in users.yaml before the server starts."""
    identity = new_identity(tmp_path, "alice")
    change_keys(users_file, ALICE, identity.public_line("alice@test"))
    return identity


@pytest.fixture
def keyed(alice_key: Identity, make_configured_server: MakeServer) -> RunningServer:
    return make_configured_server()


def raw_session(running: RunningServer) -> RawSession:
    return RawSession(running.port)


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ftpserver.audit"]


# -- logging in -------------------------------------------------------------------------


def test_a_key_logs_in_and_the_session_works(
    keyed: RunningServer, alice_key: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ftpserver.audit")
    with FileTransferClient(HOST, keyed.port, timeout=CLIENT_TIMEOUT) as conn:
        assert conn.login_key(ALICE, alice_key) == ALICE
        (keyed.alice_home / "hello.txt").write_bytes(b"hi\n")
        assert [e.name for e in conn.ls()] == ["hello.txt"]
        _, code, _ = error_of(_call(conn, "login_key", *login_fields(alice_key, "AAAA")))
        assert code == ErrorCode.BAD_STATE  # already logged in
    ok = [line for line in audit_lines(caplog) if "outcome='ok'" in line]
    assert ok == [
        f"login user='alice' ip='127.0.0.1' outcome='ok' method='key' key='{alice_key.fingerprint}'"
    ], ok
    assert not any(b64(alice_key.blob) in r.getMessage() for r in caplog.records)


def _call(conn: FileTransferClient, command: str, *args: str) -> Message:
    conn.channel.send(request(command, *args))
    return conn.channel.recv()


def test_a_user_with_keys_and_no_password_logs_in_only_with_a_key(
    tmp_path: Path, users_file: Path, alice_key: Identity, make_configured_server: MakeServer
) -> None:
    change_keys(users_file, ALICE, drop_password=True)
    running = make_configured_server()
    with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT) as conn:
        with pytest.raises(RemoteError) as refused:
            conn.login(ALICE, ALICE_PASSWORD)
        assert (refused.value.code, refused.value.text) == (
            ErrorCode.LOGIN_FAILED,
            "login incorrect",
        )
        assert conn.login_key(ALICE, alice_key) == ALICE
    with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT) as conn:
        assert conn.login(BOB, BOB_PASSWORD) == BOB  # the others are untouched


# -- failures look alike ----------------------------------------------------------------


def test_wrong_key_unknown_user_and_bad_signature_look_alike_and_count(
    tmp_path: Path,
    alice_key: Identity,
    make_configured_server: MakeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ftpserver.audit")
    delay = 0.3
    running = make_configured_server(login_failure_delay=delay)
    stranger = new_identity(tmp_path, "stranger")
    session = raw_session(running)
    try:
        attempts = [
            lambda c: login_fields(stranger, c),  # a key alice does not have
            lambda c: login_fields(alice_key, c, user="mallory"),  # no such user
            lambda c: login_fields(alice_key, base64.b64encode(b"x" * 32).decode()),  # bad sig
        ]
        replies = []
        for make_fields in attempts:
            fields = make_fields(challenge_of(session))
            started = time.monotonic()
            reply = session.call("login_key", *fields)
            assert time.monotonic() - started >= delay * 0.9, "a failure came without the delay"
            replies.append(error_of(reply))
        assert replies[:2] == [("login_key", ErrorCode.LOGIN_FAILED, "login incorrect")] * 2
        assert replies[2] == ("login_key", ErrorCode.TOO_MANY_FAILURES, "too many failed logins")
        assert session.is_closed_by_server(), "the third failure did not close the connection"
    finally:
        session.close()
    failed = [line for line in audit_lines(caplog) if "outcome='failed'" in line]
    assert failed == [
        f"login user='alice' ip='127.0.0.1' outcome='failed' method='key' "
        f"key='{stranger.fingerprint}' reason='unknown key'",
        f"login user='mallory' ip='127.0.0.1' outcome='failed' method='key' "
        f"key='{alice_key.fingerprint}' reason='unknown user'",
        f"login user='alice' ip='127.0.0.1' outcome='failed' method='key' "
        f"key='{alice_key.fingerprint}' reason='bad signature'",
    ], failed
    for identity in (alice_key, stranger):
        assert not any(b64(identity.blob) in r.getMessage() for r in caplog.records)


def test_failed_key_logins_count_towards_the_ban(
    tmp_path: Path, alice_key: Identity, make_configured_server: MakeServer
) -> None:
    running = make_configured_server(ban_failures=2, max_login_attempts=10)
    stranger = new_identity(tmp_path, "stranger")
    session = raw_session(running)
    try:
        for _ in range(2):
            reply = session.call("login_key", *login_fields(stranger, challenge_of(session)))
            assert error_of(reply)[1] == ErrorCode.LOGIN_FAILED
        # Banned now: the right key and the right password are refused alike.
        reply = session.call("login_key", *login_fields(alice_key, challenge_of(session)))
        assert error_of(reply) == ("login_key", ErrorCode.LOGIN_FAILED, "login incorrect")
    finally:
        session.close()
    with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT) as conn:
        with pytest.raises(RemoteError) as refused:
            conn.login(ALICE, ALICE_PASSWORD)
        assert refused.value.code == ErrorCode.LOGIN_FAILED


def test_malformed_key_logins_are_answered_clearly(keyed: RunningServer) -> None:
    session = raw_session(keyed)
    try:
        _, code, text = error_of(session.call("login_key", ALICE, "ssh-ed25519", "AAAA", "AAAA"))
        assert (code, text) == (ErrorCode.BAD_STATE, "ask for a challenge first")
        challenge_of(session)
        _, code, text = error_of(session.call("login_key", ALICE, "ssh-rsa", "AAAA", "AAAA"))
        assert code == ErrorCode.BAD_REQUEST and "unsupported key type 'ssh-rsa'" in text
        challenge_of(session)
        _, code, text = error_of(session.call("login_key", ALICE, "ssh-ed25519", "*", "AAAA"))
        assert code == ErrorCode.BAD_REQUEST and "not base64" in text, text
        session.login()  # none of these counted as a failed login
    finally:
        session.close()
    keyed.assert_serving()


# -- replays ------------------------------------------------------------------------------


def test_a_signature_cannot_be_replayed_on_another_connection(
    keyed: RunningServer, alice_key: Identity
) -> None:
    first, second = raw_session(keyed), raw_session(keyed)
    try:
        fields = login_fields(alice_key, challenge_of(first))
        challenge_of(second)  # the second connection's own, fresh challenge
        assert error_of(second.call("login_key", *fields))[1] == ErrorCode.LOGIN_FAILED
        assert first.call("login_key", *fields) == Message("login_key", ("ok", ALICE))
        # Nor a second time on the second connection, nor without a fresh challenge.
        _, code, _ = error_of(second.call("login_key", *fields))
        assert code == ErrorCode.BAD_STATE
        challenge_of(second)
        assert error_of(second.call("login_key", *fields))[1] == ErrorCode.LOGIN_FAILED
    finally:
        first.close()
        second.close()


def test_each_challenge_serves_one_attempt(keyed: RunningServer, alice_key: Identity) -> None:
    session = raw_session(keyed)
    try:
        challenge = challenge_of(session)
        fields = login_fields(alice_key, challenge, user="mallory")
        assert error_of(session.call("login_key", *fields))[1] == ErrorCode.LOGIN_FAILED
        # The same challenge, signed rightly this time, is gone.
        _, code, _ = error_of(session.call("login_key", *login_fields(alice_key, challenge)))
        assert code == ErrorCode.BAD_STATE
        # A newer challenge replaces an older one.
        old = challenge_of(session)
        new = challenge_of(session)
        assert old != new
        assert error_of(session.call("login_key", *login_fields(alice_key, old)))[1] == 430
        session.login()
    finally:
        session.close()


# -- TLS ----------------------------------------------------------------------------------


def test_over_tls_the_signature_is_bound_to_the_server_certificate(
    tmp_path: Path, alice_key: Identity, make_configured_server: MakeServer
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    chain, key, ca_file = tmp_path / "cert.pem", tmp_path / "cert.key", tmp_path / "ca.pem"
    for index, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(chain), append=index > 0)
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    running = make_configured_server(tls_cert=chain, tls_key=key)
    context = tls_context(str(ca_file))
    with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT, tls=context) as conn:
        assert conn.login_key(ALICE, alice_key) == ALICE
    with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT, tls=context) as conn:
        (challenge,) = _call(conn, "challenge").fields[1:]
        # Signed as if there were no TLS (what a relay to a plain server would get): refused.
        reply = _call(conn, "login_key", *login_fields(alice_key, challenge))
        assert error_of(reply) == ("login_key", ErrorCode.LOGIN_FAILED, "login incorrect")


# -- a key removed while the server runs ----------------------------------------------------


def test_a_key_removed_while_the_server_runs_is_refused_after_reload(
    users_file: Path,
    homes: Path,
    alice_key: Identity,
    server_process: StartProcess,
    ftpserver_cli: RunFtpserver,
) -> None:
    running = server_process(users_file, homes)
    assert running.log is not None
    log = running.log
    kept = FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT)
    try:
        assert kept.login_key(ALICE, alice_key) == ALICE
        result = ftpserver_cli(
            "usermod", ALICE, "--users", str(users_file), "--remove-key", "alice@test"
        )
        assert result.returncode == 0, result
        assert f"removed key {alice_key.fingerprint} alice@test" in result.stdout
        # The server learns of the change by a reload (SIGHUP).
        running.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reloaded: 2 users" in log.read_text(), 10), log.read_text()
        with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT) as conn:
            with pytest.raises(RemoteError) as refused:
                conn.login_key(ALICE, alice_key)
            assert refused.value.code == ErrorCode.LOGIN_FAILED
            assert conn.login(ALICE, ALICE_PASSWORD) == ALICE  # the password still works
        assert kept.pwd() == "/", "the session logged in before the change was cut"
    finally:
        kept.close()
