"""The client's key pair: make one, load one, and log in with it before the password.

Keys are Ed25519 in OpenSSH's formats, so ``ssh-keygen -t ed25519`` keys work
too: the private key ``-----BEGIN OPENSSH PRIVATE KEY-----`` (mode 0600,
optionally encrypted with a passphrase) and the public key ``FILE.pub``, one
line ``ssh-ed25519 AAAA... comment`` for the administrator's
``ftpserver usermod NAME --add-key-file FILE.pub``.  The default key is
``~/.config/ftpclient/id_ed25519`` (under ``$XDG_CONFIG_HOME`` when set).

:class:`Credentials` logs a connection in: with the key first when there is
one, then, if the server refuses it, with the password (asked for once, and
only when needed).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ftpclient.client import FileTransferClient
from ftpclient.settings import config_path
from ftpclient.sshkey import load_unencrypted_ed25519
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.keylogin import encode_field, fingerprint, key_blob

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "PASSPHRASE_ENV",
    "Credentials",
    "Identity",
    "IdentityError",
    "ask_passphrase",
    "ask_secret",
    "check_free",
    "choose_identity",
    "default_identity",
    "generate",
    "load_identity",
]

PASSPHRASE_ENV = "FTPCLIENT_KEY_PASSPHRASE"


class IdentityError(Exception):
    """A key that cannot be made or used; the text is one line for the user."""


class Identity(NamedTuple):
    """A loaded private key (a :class:`~ftpclient.client.Signer`)."""

    path: Path
    key: Ed25519PrivateKey

    @property
    def blob(self) -> bytes:
        """The public key in OpenSSH's wire form."""
        return key_blob(self.key.public_key().public_bytes_raw())

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
        return fingerprint(self.blob)

    def public_line(self, comment: str = "") -> str:
        """The OpenSSH public key line, ``ssh-ed25519 AAAA... comment``."""
        line = f"ssh-ed25519 {encode_field(self.blob)}"
        return f"{line} {comment}" if comment else line

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""
        return self.key.sign(data)


def default_identity() -> Path:
    """``id_ed25519`` beside the client's config file."""
    from pathlib import Path  # here, not at the top: see choose_identity

    return Path(_default_identity_file())


def _default_identity_file() -> str:
    return os.path.join(os.path.dirname(config_path()), "id_ed25519")


def ask_secret(prompt: str) -> str:
    """Read a password or passphrase from the terminal without echo."""
    import getpass  # here, not at the top: only a prompt needs it

    return getpass.getpass(prompt)


def ask_passphrase(path: Path) -> str:
    """The passphrase of ``path``: ``$FTPCLIENT_KEY_PASSPHRASE``, else asked on the terminal."""
    secret = os.environ.get(PASSPHRASE_ENV)
    if secret is not None:
        return secret
    if not sys.stdin.isatty():
        raise IdentityError(f"{path} needs its passphrase: set {PASSPHRASE_ENV}")
    try:
        return ask_secret(f"Passphrase for {path}: ")
    except (EOFError, KeyboardInterrupt):
        raise IdentityError("cancelled") from None


def load_identity(path: Path, passphrase: Callable[[Path], str] = ask_passphrase) -> Identity:
    """Read an Ed25519 private key in OpenSSH format; ``passphrase(path)`` only if encrypted."""
    # Here, not at the top (nor below): cryptography costs 40-60 ms at every
    # start, and a client without a key never needs it.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        mode = os.stat(path).st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read key {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise IdentityError(
            f"key {path} is open to others (mode {mode & 0o777:04o}): chmod 600 {path}"
        )
    unencrypted = load_unencrypted_ed25519(data)  # without cryptography's serialization (20 ms)
    if unencrypted is not None:
        return Identity(path, unencrypted)
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    try:
        try:
            key = load_ssh_private_key(data, None)
        except TypeError:  # encrypted: the passphrase is needed
            secret = passphrase(path).encode("utf-8")
            try:
                key = load_ssh_private_key(data, secret)
            except ValueError:
                raise IdentityError(f"wrong passphrase for key {path}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise IdentityError(f"key {path} is not an OpenSSH private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"key {path} is not Ed25519 (make one with 'ftpclient keygen')")
    return Identity(path, key)


def check_free(path: Path) -> None:
    """Raise IdentityError if ``path`` or ``path.pub`` exists (keygen replaces nothing)."""
    for target in (path, _pub_path(path)):
        if os.path.lexists(target):
            raise IdentityError(f"{target} already exists: remove it or name another file")


def generate(path: Path, passphrase: str = "", comment: str = "") -> Identity:
    """Make a new key pair: ``path`` (mode 0600) and ``path.pub``; never replaces a file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    check_free(path)
    public = _pub_path(path)
    key = Ed25519PrivateKey.generate()
    encryption = (
        BestAvailableEncryption(passphrase.encode("utf-8")) if passphrase else NoEncryption()
    )
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, encryption)
    identity = Identity(path, key)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_new(path, private, 0o600)
        try:
            _write_new(public, (identity.public_line(comment) + "\n").encode("utf-8"), 0o644)
        except BaseException:
            path.unlink()
            raise
    except OSError as exc:
        where = exc.filename or path
        raise IdentityError(f"cannot write {where}: {exc.strerror or exc}") from None
    return identity


def _pub_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all, with ``mode``; an existing file is never replaced."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)  # fails if the name was taken meanwhile
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


class Credentials:
    """How a connection logs in: the key first (if any), then the password.

    ``password`` is called at most once, only when the password is needed;
    once the server refused the key, later connections (reconnects) go
    straight to the password.
    """

    def __init__(self, user: str, identity: Identity | None, password: Callable[[], str]) -> None:
        self.user = user
        self.identity = identity
        self._ask = password
        self._password: str | None = None
        self.key_refused = False

    def password(self) -> str:
        """The password, asked for on the first call."""
        if self._password is None:
            self._password = self._ask()
        return self._password

    def use_password(self, password: str) -> None:
        """Log in with ``password`` from now on (the user typed it again)."""
        self._password = password

    def log_in(self, client: FileTransferClient) -> str:
        """Log ``client`` in; raises RemoteError if the server refuses."""
        if self.identity is not None and not self.key_refused:
            try:
                return client.login_key(self.user, self.identity)
            except RemoteError as exc:
                # 405: a server without key logins; 430: this key does not open the account.
                if exc.code not in (ErrorCode.LOGIN_FAILED, ErrorCode.UNKNOWN_COMMAND):
                    raise
                self.key_refused = True
        return client.login(self.user, self.password())


def choose_identity(named: str | None, warn: Callable[[str], None]) -> Identity | None:
    """The key to try first: ``named`` (``--identity`` or a bookmark's), else the default one.

    A named key that cannot be used is an error (IdentityError); the default
    key is skipped with a warning, and the password is used.
    """
    if not (named is not None or os.path.lexists(_default_identity_file())):
        return None  # no key: no pathlib either (milliseconds at every start)
    from pathlib import Path

    path = Path(named).expanduser() if named is not None else default_identity()
    if named is not None:
        return load_identity(path)
    try:
        return load_identity(path)
    except IdentityError as exc:
        warn(f"not using the default key: {exc}")
        return None
