"""End to end: key login from the command lines (``ftpclient keygen``, ``--identity``, usermod).

* ``ftpclient keygen`` writes an OpenSSH Ed25519 pair (private key mode
  0600, ``FILE.pub``), with a passphrase from ``FTPCLIENT_KEY_PASSPHRASE``
  or the terminal, and never replaces a file; ``ftpserver usermod
  --add-key-file`` takes the ``.pub``; ``ftpclient`` then logs in with the
  default key without any password, and the upload lands on disk.
* A key made by ``ssh-keygen -t ed25519`` (Debian's openssh-client) works the
  same, with the fingerprint ``ssh-keygen -l`` prints.
* A passphrase-protected key in batch mode takes ``FTPCLIENT_KEY_PASSPHRASE``;
  without it, or with a wrong one, one line and exit 2.
* A key the server refuses falls back to the password; ``identity:`` in a
  bookmark names the key; a key readable by others is refused.
* ``ftpserver usermod`` refuses bad keys, unknown keys and a change that
  would leave a user without a way in, with one line and exit 1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    SUBPROCESS_TIMEOUT,
    ClientEnv,
    CliResult,
    RunFtpserver,
    RunningServer,
)
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from ftpserver.keys import parse_key_line

pytestmark = pytest.mark.timeout(120)

PASSPHRASE = "correct horse battery"
PAYLOAD = b"uploaded with a key\n" * 50


def ssh_keygen() -> str:
    """The ssh-keygen program; skip without it, unless FT_REQUIRE_SERVICES=1 (then fail)."""
    found = shutil.which("ssh-keygen")
    if found is None:
        if os.environ.get("FT_REQUIRE_SERVICES") == "1":
            pytest.fail("ssh-keygen is missing (install openssh-client) and FT_REQUIRE_SERVICES=1")
        pytest.skip("ssh-keygen is missing: install openssh-client")
    return found


def ftpclient(
    env: ClientEnv,
    port: int,
    *args: str,
    cwd: Path,
    password: str | None = None,
    passphrase: str | None = None,
    stdin: str = "",
) -> CliResult:
    """``ftpclient ARGS`` with its own HOME and config; no password or passphrase unless given."""
    environ = dict(env.env)
    for name, value in (("FTPCLIENT_PASSWORD", password), ("FTPCLIENT_KEY_PASSPHRASE", passphrase)):
        environ.pop(name, None)
        if value is not None:
            environ[name] = value
    head = [sys.executable, "-m", "ftpclient"]
    if args[:1] != ("keygen",):
        head += ["--host", HOST, "--port", str(port), "--user", ALICE]
    done = subprocess.run(
        [*head, *args],
        cwd=cwd,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def add_key(cli: RunFtpserver, users: Path, *args: str) -> CliResult:
    return cli("usermod", ALICE, "--users", str(users), *args)


def fingerprint_in(text: str) -> str:
    match = re.search(r"SHA256:[A-Za-z0-9+/]{43}", text)
    assert match, f"no fingerprint in {text!r}"
    return match.group(0)


def upload_with(
    env: ClientEnv, server: RunningServer, local: Path, *args: str, **kw: str
) -> CliResult:
    (local / "up.bin").write_bytes(PAYLOAD)
    return ftpclient(env, server.port, *args, "-c", "put up.bin", cwd=local, **kw)


# -- keygen and the default key ---------------------------------------------------------


def test_keygen_key_logs_in_without_a_password(
    server: RunningServer,
    client_env: ClientEnv,
    local: Path,
    ftpserver_cli: RunFtpserver,
) -> None:
    made = ftpclient(client_env, 0, "keygen", "--no-passphrase", "-C", "alice@test", cwd=local)
    assert made.returncode == 0, made
    private = client_env.config_home / "ftpclient" / "id_ed25519"
    public = private.with_name("id_ed25519.pub")
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key = parse_key_line(public.read_text())
    assert key.comment == "alice@test" and key.fingerprint == fingerprint_in(made.stdout)

    added = add_key(ftpserver_cli, server.users_file, "--add-key-file", str(public))
    assert added.returncode == 0, added
    assert f"added key {key.fingerprint} alice@test" in added.stdout
    assert server.server.reload()  # what SIGHUP does
    result = upload_with(client_env, server, local)
    assert result.returncode == 0, result
    assert (server.alice_home / "up.bin").read_bytes() == PAYLOAD
    assert "Password" not in result.stdout + result.stderr


def test_keygen_never_replaces_a_file_and_needs_a_passphrase_source(
    client_env: ClientEnv, local: Path
) -> None:
    target = local / "mine"
    target.write_text("precious\n")
    result = ftpclient(client_env, 0, "keygen", str(target), "--no-passphrase", cwd=local)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result
    assert "already exists" in result.stderr
    assert target.read_text() == "precious\n" and not (local / "mine.pub").exists()
    result = ftpclient(client_env, 0, "keygen", str(local / "other"), cwd=local)
    assert result.returncode == 1, result
    assert "set FTPCLIENT_KEY_PASSPHRASE or give --no-passphrase" in result.stderr
    assert not (local / "other").exists()


def test_keygen_asks_for_the_passphrase_twice_on_a_terminal(
    client_env: ClientEnv, local: Path
) -> None:
    target = local / "typed"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "ftpclient", "keygen", str(target), "-C", "typed"],
        env=client_env.env,
        cwd=str(local),
        encoding="utf-8",
        timeout=20,
    )
    try:
        child.expect("Passphrase \\(empty for none\\): ")
        child.sendline(PASSPHRASE)
        child.expect("Repeat the passphrase: ")
        child.sendline(PASSPHRASE)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    with pytest.raises(TypeError):
        load_ssh_private_key(target.read_bytes(), None)  # encrypted
    assert load_ssh_private_key(target.read_bytes(), PASSPHRASE.encode())


# -- ssh-keygen keys ----------------------------------------------------------------------


def test_an_ssh_keygen_key_logs_in(
    server: RunningServer,
    client_env: ClientEnv,
    local: Path,
    tmp_path: Path,
    ftpserver_cli: RunFtpserver,
) -> None:
    program = ssh_keygen()
    private = tmp_path / "ssh" / "id_ed25519"
    private.parent.mkdir()
    made = subprocess.run(
        [
            program,
            "-q",
            "-t",
            "ed25519",
            "-N",
            PASSPHRASE,
            "-C",
            "alice@openssh",
            "-f",
            str(private),
        ],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert made.returncode == 0, made.stderr
    public = private.with_name("id_ed25519.pub")
    listed = subprocess.run(
        [program, "-l", "-f", str(public)], capture_output=True, text=True, timeout=30
    )
    added = add_key(ftpserver_cli, server.users_file, "--add-key", public.read_text().strip())
    assert added.returncode == 0, added
    assert fingerprint_in(added.stdout) == fingerprint_in(listed.stdout)
    assert server.server.reload()
    result = upload_with(
        client_env, server, local, "--identity", str(private), passphrase=PASSPHRASE
    )
    assert result.returncode == 0, result
    assert (server.alice_home / "up.bin").read_bytes() == PAYLOAD


# -- passphrases in batch mode ------------------------------------------------------------


def test_a_passphrase_protected_key_in_batch_mode(
    server: RunningServer,
    client_env: ClientEnv,
    local: Path,
    ftpserver_cli: RunFtpserver,
) -> None:
    key = local / "batch_key"
    made = ftpclient(client_env, 0, "keygen", str(key), passphrase=PASSPHRASE, cwd=local)
    assert made.returncode == 0 and "encrypted" in made.stdout, made
    with pytest.raises(TypeError):
        load_ssh_private_key(key.read_bytes(), None)
    assert add_key(ftpserver_cli, server.users_file, "--add-key-file", f"{key}.pub").returncode == 0
    assert server.server.reload()
    (local / "batch.txt").write_text("put up.bin\nls\n")
    (local / "up.bin").write_bytes(PAYLOAD)
    args = ("--identity", str(key), "-b", "batch.txt")

    result = ftpclient(client_env, server.port, *args, cwd=local, passphrase=PASSPHRASE)
    assert result.returncode == 0, result
    assert (server.alice_home / "up.bin").read_bytes() == PAYLOAD

    missing = ftpclient(client_env, server.port, *args, cwd=local)
    assert missing.returncode == 2, missing
    assert missing.stderr.count("\n") == 1 and "set FTPCLIENT_KEY_PASSPHRASE" in missing.stderr
    wrong = ftpclient(client_env, server.port, *args, cwd=local, passphrase="nope")
    assert wrong.returncode == 2, wrong
    assert wrong.stderr == f"ftpclient: wrong passphrase for key {key}\n"


# -- falling back, bookmarks, permissions ----------------------------------------------------


def test_a_refused_key_falls_back_to_the_password(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    made = ftpclient(client_env, 0, "keygen", "--no-passphrase", cwd=local)
    assert made.returncode == 0, made
    result = upload_with(client_env, server, local, password=ALICE_PASSWORD)
    assert result.returncode == 0, result
    assert (server.alice_home / "up.bin").read_bytes() == PAYLOAD
    refused = upload_with(client_env, server, local, password="wrong password")
    assert refused.returncode == 2, refused
    assert refused.stderr == "ftpclient: login failed: login incorrect\n"


def test_a_bookmark_names_the_key(
    server: RunningServer,
    client_env: ClientEnv,
    local: Path,
    ftpserver_cli: RunFtpserver,
) -> None:
    key = local / "work_key"
    assert (
        ftpclient(client_env, 0, "keygen", str(key), "--no-passphrase", cwd=local).returncode == 0
    )
    assert add_key(ftpserver_cli, server.users_file, "--add-key-file", f"{key}.pub").returncode == 0
    assert server.server.reload()
    client_env.write_config(
        f"bookmarks:\n  work: {{host: {HOST}, port: {server.port}, user: {ALICE}, "
        f"identity: {key}}}\n"
    )
    (local / "up.bin").write_bytes(PAYLOAD)
    environ = {k: v for k, v in client_env.env.items() if k != "FTPCLIENT_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "ftpclient", "work", "-c", "put up.bin"],
        cwd=local,
        env=environ,
        input="",
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert (server.alice_home / "up.bin").read_bytes() == PAYLOAD


def test_a_key_open_to_others_or_missing_is_refused(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    key = local / "loose"
    assert (
        ftpclient(client_env, 0, "keygen", str(key), "--no-passphrase", cwd=local).returncode == 0
    )
    key.chmod(0o644)
    result = ftpclient(client_env, server.port, "--identity", str(key), "-c", "ls", cwd=local)
    assert result.returncode == 2, result
    assert result.stderr == f"ftpclient: key {key} is open to others (mode 0644): chmod 600 {key}\n"
    result = ftpclient(
        client_env, server.port, "--identity", str(local / "nothing"), "-c", "ls", cwd=local
    )
    assert result.returncode == 2 and "cannot read key" in result.stderr, result


# -- ftpserver usermod ---------------------------------------------------------------------


def test_usermod_refuses_bad_changes_with_one_line(
    users_file: Path, tmp_path: Path, ftpserver_cli: RunFtpserver, client_env: ClientEnv
) -> None:
    key = tmp_path / "k"
    made = ftpclient(client_env, 0, "keygen", str(key), "--no-passphrase", "-C", "k1", cwd=tmp_path)
    assert made.returncode == 0, made
    line = Path(f"{key}.pub").read_text().strip()
    before = users_file.read_text()
    for args, message in [
        (("--add-key", "ssh-rsa AAAAB3Nza me"), "unsupported key type 'ssh-rsa'"),
        (("--add-key", "hello"), "not a public key line"),
        (("--add-key-file", str(tmp_path / "none.pub")), "No such file or directory"),
        (("--remove-key", "k1"), "user alice has no key 'k1'"),
        (("--no-password",), "user alice would have neither a password nor a key"),
    ]:
        result = add_key(ftpserver_cli, users_file, *args)
        assert result.returncode == 1, (args, result)
        assert result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)
        assert users_file.read_text() == before, f"{args} changed the users file"
    assert add_key(ftpserver_cli, users_file, "--add-key", line).returncode == 0
    again = add_key(ftpserver_cli, users_file, "--add-key", line)
    assert again.returncode == 1 and "already has the key" in again.stderr, again
    # Keys only, then the last key cannot go.
    assert add_key(ftpserver_cli, users_file, "--no-password").returncode == 0
    last = add_key(ftpserver_cli, users_file, "--remove-key", fingerprint_in(made.stdout))
    assert last.returncode == 1 and "neither a password nor a key" in last.stderr, last
    checked = ftpserver_cli("check-config", "--users", str(users_file), "--home", str(tmp_path))
    assert checked.returncode == 0, checked


def test_on_a_terminal_the_passphrase_and_then_the_password_are_asked_for(
    server: RunningServer,
    client_env: ClientEnv,
    local: Path,
    ftpserver_cli: RunFtpserver,
) -> None:
    key = local / "typed_key"
    made = ftpclient(client_env, 0, "keygen", str(key), passphrase=PASSPHRASE, cwd=local)
    assert made.returncode == 0, made
    environ = {k: v for k, v in client_env.env.items() if k != "FTPCLIENT_PASSWORD"}
    target = f"{ALICE}@{HOST}:{server.port}"

    def spawn() -> pexpect.spawn:
        return pexpect.spawn(
            sys.executable,
            ["-m", "ftpclient", "--identity", str(key), target],
            env=environ,
            cwd=str(local),
            encoding="utf-8",
            timeout=20,
        )

    # Not yet on the server: the passphrase, then the key is refused, then the password.
    child = spawn()
    try:
        child.expect(f"Passphrase for {re.escape(str(key))}: ")
        child.sendline(PASSPHRASE)
        child.expect(f"Password for {ALICE}@{HOST}: ")
        child.sendline(ALICE_PASSWORD)
        child.expect(f"{ALICE}@{HOST}:/> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    # On the server: the passphrase only.
    assert add_key(ftpserver_cli, server.users_file, "--add-key-file", f"{key}.pub").returncode == 0
    assert server.server.reload()
    child = spawn()
    try:
        child.expect(f"Passphrase for {re.escape(str(key))}: ")
        child.sendline(PASSPHRASE)
        index = child.expect([f"{ALICE}@{HOST}:/> ", "Password for"])
        assert index == 0, "asked for the password although the key is on the server"
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
