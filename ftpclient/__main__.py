"""The ``ftpclient`` command line: connect, log in, then a shell or a batch of commands.

Exit status: 0 when every command succeeded; 1 when a command failed (batch
modes stop at the first failure); 2 for a usage error, a refused or lost
connection, or a failed login.  Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType

from ftpclient.client import FileTransferClient
from ftpclient.shell import ClientShell, split_commands
from ftpproto.errors import ProtocolError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
PASSWORD_ENV = "FTPCLIENT_PASSWORD"
HISTORY_FILE = Path.home() / ".ftpclient_history"

EPILOG = f"""\
The password is read from the environment variable {PASSWORD_ENV} when it is
set, otherwise prompted for.

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
        description="Client for the FileTransfer server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9002, help="server port (default 9002)")
    parser.add_argument("--user", help="user name (prompted for when not given)")
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("-c", dest="commands", metavar="CMDS", help='commands, e.g. "cd a; get b"')
    batch.add_argument(
        "-b", dest="batch", metavar="FILE", help="run commands from FILE (- = stdin)"
    )
    return parser


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


def run_batch(shell: ClientShell, lines: Iterable[str]) -> int:
    """Run commands in order; stop at the first failure (exit status 1)."""
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if shell.onecmd(line):
            return EXIT_OK
        if shell.failed:
            return EXIT_FAILED
    return EXIT_OK


def _interactive(shell: ClientShell) -> int:
    readline: ModuleType | None
    try:
        readline = importlib.import_module("readline")
    except ImportError:  # pragma: no cover - readline is missing on some platforms
        readline = None
    if readline is not None:
        with contextlib.suppress(OSError):
            readline.read_history_file(HISTORY_FILE)
    try:
        while True:
            try:
                shell.cmdloop()
                return EXIT_OK
            except KeyboardInterrupt:
                shell.intro = ""
                shell.stdout.write("^C\n")
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(HISTORY_FILE)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        lines = _batch_lines(args)
    except OSError as exc:
        return _error(f"cannot read batch file: {exc.strerror}: {args.batch}")
    user = args.user
    try:
        if not user:
            if not sys.stdin.isatty():
                return _error("no user given (use --user)")
            user = input("User: ").strip()
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = getpass.getpass(f"Password for {user}@{args.host}: ")
    except (EOFError, KeyboardInterrupt):
        return _error("cancelled")
    try:
        client = FileTransferClient(args.host, args.port)
    except OSError as exc:
        return _error(f"cannot connect to {args.host}:{args.port}: {exc.strerror or exc}")
    try:
        try:
            client.login(user, password)
        except ProtocolError as exc:
            return _error(f"login failed: {exc.text}")
        shell = ClientShell(client)
        if lines is not None:
            return run_batch(shell, lines)
        return _interactive(shell)
    except (ConnectionError, TimeoutError) as exc:
        return _error(f"connection lost: {exc}")
    except OSError as exc:
        return _error(f"connection error: {exc.strerror or exc}")
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
