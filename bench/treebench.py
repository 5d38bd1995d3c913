"""The tree workloads of issue 15: ``tree`` and ``tree-big``, with their own setup.

``tree``: a tree of ``--tree-files`` files (1-64 KiB, ``--tree-folders``
folders) copied up and down, then an unchanged second ``mirror`` (by size and
time; ours also with ``-c``, by digest), by every
column (ours, ours-tls, rsync, sftp, lftp) on every link of ``--tree-links``.
``tree-big``: one file of ``--size-mib`` down and up over the delayed link,
ours against lftp/vsftpd.  Every client is a separate command (ours:
``python -m ftpclient -c ...``), timed from start to exit; every copy lands in
a fresh destination and is checked file by file (BLAKE3) outside the timed
part.  :func:`run` returns the figures, notes and every run for the JSON file.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.environment import make_certificate, make_file
from bench.links import CLIENT_ADDRESS, SERVER_ADDRESS, Link, ensure_iproute, netem_works, open_link
from bench.measure import MIB, rotated
from bench.peers import ensure_tools
from bench.servers import USER
from bench.treecolumns import COLUMNS, Column, Endpoint, Shared
from bench.treedata import check_copy, file_digest, hash_seconds, make_tree, tree_digests

__all__ = ["ROWS", "TREE_WORKLOADS", "TreeOptions", "TreeResults", "run"]

TREE_WORKLOADS = ("tree", "tree-big")
BIG_COLUMNS = ("ours", "ours-tls", "lftp")
NO_MIRROR = "n/a (no mirror in this client)"
ROWS = ("tree up", "tree down", "mirror, unchanged", "mirror -c, unchanged",
        "mirror -c --rehash, unchanged", "big down", "big up")  # fmt: skip


class NotAvailable(Exception):
    """This column cannot do this step (shown as the cell's text)."""


@dataclass(frozen=True)
class TreeOptions:
    """The options of the tree workloads (from the command line)."""

    files: int
    folders: int
    big_mib: int
    reps: int
    links: tuple[float, ...]  # round-trip times, seconds; 0 is loopback
    method: str  # auto, netem or proxy
    columns: tuple[str, ...]
    rounds: int
    timeout: float
    password: bool = False  # ours logs in with its password (bcrypt), not with a key


@dataclass
class TreeResults:
    """Seconds per (row, link) and column; notes where a cell has no figure; every run."""

    seconds: dict[tuple[str, str], dict[str, list[float]]] = field(default_factory=dict)
    notes: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # link name -> description


def _execute(argv: list[str], env: dict[str, str], timeout: float) -> float:
    """Run one client command; its wall-clock seconds. RuntimeError with its output if it fails."""
    os.sync()
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    seconds = time.perf_counter() - started
    output = (done.stdout + done.stderr).strip()
    if "unknown command: mirror" in output:
        raise NotAvailable(NO_MIRROR)
    if done.returncode != 0:
        command = shlex.join(argv)
        command = command if len(command) < 300 else "..." + command[-300:]
        raise RuntimeError(f"{command} exited {done.returncode}: {output[-600:]}")
    return seconds


class Runner:
    """Runs the steps of one column on one link, records them, and cleans up after each."""

    def __init__(self, opts: TreeOptions, shared: Shared, results: TreeResults) -> None:
        self.opts, self.shared, self.results = opts, shared, results
        self.tree = shared.tmp / "tree"
        self.digests: dict[str, tuple[int, str]] = {}
        self.big_digest = ""
        self.big_left: Path | None = None
        self.counter = 0

    def _fresh(self, base: Path, stem: str) -> Path:
        self.counter += 1
        return base / f"{stem}-{self.counter}"

    def _discard(self, path: Path) -> None:
        """Move a checked copy out of the way; :func:`run` deletes them all at the end.

        Not deleted now: on ext4 without a journal (as on the machine this
        was written on) creating a file skips every inode freed in the last
        minutes in its block group, one by one, so a tree deleted just before
        would slow down whichever column copies the next tree (2000 freed
        inodes made each new file cost 0.1-0.4 ms more).
        """
        if path.exists() or path.is_symlink():
            trash = self.shared.tmp / "trash"
            trash.mkdir(exist_ok=True)
            path.rename(trash / f"{path.name}-{time.monotonic_ns()}")

    def _record(self, row: str, link: Link, rep: int, column: str,
                step: Callable[[], float]) -> None:  # fmt: skip
        record: dict[str, Any] = {"row": row, "link": link.name, "rep": rep, "column": column}
        key = (row, link.name)
        try:
            seconds = step()
            record["seconds"] = round(seconds, 3)
            self.results.seconds.setdefault(key, {}).setdefault(column, []).append(seconds)
            text = f"{seconds:.2f} s"
        except NotAvailable as exc:
            record["na"] = str(exc)
            self.results.notes.setdefault(key, {})[column] = str(exc)
            text = str(exc)
        except Exception as exc:  # a failed run is reported and recorded, the others go on
            record["error"] = f"{type(exc).__name__}: {exc}"
            self.results.notes.setdefault(key, {})[column] = "ERROR"
            text = "ERROR " + record["error"]
        self.results.runs.append(record)
        print(f"[{row} {link.name} {rep}/{self.opts.reps}] {column:8} {text}", flush=True)

    def tree_steps(self, end: Endpoint, link: Link, rep: int) -> None:
        """Tree up, tree down, then an unchanged mirror of the downloaded copy."""
        remote = self._fresh(end.served, "up")

        def up() -> float:
            try:
                seconds = _execute(end.upload_tree(self.tree, remote.name), end.env,
                                   self.opts.timeout)  # fmt: skip
                check_copy(self.digests, remote)
                return seconds
            finally:
                self._discard(remote)

        local = self._fresh(self.shared.tmp / "client", "down")
        try:
            self._record("tree up", link, rep, end.column, up)

            def down() -> float:
                seconds = _execute(end.download_tree("tree", local), end.env, self.opts.timeout)
                check_copy(self.digests, local)
                return seconds

            self._record("tree down", link, rep, end.column, down)
            # The copy has the times (ours' tree down is a mirror): no mirror moves a file.
            # The plain mirror goes first in every column: on this VM the first command
            # after a tree down pays for new memory (docs/PERFORMANCE.md, stop 28), and
            # the -c rows are held to a bound measured with later, warm sessions.
            self._record("mirror, unchanged", link, rep, end.column,
                         lambda: self._mirror(end, link, local))  # fmt: skip
            # -c trusts the digests the download kept; --rehash reads every file again
            self._record("mirror -c, unchanged", link, rep, end.column,
                         lambda: self._mirror(end, link, local, by_digest=True))  # fmt: skip
            self._record("mirror -c --rehash, unchanged", link, rep, end.column,
                         lambda: self._mirror(end, link, local, True, rehash=True))  # fmt: skip
        finally:
            self._discard(local)

    def _mirror(self, end: Endpoint, link: Link, local: Path, by_digest: bool = False,
                rehash: bool = False) -> float:  # fmt: skip
        if not local.is_dir():
            raise RuntimeError("no downloaded copy to mirror onto")
        argv = end.mirror_tree("tree", local, by_digest, rehash)
        if argv is None:
            raise NotAvailable("n/a (compares by content only: ours -c)" if by_digest
                               else "n/a (no mirror command)")  # fmt: skip
        seconds = _execute(argv, end.env, self.opts.timeout)
        check_copy(self.digests, local)
        if by_digest and end.column.startswith("ours"):
            session = min(_execute(end.session(), end.env, 60) for _ in range(3))
            hashing = hash_seconds(local)
            budget = session + 3 * link.rtt + hashing
            facts = {"seconds": seconds, "session_s": session, "hash_s": hashing,
                     "rtt_s": link.rtt, "budget_s": budget}  # fmt: skip
            self.results.extra.setdefault("mirror-rehash" if rehash else "mirror", {}).setdefault(
                f"{end.column} {link.name}", []
            ).append(facts)
        return seconds

    def big_steps(self, end: Endpoint, link: Link, rep: int) -> None:
        """One big file down, then up.

        Each transfer starts right after the big file written before it is
        deleted (:meth:`release_big`), so that every column writes into
        memory the machine still holds.  In a virtual machine whose balloon
        reports free memory to the host, memory freed a second or more before
        is taken back, and the first write to it costs a host page fault per
        page: 366-479 MiB/s against 3900-4300 right after a delete (see
        docs/PERFORMANCE.md).  Deleting each file at the end of its own
        round instead made whichever column came next pay that, at random.
        """
        local = self._fresh(self.shared.tmp / "client", "big")
        remote = self._fresh(end.served, "up-big")

        def down() -> float:
            seconds = _execute(end.get_file("big.bin", local), end.env, self.opts.timeout)
            if file_digest(local) != self.big_digest:
                raise RuntimeError("the downloaded big file differs")
            return seconds

        def up() -> float:
            seconds = _execute(end.put_file(self.shared.tmp / "big.bin", remote.name), end.env,
                               self.opts.timeout)  # fmt: skip
            if file_digest(remote) != self.big_digest:
                raise RuntimeError("the uploaded big file differs")
            return seconds

        try:
            self.release_big()
            self.big_left = local
            self._record("big down", link, rep, end.column, down)
            self.release_big()
            self.big_left = remote
            self._record("big up", link, rep, end.column, up)
        except BaseException:  # a failed round keeps nothing
            for path in (local, remote):
                path.unlink(missing_ok=True)
            raise

    def release_big(self) -> None:
        """Delete the big file the last transfer wrote, if any (see :meth:`big_steps`)."""
        if self.big_left is not None:
            self.big_left.unlink(missing_ok=True)
            self.big_left = None


def _prepare(opts: TreeOptions, tmp: Path, big: bool) -> tuple[Shared, Runner, TreeResults]:
    """The tree, the big file, our user and certificate, and each server's copy of the files."""
    from ftpserver import users as userfile  # this work tree's server, for add_user

    root = tmp / "tree-bench"
    for name in ("client", "logs", "xdg"):
        (root / name).mkdir(parents=True)
    print(f"writing the test tree ({opts.files} files in {opts.folders} folders) ...", flush=True)
    total = make_tree(root / "tree", opts.files, opts.folders)
    password = secrets.token_urlsafe(16)
    home_root = root / "ours" / "home"
    users = root / "ours" / "users.yaml"
    (home_root / USER).mkdir(parents=True)
    userfile.add_user(users, home_root, USER, password, opts.rounds)
    cert, key = make_certificate(root, (SERVER_ADDRESS, CLIENT_ADDRESS, "127.0.0.2"))
    homes = {"ours": home_root / USER, "ssh": root / "ssh", "ftp": root / "ftp" / "root" / "pub"}
    shared = Shared(root, users, password, cert, key, opts.rounds, homes)
    if not opts.password:  # scripts log in with a key, as rsync and sftp do here
        from ftpclient.identity import generate  # this work tree's client

        shared.identity = root / "id_ed25519"
        userfile.change_keys(users, USER, add=generate(shared.identity).public_line(USER))
    results = TreeResults()
    runner = Runner(opts, shared, results)
    runner.digests = tree_digests(root / "tree")
    if big:
        print(f"writing the {opts.big_mib} MiB test file ...", flush=True)
        make_file(root / "big.bin", opts.big_mib * MIB)
        runner.big_digest = file_digest(root / "big.bin")
    for served in homes.values():
        served.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root / "tree", served / "tree", copy_function=os.link)
        if big:
            os.link(root / "big.bin", served / "big.bin")
    results.extra.update(tree_files=opts.files, tree_folders=opts.folders, tree_bytes=total,
                         login="password" if opts.password else "key")  # fmt: skip
    return shared, runner, results


def _method(opts: TreeOptions) -> str:
    """netem when it works here (unless told otherwise), else the delay proxy; says which."""
    if opts.method == "proxy" or (not any(opts.links) and opts.method == "auto"):
        return "proxy"
    note = ensure_iproute()
    if note:
        print(f"note: {note}")
    works, why = netem_works()
    if works:
        return "netem"
    if opts.method == "netem":
        raise SystemExit(f"--tree-link-method netem: netem is not available here ({why})")
    print(f"note: netem is not available here ({why}); the delayed link is a userland delay proxy")
    return "proxy"


def run(names: list[str], opts: TreeOptions, tmp: Path) -> TreeResults:
    """Run the selected tree workloads (``tree``, ``tree-big``); the results."""
    big_rtt = next((r for r in opts.links if r > 0), 0.05)
    links = list(opts.links) if "tree" in names else []
    if "tree-big" in names and big_rtt not in links:
        links.append(big_rtt)
    shared, runner, results = _prepare(opts, tmp, "tree-big" in names)
    method = _method(TreeOptions(**{**vars(opts), "links": tuple(links)}))
    reasons = ensure_tools([c for c in opts.columns if c in ("rsync", "sftp", "lftp")])
    columns = [c for c in opts.columns if c not in reasons]
    for column, reason in reasons.items():
        print(f"note: no {column} column: {reason}")
    results.extra["skipped_columns"] = reasons
    for rtt in links:
        with open_link(rtt, method) as link:
            results.links[link.name] = link.description
            print(f"link {link.name}: {link.description}", flush=True)
            for column, reason in reasons.items():
                for row in ROWS:
                    results.notes.setdefault((row, link.name), {})[column] = f"n/a ({reason})"
            for rep in range(1, opts.reps + 1):
                for column in rotated(columns, rep):
                    big = "tree-big" in names and rtt == big_rtt and column in BIG_COLUMNS
                    if "tree" not in names and not big:
                        continue
                    try:
                        with Column(column, shared).serve(link) as end:
                            if "tree" in names and rtt in opts.links:
                                runner.tree_steps(end, link, rep)
                            if big:
                                runner.big_steps(end, link, rep)
                    except Exception as exc:  # the server did not start: say so, go on
                        print(f"[{link.name} {rep}/{opts.reps}] {column:8} ERROR {exc}")
                        for row in ROWS:
                            results.notes.setdefault((row, link.name), {})[column] = "ERROR"
                        results.runs.append({"link": link.name, "rep": rep, "column": column,
                                             "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
    runner.release_big()
    shutil.rmtree(shared.tmp / "trash", ignore_errors=True)
    return results


def _links(text: str) -> tuple[float, ...]:
    """``loopback,50ms`` -> (0.0, 0.05)."""
    found = []
    for word in (w.strip().lower() for w in text.split(",") if w.strip()):
        if word in ("loopback", "lo", "0", "0ms"):
            found.append(0.0)
            continue
        try:
            found.append(float(word.removesuffix("ms")) / 1000)
        except ValueError:
            message = f"not a link: {word!r} (loopback or e.g. 50ms)"
            raise argparse.ArgumentTypeError(message) from None
    return tuple(found)


def _columns(text: str) -> tuple[str, ...]:
    chosen = tuple(w.strip() for w in text.split(",") if w.strip())
    unknown = [c for c in chosen if c not in COLUMNS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown columns {unknown}: use {', '.join(COLUMNS)}")
    return chosen


def add_options(parser: argparse.ArgumentParser) -> None:
    """The command-line options of the tree workloads."""
    group = parser.add_argument_group("tree workloads (--only t, tree, tree-big)")
    group.add_argument("--tree-files", type=int, default=2000, help="files in the tree (2000)")
    group.add_argument("--tree-folders", type=int, default=20, help="folders in the tree (20)")
    group.add_argument("--tree-reps", type=int, default=1, help="repetitions (1)")
    group.add_argument("--tree-links", type=_links, default=(0.0, 0.05),
                       help="links, by round trip: loopback,50ms (both)")  # fmt: skip
    group.add_argument("--tree-link-method", choices=("auto", "netem", "proxy"), default="auto",
                       help="how a delayed link is made: netem in namespaces when it works,"
                       " else a userland delay proxy (auto)")  # fmt: skip
    group.add_argument("--tree-columns", type=_columns, default=COLUMNS,
                       help=f"columns ({','.join(COLUMNS)})")  # fmt: skip
    group.add_argument("--tree-password", action="store_true",
                       help="ours logs in with the password (a bcrypt check on each fresh"
                       " server) instead of an Ed25519 key, as the ssh columns use")  # fmt: skip
    group.add_argument("--tree-timeout", type=float, default=3600.0,
                       help="seconds one client command may take (3600)")  # fmt: skip


def options(args: argparse.Namespace) -> TreeOptions:
    """The tree options from parsed arguments (the big file is ``--size-mib``)."""
    return TreeOptions(
        files=args.tree_files,
        folders=args.tree_folders,
        big_mib=args.size_mib,
        reps=args.tree_reps,
        links=args.tree_links,
        method=args.tree_link_method,
        columns=args.tree_columns,
        rounds=args.bcrypt_rounds,
        timeout=args.tree_timeout,
        password=args.tree_password,
    )
