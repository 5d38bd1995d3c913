"""``ftpclient keygen [FILE]``: make an Ed25519 key pair for key logins.

The passphrase comes from ``$FTPCLIENT_KEY_PASSPHRASE`` when it is set,
otherwise it is asked for twice on the terminal (empty: none);
``--no-passphrase`` makes a key without one.  Exit status 0, or 1 with one
line on stderr (the file exists, no terminal to ask on, ...).
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from ftpclient.identity import (
    PASSPHRASE_ENV,
    IdentityError,
    check_free,
    default_identity,
    generate,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftpclient keygen",
        description="Make an Ed25519 key pair (OpenSSH format) for logging in with a key.",
        epilog=f"The passphrase is read from {PASSPHRASE_ENV} when set, else asked for.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        type=Path,
        metavar="FILE",
        help=f"private key (default {default_identity()})",
    )
    parser.add_argument("-C", "--comment", help="comment in FILE.pub (default user@host)")
    parser.add_argument(
        "--no-passphrase", action="store_true", help="leave the private key unencrypted"
    )
    return parser


def _passphrase(no_passphrase: bool) -> str:
    if no_passphrase:
        return ""
    secret = os.environ.get(PASSPHRASE_ENV)
    if secret is not None:
        return secret
    if not sys.stdin.isatty():
        raise IdentityError(
            f"no terminal to ask for a passphrase: set {PASSPHRASE_ENV} or give --no-passphrase"
        )
    try:
        secret = getpass.getpass("Passphrase (empty for none): ")
        if getpass.getpass("Repeat the passphrase: ") != secret:
            raise IdentityError("the passphrases do not match")
    except (EOFError, KeyboardInterrupt):
        raise IdentityError("cancelled") from None
    return secret


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    path: Path = args.file or default_identity()
    comment = (
        args.comment if args.comment is not None else f"{getpass.getuser()}@{socket.gethostname()}"
    )
    try:
        check_free(path)
        secret = _passphrase(args.no_passphrase)
        identity = generate(path, secret, comment)
    except IdentityError as exc:
        print(f"ftpclient keygen: {exc}", file=sys.stderr)
        return 1
    state = "encrypted with the passphrase" if secret else "without a passphrase"
    print(f"wrote the private key {path} (mode 0600, {state})")
    print(f"wrote the public key {path}.pub")
    print(f"fingerprint: {identity.fingerprint} {comment}".rstrip())
    print(f"to use it: ftpserver usermod NAME --add-key-file {path.name}.pub (on the server)")
    return 0
