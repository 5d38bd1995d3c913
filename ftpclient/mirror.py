"""``mirror``: make one folder tree like another, moving only what changed (as lftp's mirror).

Three steps, each its own function:

1. **Look** at both trees (:func:`look`): the remote one with one ``tree``
   request (:meth:`~ftpclient.client.FileTransferClient.tree`, digests
   included with ``-c``), the local one with ``os.scandir``
   (:func:`~ftpclient.localtree.local_tree`) and, with ``-c``, the local
   files' digests, while the server answers: an unchanged ``mirror -c``
   takes about the longer of the two, and the parse of the answer.
2. **Plan** (:func:`plan_mirror`, no I/O but the optional local hashing): a
   source file is copied when the destination lacks it or holds another
   size or modification time; with ``by_digest`` (``-c``) another size or
   BLAKE3 digest decides, and a file with the same content but another time
   only gets its time set.  With ``delete`` what the source no longer has
   is removed, and a file where the source has a folder (or the other way
   round) is removed first; without it such a clash is skipped and reported.
3. **Run** the plan (:func:`run_plan`): folders, then the copies through
   :func:`ftpclient.copying.copy_files` (modification times kept: that is
   what makes the next mirror see the files unchanged), then times, then
   deletions.  A download keeps the digests it verified in the local
   tree's :class:`~ftpclient.digestcache.DigestCache` (:func:`keep_digests`),
   so the next ``mirror -c`` need not read those files.

Links and special files in the source are never followed, only reported.
"""

from __future__ import annotations

import os
import posixpath
import stat
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from ftpclient.client import FileTransferClient, LocalError
from ftpclient.copying import CopyResult, OnFile, copy_files
from ftpclient.localtree import Digest, FileInfo, Tree, local_digest, local_tree
from ftpproto.errors import ErrorCode, RemoteError

if TYPE_CHECKING:
    from ftpclient.digestcache import DigestCache

AHEAD_MOST = 4 * 1024 * 1024  # mirror -c hashes local files up to this size before comparing

__all__ = [
    "FileInfo",
    "MirrorEnds",
    "MirrorPlan",
    "Tree",
    "keep_digests",
    "local_digest",
    "local_tree",
    "look",
    "plan_mirror",
    "remote_tree",
    "run_plan",
]


class MirrorPlan:
    """What a mirror does, by relative path."""

    __slots__ = (
        "copy",
        "make_folders",
        "remove",
        "remove_first",
        "set_time",
        "skipped",
        "unchanged",
    )

    def __init__(self, skipped: list[str] | None = None) -> None:
        self.copy: list[str] = []
        self.set_time: list[tuple[str, int]] = []
        self.make_folders: list[str] = []  # parents first
        self.remove_first: list[str] = []  # clashes, removed before copying
        self.remove: list[str] = []  # gone from the source (deepest first)
        # links, special files, clashes
        self.skipped: list[str] = [] if skipped is None else skipped
        self.unchanged = 0


def remote_tree(client: FileTransferClient) -> Tree:
    """The remote tree from the answer to ``client.send_tree``; a missing root is an empty tree."""
    try:
        entries = client.read_tree()
    except RemoteError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            return Tree(exists=False)
        if exc.code == ErrorCode.UNKNOWN_COMMAND:
            raise RemoteError(
                exc.code, "this server cannot mirror (it has no tree request)"
            ) from None
        raise
    tree = Tree()
    for entry in entries:
        if entry.type == "file":
            tree.files[entry.path] = FileInfo(entry.size, entry.mtime, entry.blake3)
        elif entry.type == "dir":
            tree.folders.add(entry.path)
        else:
            tree.others.add(entry.path)
    return tree


def look(
    client: FileTransferClient,
    ends: MirrorEnds,
    by_digest: bool,
    cache: DigestCache | None = None,
) -> tuple[Tree, Tree, Digest]:
    """The remote tree, the local tree and the local files' digests, looked at side by side.

    The ``tree`` request goes out first; while the server answers, this
    thread walks the local tree, with ``by_digest`` hashing every file of up
    to :data:`AHEAD_MOST` bytes (a bigger one is read only if its size
    matches the other side's; forked helpers hash a big tree's files with
    this thread, each taking the next chunk when free), and a helper thread
    reads the answer off the connection and parses it (started after any
    fork; with nothing to hash, this thread reads it after the walk).  The
    time the parsing takes from this thread's hashing goes to the helpers,
    so it is not left to run alone after the hashing.  The
    digest callback returned gives what was hashed ahead and hashes
    anything else when asked.  With ``cache``, local files whose digests it
    keeps are not read, what is hashed is kept there, and files no longer
    in the local tree are dropped from it.  The local side's error, if any,
    is raised after the remote's.
    """
    digest = local_digest(ends.local, cache)
    done: dict[str, str] = {}
    remote: list[Tree] = []
    failed: list[BaseException] = []

    def read_answer() -> None:
        try:
            remote.append(remote_tree(client))
        except BaseException as exc:  # raised in the caller's thread
            failed.append(exc)

    client.send_tree(ends.remote, by_digest)
    # started once any hashing helpers are forked: a thread must not exist before
    reader = threading.Thread(target=read_answer, name="mirror-answer", daemon=True)
    local: Tree | Exception
    try:
        local = local_tree(ends.local, done if by_digest else None, AHEAD_MOST, reader.start, cache)
    except Exception as exc:  # raised after the remote side's
        local = exc
    # (Ctrl-C goes up at once: the shell then closes the connection, which ends the reader.)
    if reader.ident is None:  # the local side failed before it was started
        read_answer()
    else:
        reader.join()
    if failed:
        raise failed[0]
    if isinstance(local, Exception):
        raise local
    if cache is not None:
        cache.keep_only(local.files)
    return remote[0], local, lambda path: done.get(path) or digest(path)


def plan_mirror(
    source: Tree,
    target: Tree,
    by_digest: bool = False,
    delete: bool = False,
    source_digest: Digest | None = None,
    target_digest: Digest | None = None,
) -> MirrorPlan:
    """Compare ``source`` with ``target``; the ``*_digest`` callbacks fill unknown digests."""
    plan = MirrorPlan(skipped=sorted(source.others))
    for folder in sorted(source.folders):
        if folder in target.folders:
            continue
        if _under(folder, plan.skipped):
            plan.skipped.append(folder)
            continue
        if folder in target.files or folder in target.others:
            if not delete:
                plan.skipped.append(folder)
                continue
            plan.remove_first.append(folder)
        plan.make_folders.append(folder)
    for path in sorted(source.files):
        if _under(path, plan.skipped):
            plan.skipped.append(path)
            continue
        info = source.files[path]
        if path in target.folders or path in target.others:
            if not delete:
                plan.skipped.append(path)
                continue
            plan.remove_first.append(path)
            plan.copy.append(path)
            continue
        have = target.files.get(path)
        if have is None or have.size != info.size:
            plan.copy.append(path)
        elif not by_digest:
            if have.mtime == info.mtime:
                plan.unchanged += 1
            else:
                plan.copy.append(path)
        elif _same_content(path, info, have, source_digest, target_digest):
            plan.unchanged += 1
            if have.mtime != info.mtime:
                plan.set_time.append((path, info.mtime))
        else:
            plan.copy.append(path)
    if delete:  # what goes with a clash's folder is not removed again
        plan.remove = [p for p in _extra(source, target) if not _under(p, plan.remove_first)]
    return plan


def _under(path: str, folders: list[str]) -> bool:
    """Whether ``path`` is inside one of ``folders``."""
    return bool(folders) and any(path.startswith(prefix + "/") for prefix in folders)


def _same_content(
    path: str, info: FileInfo, have: FileInfo, source: Digest | None, target: Digest | None
) -> bool:
    ours = info.blake3 or (source(path) if source else None)
    theirs = have.blake3 or (target(path) if target else None)
    return ours is not None and ours == theirs


def _extra(source: Tree, target: Tree) -> list[str]:
    """What the target has and the source does not: top-most paths only, deepest first."""
    keep = source.files.keys() | source.folders
    extra = sorted(
        p for p in (target.files.keys() | target.folders | target.others) if p not in keep
    )
    top: list[str] = []
    for path in extra:
        if not any(path.startswith(parent + "/") for parent in top):
            top.append(path)
    return sorted(top, key=lambda p: (-p.count("/"), p))


class MirrorEnds(NamedTuple):
    """The two roots of a mirror and its direction (``get``: download, ``put``: upload)."""

    direction: str
    remote: str
    local: str

    def source(self, relative: str) -> str:
        return self._remote(relative) if self.direction == "get" else self._local(relative)

    def target(self, relative: str) -> str:
        return self._local(relative) if self.direction == "get" else self._remote(relative)

    def _remote(self, relative: str) -> str:
        return posixpath.join(self.remote, relative) if relative else self.remote

    def _local(self, relative: str) -> str:
        return os.path.join(self.local, *relative.split("/")) if relative else self.local


def run_plan(
    client: FileTransferClient,
    ends: MirrorEnds,
    plan: MirrorPlan,
    source: Tree,
    target_exists: bool,
    on_file: OnFile | None = None,
) -> CopyResult:
    """Carry out ``plan`` from ``source`` to the other end; returns what was copied."""
    for path in plan.remove_first:
        _remove(client, ends, path)
    if not target_exists:
        _make_folder(client, ends, "")
    for folder in plan.make_folders:
        _make_folder(client, ends, folder)
    pairs = [(ends.source(path), ends.target(path)) for path in plan.copy]
    mtimes = {ends.source(path): source.files[path].mtime for path in plan.copy}
    result = copy_files(client, ends.direction, pairs, True, on_file, None, mtimes)
    if ends.direction == "get":
        for path, mtime in plan.set_time:
            try:
                os.utime(ends.target(path), (mtime, mtime))
            except OSError as exc:
                result.mtime_failures.append(f"{ends.target(path)}: {exc.strerror}")
    elif plan.set_time:
        times = [(ends.target(path), mtime) for path, mtime in plan.set_time]
        for (path, _), outcome in zip(times, client.touch_many(times), strict=True):
            if outcome is not None:
                result.mtime_failures.append(f"{path}: {outcome}")
    for path in plan.remove:
        _remove(client, ends, path)
    return result


def keep_digests(
    cache: DigestCache,
    ends: MirrorEnds,
    plan: MirrorPlan,
    source: Tree,
    result: CopyResult,
    relative: Mapping[str, str],
) -> None:
    """After a download, keep in ``cache`` the digests of what ``run_plan`` wrote.

    ``relative`` gives the relative path of each copy by its remote path.
    A copied file's digest is the one its bytes were verified with; a file
    that only got its time set has the source's (``-c`` found them equal).
    Each is kept with the status the file has now, after its time was set.
    What was removed is dropped.
    """
    written = [(relative.get(done.remote, ""), done.blake3) for done in result.files]
    written += [(path, source.files[path].blake3 or "") for path, _ in plan.set_time]
    for path in plan.remove_first + plan.remove:
        cache.forget(path)
    for path, digest in written:
        if not path:
            continue
        try:
            st = os.lstat(ends.target(path))
        except OSError:
            cache.forget(path)
            continue
        if digest and stat.S_ISREG(st.st_mode):
            cache.remember(path, st, digest)


def _make_folder(client: FileTransferClient, ends: MirrorEnds, relative: str) -> None:
    if ends.direction == "get":
        try:
            os.makedirs(ends.target(relative), exist_ok=True)
        except OSError as exc:
            raise LocalError(f"{exc.strerror}: {ends.target(relative)}") from exc
    else:
        client.mkdir(ends.target(relative), parents=True)


def _remove(client: FileTransferClient, ends: MirrorEnds, relative: str) -> None:
    """Remove a target path (a folder with all it holds; a link as a link)."""
    path = ends.target(relative)
    if ends.direction == "put":
        client.rm(path, recursive=True)
        return
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil  # here, not at the top: only a removal needs it (3 ms at every start)

            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        raise LocalError(f"{exc.strerror}: {path}") from exc
