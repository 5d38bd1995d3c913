"""A load worker: one process running many client threads against one server.

The benchmark starts several of these (``--client-procs``) so the client side
is not held to one core by the GIL.  Protocol with the parent, on stdin and
stdout:

1. the parent runs ``python -m bench.loadgen SPEC_JSON``;
2. every thread gets ready (for transfers: connected and logged in) and the
   worker prints ``ready``;
3. the parent writes ``go`` to every worker at once (noting the time);
4. the threads run; the worker prints one JSON line: the ``time.monotonic()``
   when its last thread finished (the clock is shared by all processes), the
   bytes and requests done, its CPU seconds, and any errors.

Tasks: ``download`` (each thread fetches ``remote`` to its own local file),
``upload`` (each thread sends ``local`` to its own remote name), ``small``
(each thread connects, logs in and sends ``commands`` requests alternating
``pwd`` and ``ls LS_PATH`` after the go, then quits) and ``chatter`` (the
same requests from sessions logged in before the go).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.clients import open_session, tls_for
from bench.servers import ServerInfo

__all__ = ["Spec", "run"]


@dataclass
class Spec:
    """What one worker does."""

    info: ServerInfo
    task: str  # download, upload, small or chatter
    threads: int
    index: int = 0  # this worker's number, for unique file names
    remote: str = ""  # download: the file to fetch
    local: str = ""  # upload: the file to send
    outdir: str = ""  # download: where the files go
    commands: int = 50
    ls_path: str = "small"

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """The spec from its JSON form."""
        data = json.loads(text)
        data["info"] = ServerInfo(**data["info"])
        return cls(**data)


@dataclass
class _Totals:
    lock: threading.Lock = field(default_factory=threading.Lock)
    bytes: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, count: int = 0, requests: int = 0, error: str | None = None) -> None:
        with self.lock:
            self.bytes += count
            self.requests += requests
            if error is not None and len(self.errors) < 20:
                self.errors.append(error)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run(spec: Spec, wait_for_go: Any = None) -> dict[str, Any]:
    """Run ``spec``; ``wait_for_go`` is called once all threads are ready (default: stdin)."""
    totals = _Totals()
    ready = threading.Barrier(spec.threads + 1)
    go = threading.Event()
    tls = tls_for(spec.info)

    def transfer(number: int) -> None:
        session = None
        try:
            session = open_session(spec.info, tls=tls)
        except Exception as exc:
            totals.add(error=f"connect/login: {_describe(exc)}")
        ready.wait()
        go.wait()
        if session is None:
            return
        name = f"{spec.index}-{number}"
        try:
            if spec.task == "download":
                local = os.path.join(spec.outdir, f"dl-{name}.bin")
                totals.add(session.download(spec.remote, local))
            elif spec.task == "chatter":
                totals.add(requests=requests(session))
            else:
                totals.add(session.upload(spec.local, f"up-{name}.bin"))
            session.quit()
        except Exception as exc:
            totals.add(error=f"{spec.task}: {_describe(exc)}")
            session.close()

    def requests(session: Any) -> int:
        """``spec.commands`` requests, pwd and ls in turn; how many were answered."""
        for i in range(spec.commands):
            if i % 2:
                session.ls(spec.ls_path)
            else:
                session.pwd()
        return spec.commands

    def small(number: int) -> None:
        ready.wait()
        go.wait()
        try:
            session = open_session(spec.info, tls=tls)
        except Exception as exc:
            totals.add(error=f"connect/login: {_describe(exc)}")
            return
        done = 1  # the login
        try:
            done += requests(session)
            session.quit()
        except Exception as exc:
            totals.add(error=f"small: {_describe(exc)}")
            session.close()
        totals.add(requests=done)

    target = small if spec.task == "small" else transfer
    threads = [threading.Thread(target=target, args=(n,), daemon=True) for n in range(spec.threads)]
    for thread in threads:
        thread.start()
    ready.wait()
    (wait_for_go or _wait_for_go)()
    started = time.monotonic()
    cpu_before = os.times()
    go.set()
    for thread in threads:
        thread.join()
    end = time.monotonic()
    cpu_after = os.times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "start": started,
        "end": end,
        "bytes": totals.bytes,
        "requests": totals.requests,
        "cpu": cpu,
        "errors": totals.errors,
    }


def _wait_for_go() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit("no go from the parent")


def main() -> int:
    """Run the spec given as the first argument; print the result as JSON."""
    result = run(Spec.from_json(sys.argv[1]))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
