"""pyftpdlib as the benchmark runs it: a script for the interpreter of ``bench/.venv``.

Its best configuration for this work: the asynchronous ``FTPServer`` (one
thread, epoll), ``sendfile`` for downloads (pyftpdlib's default), logging at
WARNING, a backlog of 256 and no connection limits that the workloads could
hit.  One user with full rights on ``--home`` and a plain-text password
(pyftpdlib's ``DummyAuthorizer``: no password hashing).

    bench/.venv/bin/python bench/pyftpd_server.py --home DIR --user U --password P --port 0

prints ``listening on HOST:PORT`` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.log import config_logging
from pyftpdlib.servers import FTPServer


def main() -> int:
    """Run the server until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=256)
    parser.add_argument("--max-cons", type=int, default=4096)
    args = parser.parse_args()

    config_logging(level=logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.home, perm="elradfmwMT")

    class Handler(FTPHandler):  # type: ignore[misc]
        """The stock handler with our authorizer."""

    Handler.authorizer = authorizer
    Handler.banner = "pyftpdlib ready"
    server = FTPServer((args.host, args.port), Handler, backlog=args.backlog)
    server.max_cons = args.max_cons
    server.max_cons_per_ip = 0

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    host, port = server.socket.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever(handle_exit=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
