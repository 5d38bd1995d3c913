"""The ``ftpserver`` command line: ``serve``, ``check-config`` and the user commands.

Settings come from built-in defaults, overridden by the config file
(``--config``, or ``config/server.yaml`` when it exists), overridden by flags.
Exit status: 0 on success, 1 on an error (bad config, unknown user, ...),
2 on a usage error.

``serve`` invents no setup: it creates a users file with a ``demo`` user
only for the quick start (the checkout's own ``config/users.yaml``) or with
``--init``.  The user commands rewrite the users file, which a running server
reads again at its next login.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ftpproto.commands import RIGHTS
from ftpproto.version import VersionAction
from ftpserver import admin, userlist
from ftpserver import users as userfile
from ftpserver.audit import configure_logging
from ftpserver.cluster.serving import admin_services, join, leave, open_cluster, print_nodes
from ftpserver.config import DEFAULT_CONFIG, ConfigError, Settings, load_settings
from ftpserver.limits import fit_warning, nofile_limits, prepare_descriptors
from ftpserver.server import FileTransferServer
from ftpserver.signals import SignalCounter
from ftpserver.workers import serve_workers

__all__ = ["main"]

log = logging.getLogger("ftpserver")

# The quick start's users file: the only one serve creates without --init.
QUICK_START_USERS = Path(__file__).resolve().parents[1] / "config" / "users.yaml"
APPLIED = "the running server applies this at the next login"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftpserver", description="FileTransfer server daemon")
    parser.add_argument("--version", action=VersionAction)
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
    serve.add_argument(
        "--init",
        action="store_true",
        help="create a missing users file (with a user 'demo') and home folder",
    )

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
    p = sub.add_parser("usermod", help="change a user's quota, rights, state, limits or keys")
    p.add_argument("name", metavar="NAME")
    common(p)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    limits(p)
    _account_options(p)
    _key_options(p)
    p = sub.add_parser("users", help="list the users: state, usage, quota, rights, limits")
    common(p)
    p.add_argument("--home", type=Path, help="folder holding the users' homes")
    p.add_argument("--json", action="store_true", help="print JSON (sizes in bytes)")
    p = sub.add_parser("nodes", help="list the nodes in the shared state (shared_state)")
    p.add_argument("--config", type=Path, help=f"settings file (default {DEFAULT_CONFIG})")
    p.add_argument("--users", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    p = sub.add_parser("userdel", help="remove a user (the home folder is kept)")
    p.add_argument("name", metavar="NAME")
    common(p)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    admin.register(sub)
    return parser


def _account_options(p: argparse.ArgumentParser) -> None:
    """usermod's account options (state and per-user limits)."""
    state = p.add_mutually_exclusive_group()
    state.add_argument("--lock", action="store_true", help="refuse every login of the user")
    state.add_argument("--unlock", action="store_true", help="allow logins again")
    p.add_argument(
        "--expires", metavar="DATE", help="no login from DATE (YYYY-MM-DD, UTC) on; never"
    )
    p.add_argument(
        "--max-sessions", metavar="N", help="sessions of this user at once; 0 for no limit"
    )
    for direction in ("upload", "download"):
        p.add_argument(
            f"--{direction}-rate",
            metavar="RATE",
            help=f"{direction} bytes per second (with K/M/G), over all sessions; none",
        )


def _account_change(args: argparse.Namespace) -> userfile.AccountChange:
    return userfile.AccountChange(
        quota=args.quota,
        perms=_perms(args),
        upload_rate=args.upload_rate,
        download_rate=args.download_rate,
        locked=True if args.lock else False if args.unlock else None,
        expires=args.expires,
        max_sessions=args.max_sessions,
    )


def _key_options(p: argparse.ArgumentParser) -> None:
    keys = p.add_argument_group("public keys (key login)")
    keys.add_argument(
        "--add-key",
        action="append",
        default=[],
        metavar="KEY",
        help="add 'ssh-ed25519 AAAA... comment'",
    )
    keys.add_argument(
        "--add-key-file",
        action="append",
        default=[],
        metavar="FILE",
        help="add the key(s) in FILE (a .pub file)",
    )
    keys.add_argument(
        "--remove-key",
        action="append",
        default=[],
        metavar="KEY",
        help="remove a key: its fingerprint (SHA256:...), its comment or the key",
    )
    keys.add_argument(
        "--no-password", action="store_true", help="remove the password: only keys log in"
    )


def _change_keys(args: argparse.Namespace, settings: Settings) -> None:
    """The key options of ``usermod``: one rewrite of the users file, then what changed."""
    texts = list(args.add_key)
    for name in args.add_key_file:
        texts.append(Path(name).read_text(encoding="utf-8"))
    added, removed = userfile.change_keys(
        settings.users, args.name, "\n".join(texts), args.remove_key, args.no_password
    )
    for verb, keys in (("added", added), ("removed", removed)):
        for key in keys:
            print(f"{verb} key {key.fingerprint} {key.comment}".rstrip())
    if args.no_password:
        print(f"removed the password of {args.name}: only keys log in")


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
    elif not sys.stdin.isatty():
        raise ValueError("no terminal to ask for the password: give it with --password-stdin")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise ValueError("the passwords do not match")
    userfile.check_password_rules(password)
    return password


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings)
    create = args.init or settings.users.resolve() == QUICK_START_USERS
    if not settings.users.exists():
        if not create:
            raise ValueError(
                f"{settings.users}: no such users file (add a user with "
                "'ftpserver useradd NAME', or create one with a demo user: 'serve --init')"
            )
        password = secrets.token_urlsafe(12)
        userfile.add_user(settings.users, settings.home, "demo", password, settings.bcrypt_rounds)
        print(f"created {settings.users} with user 'demo', password: {password}", flush=True)
    store = userfile.load_users(settings.users, settings.home)
    missing = _missing_home_parent(settings)
    if missing and not create:
        raise ValueError(missing)
    for user in store.users.values():
        user.home.mkdir(parents=True, exist_ok=True)
    report_limits = prepare_descriptors(settings.max_sessions)
    if settings.workers != 1:
        return serve_workers(settings, store, lambda: _settings(args), _run, report_limits)
    # Held until _run's handlers are in place: a signal sent on seeing the
    # "listening" line must not meet the default action (SIGHUP would kill).
    # Blocked before any thread starts, since threads inherit the mask and a
    # signal goes to any thread that does not block it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGTERM, signal.SIGINT})
    cluster = open_cluster(settings)  # None: the state stays in this process
    shared = None if cluster is None else cluster.shared
    server = FileTransferServer(settings, store, lambda: _settings(args), shared=shared)
    join(cluster, server)
    try:
        with admin_services(cluster, server):
            server.start_sweeper()
            host, port = server.address
            log.info("serving %d users from %s", len(store.users), settings.home)
            print(f"listening on {host}:{port}", flush=True)
            report_limits()
            return _run(server)
    finally:
        leave(cluster)


def _run(
    server: FileTransferServer,
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    serving: Callable[[], None] = lambda: None,
) -> int:
    """Serve until one of ``stop_signals``, reloading on SIGHUP; then stop gracefully.

    ``serving`` is called once the server accepts connections and its signals are handled.
    """
    signals = SignalCounter((*stop_signals, signal.SIGHUP))

    def stops() -> int:
        return sum(signals[signum] for signum in stop_signals)

    reloads = 0
    threading.Thread(target=server.serve_forever, args=(0.5,), daemon=True).start()
    serving()
    try:
        while not stops():
            signals.wait(1.0)
            if signals[signal.SIGHUP] > reloads:
                reloads = signals[signal.SIGHUP]
                server.reload()
        grace = server.settings.shutdown_grace
        # A worker's stop is announced once by its supervisor; the worker says it at DEBUG.
        level = logging.INFO if server.local_state is not None else logging.DEBUG
        log.log(level, "stopping: no new sessions; running transfers get %g s", grace)
        server.shutdown()
        cut = server.drain(grace, lambda: stops() > 1)
        if cut:
            log.warning("stopped %d sessions that were still busy", cut)
    finally:
        server.server_close()
        log.log(logging.INFO if server.local_state is not None else logging.DEBUG, "stopped")
    return 0


def _missing_home_parent(settings: Settings) -> str | None:
    """The problem if the home root is missing and so is its parent (a typo, not a new setup)."""
    parent = settings.home.absolute().parent
    if settings.home.is_dir() or parent.is_dir():
        return None
    return f"home {settings.home}: the folder {parent} does not exist"


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
            problems.append(f"{settings.users}: no such file (create it with 'ftpserver useradd')")
    except ConfigError as exc:
        problems += [str(p) for p in exc.problems]
    if settings.storage == "s3" and settings.s3_bucket:
        from ftpserver.storage.s3client import check_bucket  # imports boto3: only for s3

        problems += [line for line in [check_bucket(settings)] if line]
    elif settings.storage == "local":
        missing = _missing_home_parent(settings)
        if missing:
            problems.append(missing)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    warning = fit_warning(settings.max_sessions, nofile_limits()[1])  # serve raises soft to hard
    if warning is not None:
        print(f"warning: {warning}")
    where = f"bucket {settings.s3_bucket}" if settings.storage == "s3" else settings.home
    print(f"configuration OK: {settings.users}, homes in {where}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args)
    if args.command in admin.COMMANDS:
        return admin.run(args, _settings)
    try:
        settings = _settings(args)
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "nodes":
            return print_nodes(settings)
        if args.command == "users":
            store = userfile.load_users(settings.users, settings.home)
            userlist.print_users(store, args.json, sys.stdout)
            return 0
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
            change = _account_change(args)
            key_change = args.add_key or args.add_key_file or args.remove_key or args.no_password
            if change.empty() and not key_change:
                raise ValueError("nothing to change: see 'ftpserver usermod --help'")
            if key_change:
                _change_keys(args, settings)
            if not change.empty():
                userfile.modify_user(settings.users, args.name, change=change)
            print(f"changed user {args.name}")
        elif args.command == "passwd":
            userfile.require_user(settings.users, args.name)
            password = _read_password(args.password_stdin)
            userfile.set_password(settings.users, args.name, password, settings.bcrypt_rounds)
            print(f"changed the password of {args.name}")
        elif args.command == "userdel":
            userfile.remove_user(settings.users, args.name)
            print(f"removed user {args.name} (the home folder is kept)")
        print(APPLIED)
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
