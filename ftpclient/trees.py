"""Copying whole folder trees with ``get -r`` and ``put -r``.

Both walk the tree and move one file at a time through the verified
single-file transfers, so each file is checked by its BLAKE3 digest.  A failure
stops the copy and names the file; what was already copied stays, complete.
Symlinks are never followed out of the tree: remote links are skipped, and
local links are copied only when they point at a file inside the tree.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from ftpclient.client import FileTransferClient, LocalError, Monitor, TransferResult
from ftpproto.errors import ErrorCode, RemoteError

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
    pending = [(remote, root)]
    while pending:
        remote_dir, local_dir = pending.pop()
        try:
            os.makedirs(local_dir, exist_ok=True)
        except OSError as exc:
            raise LocalError(f"{exc.strerror}: {local_dir}") from exc
        result.folders += 1
        for entry in client.ls(remote_dir):
            remote_path = posixpath.join(remote_dir, entry.name)
            if not _safe_name(entry.name):
                result.skipped.append(remote_path)
            elif entry.type == "dir":
                pending.append((remote_path, os.path.join(local_dir, entry.name)))
            elif entry.type == "file":
                monitor = monitor_for(remote_path) if monitor_for else None
                done = client.get(remote_path, os.path.join(local_dir, entry.name), monitor, resume)
                result.files.append(done)
                if on_file:
                    on_file(done)
            else:
                result.skipped.append(remote_path)
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
    for folder, dirs, files in os.walk(local, followlinks=False):
        relative = os.path.relpath(folder, local)
        remote_dir = root if relative == "." else posixpath.join(root, *relative.split(os.sep))
        client.mkdir(remote_dir, parents=True)
        result.folders += 1
        for sub in dirs:
            if os.path.islink(os.path.join(folder, sub)):
                result.skipped.append(os.path.join(folder, sub))
        for file_name in sorted(files):
            path = os.path.join(folder, file_name)
            real = os.path.realpath(path)
            inside = os.path.commonpath([top, real]) == top
            if not inside or not os.path.isfile(real):
                result.skipped.append(path)
                continue
            monitor = monitor_for(path) if monitor_for else None
            done = client.put(path, posixpath.join(remote_dir, file_name), monitor, resume)
            result.files.append(done)
            if on_file:
                on_file(done)
    return result


def _remote_is_dir(client: FileTransferClient, remote: str) -> bool:
    try:
        return client.stat(remote).type == "dir"
    except RemoteError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            return False
        raise
