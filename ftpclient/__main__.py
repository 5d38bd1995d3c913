"""The ``ftpclient`` command line: connect, log in, then a shell or a batch of commands.

Exit status: 0 when every command succeeded; 1 when a command failed (batch
modes stop at the first failure, unless the command starts with ``-``); 2 for
a usage error, a refused or lost connection, or a failed login; 141 (as for a
program stopped by SIGPIPE), quietly, when the reader of stdout went away.
Errors are one line on stderr (and an ``error`` record with ``--json``).  In
the shell a wrong password is asked for again, up to the server's three tries.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

from ftpclient.client import FileTransferClient, tls_context
from ftpclient.identity import (
    PASSPHRASE_ENV,
    Credentials,
    IdentityError,
    ask_secret,
    choose_identity,
)
from ftpclient.output import Output, OutputClosed
from ftpclient.settings import (
    ConfigError,
    Target,
    load_config,
    resolve_target,
    unknown_target,
)
from ftpclient.shell import ClientShell, split_commands
from ftpclient.wording import certificate_refused, connect_problem
from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.version import VersionAction

if TYPE_CHECKING:
    import ssl

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "backoff",
    "main",
    "run",
    "run_batch",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away
LOGIN_TRIES = 3  # the server closes the connection after the third failed login
PASSWORD_ENV = "FTPCLIENT_PASSWORD"
HISTORY_FILE = os.path.join(os.path.expanduser("~"), ".ftpclient_history")

EPILOG = f"""\
TARGET is a bookmark from ~/.config/ftpclient/config.yaml or [user@]host[:port];
--host, --port and --user override it.  With a key (--identity, a bookmark's
identity, or ~/.config/ftpclient/id_ed25519 when it exists) the client logs in
with the key first; its passphrase is read from {PASSPHRASE_ENV} when set,
otherwise prompted for.  If the server refuses the key (or without one) the
password is read from {PASSWORD_ENV} when it is set, otherwise prompted for;
in the shell a wrong password is asked for again.
'ftpclient keygen [FILE]' makes a key pair (see 'ftpclient keygen --help').

In -c and -b, a command written with a leading '-' (as in '-rm old.txt') may
fail without stopping the batch.  With --retries N the first connection is
tried up to N more times, and a lost one opened again up to N times (waiting
0.5 s, 1 s, 2 s, ...) and the command retried, interrupted transfers resuming
where they stopped.  --json prints every result as one JSON object per line
(the events are described in docs/CLIENT-JSON.md).

exit status:
  0    every command succeeded
  1    a command failed (-c and -b stop at the first failure)
  2    usage error, connection refused or lost, or login failed
  141  stdout was closed by its reader (ftpclient -c ls | head -1)
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter without ``import shutil`` (and its bz2, lzma) at every start.

    argparse makes a formatter for each ``add_argument``; it asks
    ``shutil.get_terminal_size`` for the width, which this does the same way.
    """

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size().columns
        except (ValueError, OSError):
            columns = 80
        super().__init__(prog, width=columns - 2)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ftpclient",
        description="Client for the FileTransfer server: an interactive shell, or batches.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("target", nargs="?", metavar="TARGET", help="bookmark or user@host:port")
    parser.add_argument("--host", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="server port (default 9002)")
    parser.add_argument("--user", help="user name (prompted for when not given)")
    parser.add_argument(
        "-i", "--identity", metavar="FILE", help="private key to log in with (tried first)"
    )
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("-c", dest="commands", metavar="CMDS", help='commands, e.g. "cd a; get b"')
    batch.add_argument(
        "-b", dest="batch", metavar="FILE", help="run commands from FILE (- = stdin)"
    )
    parser.add_argument("--tls", action="store_true", help="use TLS, verifying the server")
    parser.add_argument(
        "--cafile", metavar="FILE", help="trust the CA certificates in FILE (implies --tls)"
    )
    parser.add_argument("--json", action="store_true", help="every result as a JSON line")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, no summaries")
    parser.add_argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="try to connect N more times; in batches, reconnect N times if lost",
    )
    return parser


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): 0.5, 1, 2, ... at most 30."""
    return min(30.0, 0.5 * 2.0 ** (attempt - 1))


class _Fail(Exception):
    """Start-up failed; the text is the one-line error (exit status 2)."""

    def __init__(self, text: str, unknown_host: bool = False) -> None:
        super().__init__(text)
        self.unknown_host = unknown_host  # the host name did not resolve


def _batch_lines(args: argparse.Namespace) -> Iterable[str] | None:
    if args.commands is not None:
        return split_commands(args.commands)
    if args.batch is None:
        return None
    if args.batch == "-":
        return [line.strip() for line in sys.stdin]
    with open(args.batch, encoding="utf-8") as handle:
        return [line.strip() for line in handle]


def run_batch(
    shell: ClientShell,
    lines: Iterable[str],
    retries: int = 0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run commands in order; stop at the first failure (exit 1) unless it starts with ``-``.

    A lost connection ends the batch with exit status 2, unless ``retries``
    allows opening it again; the command then runs again with resuming on.
    """
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        optional = line.startswith("-")
        line = line[1:].lstrip() if optional else line
        attempt = 0
        while True:
            try:
                if not shell.connected:
                    raise ConnectionError("not connected")
                stop = shell.onecmd(line)
                break
            except (ConnectionError, TimeoutError) as exc:
                if attempt >= retries:
                    shell.out.error(f"ftpclient: {shell.lost_message(exc)}")
                    return EXIT_USAGE
                attempt += 1
                delay = backoff(attempt)
                shell.out.warning(
                    f"{shell.lost_message(exc)}; retry {attempt} of {retries} in {delay:g} s"
                )
                sleep(delay)
                with contextlib.suppress(OSError, ProtocolError):
                    shell.reconnect()
                shell.resume_transfers = True
        shell.resume_transfers = False
        if stop:
            return EXIT_OK
        if shell.failed and not optional:
            return EXIT_FAILED
    return EXIT_OK


def _interactive(shell: ClientShell) -> int:
    readline: ModuleType | None
    try:
        readline = importlib.import_module("readline")
    except ImportError:  # pragma: no cover - readline is missing on some platforms
        readline = None
    if readline is not None:
        readline.set_completer_delims(" \t\n\"'")
        with contextlib.suppress(OSError):
            readline.read_history_file(HISTORY_FILE)
    try:
        while True:
            try:
                shell.cmdloop()
                return EXIT_OK
            except KeyboardInterrupt:
                shell.intro = ""
                shell.out.line("^C")
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.set_history_length(1000)
                readline.write_history_file(HISTORY_FILE)


def _open(
    host: str, port: int, tls: ssl.SSLContext | None, retries: int, out: Output
) -> FileTransferClient:
    """Connect, trying ``retries`` more times (same backoff as a batch) if the server is not up."""
    attempt = 0
    while True:
        try:
            return FileTransferClient(host, port, tls=tls)
        except OSError as exc:
            problem = f"cannot connect to {host}:{port}: {connect_problem(exc)}"
            if certificate_refused(exc):
                raise _Fail(problem) from None
            if isinstance(exc, socket.gaierror):
                raise _Fail(problem, unknown_host=True) from None
            if attempt >= retries:
                raise _Fail(problem) from None
            attempt += 1
            out.warning(f"{problem}; retry {attempt} of {retries} in {backoff(attempt):g} s")
            time.sleep(backoff(attempt))


def _log_in(client: FileTransferClient, credentials: Credentials, ask: bool, out: Output) -> None:
    """Log in (the key first, if any); with ``ask`` a wrong password is asked for again.

    ``ask`` is for a person at the shell, within the server's tries (a
    refused key uses one).  Raises :class:`_Fail` when login fails.
    """
    tries = 0
    last: str | None = None
    while True:
        with_key = credentials.identity is not None and not credentials.key_refused
        try:
            credentials.log_in(client)
            return
        except ProtocolError as exc:
            last = exc.text
            tries += 2 if with_key and credentials.key_refused else 1
            if not ask or exc.code != ErrorCode.LOGIN_FAILED or tries >= LOGIN_TRIES:
                raise _Fail(f"login failed: {last}") from None
            out.error(f"login failed: {last}; try again")
            try:
                credentials.use_password(
                    ask_secret(f"Password for {credentials.user}@{client.host}: ")
                )
            except (EOFError, KeyboardInterrupt):
                raise _Fail("cancelled") from None
        except (EOFError, KeyboardInterrupt):  # asked for the password when the key was refused
            raise _Fail("cancelled") from None
        except (ConnectionError, TimeoutError) as exc:
            if last is not None:  # the server ended the session after its last try
                raise _Fail(f"login failed: {last}") from None
            raise _Fail(f"cannot log in to {client.host}: {connect_problem(exc)}") from None


def _target(args: argparse.Namespace, out: Output) -> tuple[str, int, str | None, str | None]:
    config = load_config()
    used = config.broken.get(args.target or "")
    for problem in config.problems:
        if problem != used:
            out.warning(f"ftpclient: {problem} (left out)")
    try:
        flags = Target(args.host, args.port, args.user, args.identity)
        return resolve_target(config, args.target, flags)
    except ConfigError as exc:
        raise _Fail(str(exc)) from None


def _session(args: argparse.Namespace, out: Output) -> tuple[ClientShell, Iterable[str] | None]:
    """Everything before the first command: where, who, the connection and the login."""
    host, port, user, identity_file = _target(args, out)
    try:
        lines = _batch_lines(args)
    except OSError as exc:
        raise _Fail(f"cannot read batch file: {exc.strerror}: {args.batch}") from None
    try:
        if not user:
            if not sys.stdin.isatty():
                raise _Fail("no user given (use user@host or --user)")
            user = input("User: ").strip()
        identity = choose_identity(identity_file, lambda text: out.warning(f"ftpclient: {text}"))

        def ask_password() -> str:
            password = os.environ.get(PASSWORD_ENV)
            return ask_secret(f"Password for {user}@{host}: ") if password is None else password

        credentials = Credentials(user, identity, ask_password)
        if identity is None:
            credentials.password()  # asked before connecting; with a key, only if it is refused
    except IdentityError as exc:
        raise _Fail(str(exc)) from None
    except (EOFError, KeyboardInterrupt):
        raise _Fail("cancelled") from None
    try:
        tls = tls_context(args.cafile) if args.tls or args.cafile else None
    except OSError as exc:  # ssl.SSLError is an OSError
        problem = getattr(exc, "strerror", None) or exc
        raise _Fail(f"cannot use CA file {args.cafile}: {problem}") from None
    try:
        client = _open(host, port, tls, args.retries, out)
    except _Fail as exc:
        if exc.unknown_host and args.target and args.host is None:
            raise _Fail(unknown_target(load_config(), args.target)) from None
        raise
    ask = lines is None and sys.stdin.isatty()
    try:
        _log_in(client, credentials, ask, out)
    except BaseException:
        client.close()
        raise

    def connect() -> FileTransferClient:
        again = FileTransferClient(host, port, tls=tls)
        try:
            credentials.log_in(again)
        except BaseException:
            again.close()
            raise
        return again

    return ClientShell(client, out, connect, interactive=lines is None), lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["keygen"]:
        from ftpclient import keygen  # here, not at the top: argparse of its own, getpass

        return keygen.main(argv[1:])
    args = _parser().parse_args(argv)
    out = Output(sys.stdout, sys.stderr, json_mode=args.json, quiet=args.quiet)
    if args.retries < 0:
        out.error("ftpclient: --retries must be 0 or more")
        return EXIT_USAGE
    shell: ClientShell | None = None
    try:
        try:
            shell, lines = _session(args, out)
        except _Fail as exc:
            out.error(f"ftpclient: {exc}")
            return EXIT_USAGE
        if lines is not None:
            return run_batch(shell, lines, args.retries)
        return _interactive(shell)
    except (ConnectionError, TimeoutError) as exc:
        text = shell.lost_message(exc) if shell else connect_problem(exc)
        out.error(f"ftpclient: {text}")
        return EXIT_USAGE
    except OutputClosed:
        # Whoever read our output has gone (| head): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    finally:
        if shell is not None:
            shell.client.close()


def run() -> NoReturn:
    """The ``ftpclient`` program: :func:`main`, then its exit status, sooner.

    Everything still alive is frozen first, so the interpreter's last
    garbage collections at exit pass it by (the system takes the memory
    back anyway): about 10 ms less for each command run, a tenth of a
    short one.  Exit handlers still run, and stdout is still flushed.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    run()
