"""Copying whole folder trees with ``get -r`` and ``put -r``.

Both walk the tree first (``get -r`` lists each level of folders in one round
trip, ``put -r`` makes all folders in one), then move its files with
:func:`ftpclient.copying.copy_files`: pipelined on the one connection, each
checked by its BLAKE3 digest (with ``resume`` one at a time through the
resuming single-file transfers).  A failure stops the copy and names the
file; what was copied before it stays, complete.
Symlinks are never followed out of the tree: remote links are skipped, and
local links are copied only when they point at a file inside the tree.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ftpclient.client import Entry, FileTransferClient, LocalError, Monitor, TransferResult
from ftpclient.copying import copy_files
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.messages import Message, request
from ftpproto.pipeline import REQUEST_BYTES

__all__ = ["TreeResult", "get_tree", "put_tree"]

OnFile = Callable[[TransferResult], None]
MonitorFor = Callable[[str], Monitor | None]


@dataclass
class TreeResult:
    """Files copied and paths skipped (symlinks, special files) by a tree copy."""

    files: list[TransferResult] = field(default_factory=list)
    folders: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes copied."""
        return sum(result.size for result in self.files)


def _safe_name(name: str) -> bool:
    """Whether a remote name can be used as a local file name as it is."""
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name


def get_tree(
    client: FileTransferClient,
    remote: str,
    local: str | None = None,
    on_file: OnFile | None = None,
    monitor_for: MonitorFor | None = None,
    resume: bool = False,
) -> TreeResult:
    """Download the remote folder ``remote`` into ``local`` (default: its name here).

    ``on_file`` is told of each verified file, ``monitor_for`` gives a
    progress monitor per file, ``resume`` continues interrupted files.

    If ``local`` is an existing folder the tree goes inside it, as ``cp -r`` does.
    """
    name = posixpath.basename(remote.rstrip("/")) or "download"
    root = local or name
    if local and os.path.isdir(local):
        root = os.path.join(local, name)
    if client.stat(remote).type != "dir":
        raise LocalError(f"not a remote folder: {remote}")
    result = TreeResult()
    pairs: list[tuple[str, str]] = []
    level = [(remote, root)]
    while level:  # one round trip lists every folder of a level
        listings = _list_folders(client, [folder for folder, _ in level])
        below: list[tuple[str, str]] = []
        for (remote_dir, local_dir), listing in zip(level, listings, strict=True):
            try:
                os.makedirs(local_dir, exist_ok=True)
            except OSError as exc:
                raise LocalError(f"{exc.strerror}: {local_dir}") from exc
            result.folders += 1
            for entry in listing:
                remote_path = posixpath.join(remote_dir, entry.name)
                if not _safe_name(entry.name):
                    result.skipped.append(remote_path)
                elif entry.type == "dir":
                    below.append((remote_path, os.path.join(local_dir, entry.name)))
                elif entry.type == "file":
                    pairs.append((remote_path, os.path.join(local_dir, entry.name)))
                else:
                    result.skipped.append(remote_path)
        level = below
    copied = copy_files(client, "get", pairs, False, on_file, monitor_for, None, resume)
    result.files = copied.files
    return result


def put_tree(
    client: FileTransferClient,
    local: str,
    remote: str | None = None,
    on_file: OnFile | None = None,
    monitor_for: MonitorFor | None = None,
    resume: bool = False,
) -> TreeResult:
    """Upload the local folder ``local`` to ``remote`` (default: its name there).

    If ``remote`` is an existing folder the tree goes inside it, as ``cp -r`` does.
    """
    if not os.path.isdir(local):
        raise LocalError(f"not a folder: {local}")
    top = os.path.realpath(local)
    name = os.path.basename(top)
    root = remote or name
    if remote and _remote_is_dir(client, remote):
        root = posixpath.join(remote, name)
    result = TreeResult()
    pairs: list[tuple[str, str]] = []
    folders: list[str] = []
    for folder, dirs, files in os.walk(local, followlinks=False):
        relative = os.path.relpath(folder, local)
        remote_dir = root if relative == "." else posixpath.join(root, *relative.split(os.sep))
        folders.append(remote_dir)
        for sub in dirs:
            if os.path.islink(os.path.join(folder, sub)):
                result.skipped.append(os.path.join(folder, sub))
        for file_name in sorted(files):
            path = os.path.join(folder, file_name)
            if not _regular_inside(path, top):
                result.skipped.append(path)
                continue
            pairs.append((path, posixpath.join(remote_dir, file_name)))
    result.folders = _make_folders(client, folders)
    copied = copy_files(client, "put", pairs, False, on_file, monitor_for, None, resume)
    result.files = copied.files
    return result


def _regular_inside(path: str, top: str) -> bool:
    """Whether ``path`` (found by a walk of ``top`` that follows no link) is a file to send.

    A regular file is (the walk stayed inside); a link only if it leads to
    a regular file inside ``top``.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    if stat.S_ISREG(mode):
        return True
    if not stat.S_ISLNK(mode):
        return False
    real = os.path.realpath(path)
    return os.path.commonpath([top, real]) == top and os.path.isfile(real)


def _list_folders(client: FileTransferClient, folders: list[str]) -> list[list[Entry]]:
    """The listings of ``folders``, in order, the ``ls`` requests pipelined; the first error raised.

    Every answer is read before an error is raised, so the connection stays in step.
    """
    listings: list[list[Entry]] = []
    for batch in _batches([request("ls", folder) for folder in folders]):
        client.channel.send(*batch)
        failure: RemoteError | None = None
        for _ in batch:
            try:
                listings.append(client.read_listing())
            except RemoteError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
    return listings


def _batches(requests: list[Message]) -> Iterator[list[Message]]:
    """``requests`` in runs of at most :data:`REQUEST_BYTES` (at least one each)."""
    batch: list[Message] = []
    size = 0
    for message in requests:
        cost = len(message.encode()) + 4
        if batch and size + cost > REQUEST_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += cost
    if batch:
        yield batch


def _make_folders(client: FileTransferClient, folders: list[str]) -> int:
    """``mkdir -p`` of each folder, the requests pipelined; how many; the first error raised.

    The requests go in runs of at most :data:`REQUEST_BYTES` (their answers,
    which echo the paths, must fit in the socket buffers too).
    """
    for batch in _batches([request("mkdir", folder, "parents") for folder in folders]):
        client.channel.send(*batch)
        failure: RemoteError | None = None
        for _ in batch:
            try:
                client.channel.recv().expect("mkdir", "ok", 1)
            except RemoteError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
    return len(folders)


def _remote_is_dir(client: FileTransferClient, remote: str) -> bool:
    try:
        return client.stat(remote).type == "dir"
    except RemoteError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            return False
        raise
