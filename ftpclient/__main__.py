"""The ``ftpclient`` command line: connect, log in, then a shell or a batch of commands.

Exit status: 0 when every command succeeded; 1 when a command failed (batch
modes stop at the first failure, unless the command starts with ``-``); 2 for
a usage error, a refused or lost connection, or a failed login.  Errors are
one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType

from ftpclient.client import FileTransferClient, tls_context
from ftpclient.output import Output
from ftpclient.settings import ConfigError, Target, load_config, resolve_target
from ftpclient.shell import ClientShell, split_commands
from ftpproto.errors import ProtocolError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main", "run_batch"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
PASSWORD_ENV = "FTPCLIENT_PASSWORD"
HISTORY_FILE = Path.home() / ".ftpclient_history"

EPILOG = f"""\
TARGET is a bookmark from ~/.config/ftpclient/config.yaml or [user@]host[:port];
--host, --port and --user override it.  The password is read from the
environment variable {PASSWORD_ENV} when it is set, otherwise prompted for.

In -c and -b, a command written with a leading '-' (as in '-rm old.txt') may
fail without stopping the batch.  With --retries N a lost connection is
opened again up to N times (waiting 0.5 s, 1 s, 2 s, ...) and the command
retried, interrupted transfers resuming where they stopped.

exit status:
  0  every command succeeded
  1  a command failed (-c and -b stop at the first failure)
  2  usage error, connection refused or lost, or login failed
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ftpclient",
        description="Client for the FileTransfer server: an interactive shell, or batches.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", nargs="?", metavar="TARGET", help="bookmark or user@host:port")
    parser.add_argument("--host", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="server port (default 9002)")
    parser.add_argument("--user", help="user name (prompted for when not given)")
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("-c", dest="commands", metavar="CMDS", help='commands, e.g. "cd a; get b"')
    batch.add_argument(
        "-b", dest="batch", metavar="FILE", help="run commands from FILE (- = stdin)"
    )
    parser.add_argument("--tls", action="store_true", help="use TLS, verifying the server")
    parser.add_argument(
        "--cafile", metavar="FILE", help="trust the CA certificates in FILE (implies --tls)"
    )
    parser.add_argument("--json", action="store_true", help="ls, stat and transfers as JSON lines")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, no summaries")
    parser.add_argument(
        "--retries", type=int, default=0, metavar="N", help="batch: reconnect N times if lost"
    )
    return parser


def _ssl() -> ModuleType:
    """The ``ssl`` module, imported only when needed: it costs 10-20 ms at start."""
    return importlib.import_module("ssl")


def _error(text: str) -> int:
    print(f"ftpclient: {text}", file=sys.stderr)
    return EXIT_USAGE


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
                    shell.out.error(f"ftpclient: connection lost: {exc}")
                    return EXIT_USAGE
                attempt += 1
                delay = min(30.0, 0.5 * 2 ** (attempt - 1))
                shell.out.warning(
                    f"connection lost ({exc}); retry {attempt} of {retries} in {delay:g} s"
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.retries < 0:
        return _error("--retries must be 0 or more")
    try:
        host, port, user = resolve_target(
            load_config(), args.target, Target(args.host, args.port, args.user)
        )
    except ConfigError as exc:
        return _error(str(exc))
    try:
        lines = _batch_lines(args)
    except OSError as exc:
        return _error(f"cannot read batch file: {exc.strerror}: {args.batch}")
    try:
        if not user:
            if not sys.stdin.isatty():
                return _error("no user given (use user@host or --user)")
            user = input("User: ").strip()
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = getpass.getpass(f"Password for {user}@{host}: ")
    except (EOFError, KeyboardInterrupt):
        return _error("cancelled")

    try:
        tls = tls_context(args.cafile) if args.tls or args.cafile else None
    except OSError as exc:  # ssl.SSLError is an OSError
        return _error(f"cannot use CA file {args.cafile}: {getattr(exc, 'strerror', None) or exc}")

    def connect() -> FileTransferClient:
        client = FileTransferClient(host, port, tls=tls)
        try:
            client.login(user, password)
        except BaseException:
            client.close()
            raise
        return client

    try:
        client = connect()
    except ProtocolError as exc:
        return _error(f"login failed: {exc.text}")
    except _ssl().SSLCertVerificationError as exc:  # evaluated only when there is an error
        return _error(f"cannot connect to {host}:{port}: certificate refused: {exc.verify_message}")
    except OSError as exc:
        return _error(f"cannot connect to {host}:{port}: {exc.strerror or exc}")
    out = Output(sys.stdout, sys.stderr, json_mode=args.json, quiet=args.quiet)
    shell = ClientShell(client, out, connect, interactive=lines is None)
    try:
        if lines is not None:
            return run_batch(shell, lines, args.retries)
        return _interactive(shell)
    except (ConnectionError, TimeoutError) as exc:
        return _error(f"connection lost: {exc}")
    finally:
        shell.client.close()


if __name__ == "__main__":
    sys.exit(main())
