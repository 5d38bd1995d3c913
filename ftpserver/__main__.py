"""The ``ftpserver`` command line: ``serve``, ``check-config`` and the user commands.

Settings come from built-in defaults, overridden by the config file
(``--config``, or ``config/server.yaml`` when it exists), overridden by flags.
Exit status: 0 on success, 1 on an error (bad config, unknown user, ...),
2 on a usage error.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ftpproto.commands import RIGHTS
from ftpserver import users as userfile
from ftpserver.audit import configure_logging
from ftpserver.config import DEFAULT_CONFIG, ConfigError, Settings, load_settings
from ftpserver.limits import fit_warning, nofile_limits, prepare_descriptors
from ftpserver.server import FileTransferServer
from ftpserver.signals import SignalCounter
from ftpserver.workers import serve_workers

__all__ = ["main"]

log = logging.getLogger("ftpserver")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftpserver", description="FileTransfer server daemon")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help=f"settings file (default {DEFAULT_CONFIG})")
        p.add_argument("--users", type=Path, help="users file (default config/users.yaml)")

    check = sub.add_parser("check-config", help="validate server.yaml and users.yaml")
    common(check)
    check.add_argument("--home", type=Path, help="folder holding the users' homes")
    check.add_argument("--host", help=argparse.SUPPRESS)
    check.add_argument("--port", type=int, help=argparse.SUPPRESS)

    serve = sub.add_parser("serve", help="run the server")
    common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on, 0 for any (default 9002)")
    serve.add_argument("--home", type=Path, help="folder holding the users' homes (default home/)")

    def limits(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quota", metavar="SIZE", help="quota in bytes or with K/M/G/T; none")
        rights = p.add_mutually_exclusive_group()
        rights.add_argument(
            "--perms", metavar="RIGHTS", help=f"comma-separated rights: {', '.join(RIGHTS)}; all"
        )
        rights.add_argument("--read-only", action="store_true", help="only list and read")

    for name, text in (("useradd", "add a user"), ("passwd", "change a user's password")):
        p = sub.add_parser(name, help=text)
        p.add_argument("name", metavar="NAME")
        common(p)
        p.add_argument("--home", type=Path, help="folder holding the users' homes")
        p.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )
        if name == "useradd":
            limits(p)
    p = sub.add_parser("usermod", help="change a user's quota or rights")
    p.add_argument("name", metavar="NAME")
    common(p)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    limits(p)
    p = sub.add_parser("userdel", help="remove a user (the home folder is kept)")
    p.add_argument("name", metavar="NAME")
    common(p)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    config: Path | None = args.config
    if config is None and DEFAULT_CONFIG.exists():
        config = DEFAULT_CONFIG
    settings = load_settings(config) if config is not None else Settings()
    return settings.replace(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        users=args.users,
        home=args.home,
    )


def _perms(args: argparse.Namespace) -> str | None:
    return "read-only" if args.read_only else args.perms


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise ValueError("the passwords do not match")
    userfile.check_password_rules(password)
    return password


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings)
    if not settings.users.exists():
        password = secrets.token_urlsafe(12)
        userfile.add_user(settings.users, settings.home, "demo", password, settings.bcrypt_rounds)
        print(f"created {settings.users} with user 'demo', password: {password}", flush=True)
    store = userfile.load_users(settings.users, settings.home)
    for user in store.users.values():
        user.home.mkdir(parents=True, exist_ok=True)
    prepare_descriptors(settings.max_sessions)
    if settings.workers != 1:
        return serve_workers(settings, store, lambda: _settings(args), _run)
    server = FileTransferServer(settings, store, lambda: _settings(args))
    server.start_sweeper()
    host, port = server.address
    print(f"listening on {host}:{port}", flush=True)
    log.info("serving %d users from %s", len(store.users), settings.home)
    return _run(server)


def _run(
    server: FileTransferServer,
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> int:
    """Serve until one of ``stop_signals``, reloading on SIGHUP; then stop gracefully."""
    signals = SignalCounter((*stop_signals, signal.SIGHUP))

    def stops() -> int:
        return sum(signals[signum] for signum in stop_signals)

    reloads = 0
    threading.Thread(target=server.serve_forever, args=(0.5,), daemon=True).start()
    try:
        while not stops():
            signals.wait(1.0)
            if signals[signal.SIGHUP] > reloads:
                reloads = signals[signal.SIGHUP]
                server.reload()
        grace = server.settings.shutdown_grace
        log.info("stopping: no new sessions; running transfers get %g s", grace)
        server.shutdown()
        cut = server.drain(grace, lambda: stops() > 1)
        if cut:
            log.warning("stopped %d sessions that were still busy", cut)
    finally:
        server.server_close()
        log.info("stopped")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    """Validate the settings and users files; print every problem with file and line."""
    problems: list[str] = []
    try:
        settings = _settings(args)
    except ConfigError as exc:
        problems += [str(p) for p in exc.problems]
        settings = Settings().replace(users=args.users, home=args.home)
    try:
        if settings.users.exists():
            userfile.load_users(settings.users, settings.home)
        else:
            problems.append(f"{settings.users}: no such file (serve would create it)")
    except ConfigError as exc:
        problems += [str(p) for p in exc.problems]
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    warning = fit_warning(settings.max_sessions, nofile_limits()[1])  # serve raises soft to hard
    if warning is not None:
        print(f"warning: {warning}")
    print(f"configuration OK: {settings.users}, homes in {settings.home}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args)
    try:
        settings = _settings(args)
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "useradd":
            password = _read_password(args.password_stdin)
            home = userfile.add_user(
                settings.users,
                settings.home,
                args.name,
                password,
                settings.bcrypt_rounds,
                args.quota,
                _perms(args),
            )
            print(f"added user {args.name} with home {home}")
        elif args.command == "usermod":
            if args.quota is None and _perms(args) is None:
                raise ValueError("nothing to change: give --quota, --perms or --read-only")
            userfile.modify_user(settings.users, args.name, args.quota, _perms(args))
            print(f"changed user {args.name}")
        elif args.command == "passwd":
            password = _read_password(args.password_stdin)
            userfile.set_password(settings.users, args.name, password, settings.bcrypt_rounds)
            print(f"changed the password of {args.name}")
        elif args.command == "userdel":
            userfile.remove_user(settings.users, args.name)
            print(f"removed user {args.name} (the home folder is kept)")
    except ConfigError as exc:
        more = len(exc.problems) - 1
        hint = f" (and {more} more: see 'ftpserver check-config')" if more else ""
        print(f"ftpserver: error: {exc.problems[0]}{hint}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"ftpserver: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"ftpserver: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("ftpserver: cancelled", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
