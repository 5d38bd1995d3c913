"""Temporary upload names that say whose upload it is, and adopting a dead node's.

An upload is written to a temporary file next to its target (see
:class:`~ftpserver.storage.localfiles.LocalUpload`) named::

    .ftp-upload-<partial key>-<random>-<pid>-<node>

``<partial key>`` is the key of the target's kept partial upload (the
SHA-256 of its virtual path), so whoever finds the file knows where it
would be kept; ``<node>`` is the node's name in the shared state
(percent-encoded, or ``=`` and a digest of it when long; empty for a server
without shared state) and ``<pid>`` its process, so temporary names never
collide between nodes and a node restarted under the same name tells its
predecessor's files from its own.

With homes on a shared filesystem (a cluster), :class:`UploadOwners` says
which owners are alive: a temporary file of a live node is never touched
by another; one of a dead node (its lease ran out, or an earlier process
under this node's name) is *adopted*: renamed to the kept partial upload of
its target, so the client's next ``put`` resumes it (the prefix digest
check decides whether its bytes are usable).  A single server has no
owners: its temporary files are left over only from a crash of its own and
are removed when stale, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random as _random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from ftpserver.storage.paths import TEMP_PREFIX

if TYPE_CHECKING:
    from ftpserver.storage.homeaccount import HomeAccount

__all__ = [
    "TempName",
    "UploadOwners",
    "adopt",
    "dead_owners",
    "owner_tag",
    "parse_temp",
    "temp_name",
    "temps_in",
    "wait_for_owners",
]

_KEY_LENGTH = 64  # hex SHA-256
_RANDOM_LENGTH = 16
_MAX_TAG = 120  # keeps the whole name well under 255 bytes


class UploadOwners(Protocol):
    """Which nodes are alive (the shared state's leases), for temporary files on shared homes."""

    name: str  # this process's node name

    @property
    def lease(self) -> float:
        """``node_lease``: how long a dead node can still look alive, in seconds."""

    def live_nodes(self) -> dict[str, float]:
        """The nodes whose lease runs, with the seconds of lease each has left.

        Raises an error (any) when the shared state cannot say: the caller
        then treats every owner as alive.
        """


def owner_tag(node: str) -> str:
    """``node`` as it appears in a temporary name (no ``/``, bounded length)."""
    tag = quote(node, safe="")
    if len(tag) > _MAX_TAG:
        return "=" + hashlib.sha256(node.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return tag


@dataclass(frozen=True)
class TempName:
    """What a temporary name says (the partial key, the owner's tag and process), and where."""

    key: str
    tag: str
    pid: int
    path: str = ""


def temp_name(key: str, node: str, pid: int | None = None) -> str:
    """A fresh temporary name for an upload whose partial key is ``key``.

    The random part comes from :mod:`random` (seeded from the system and
    again in every forked child), not two system calls per upload as
    ``os.urandom`` and ``os.getpid`` take: it must only be unlikely to
    repeat, and the file is created with ``O_EXCL``, which fails if it did.
    """
    bits = f"{_random.getrandbits(_RANDOM_LENGTH * 4):0{_RANDOM_LENGTH}x}"
    return f"{TEMP_PREFIX}{key}-{bits}-{_this_pid() if pid is None else pid}-{owner_tag(node)}"


_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _this_pid() -> int:
    """This process's id, kept since it started or was forked."""
    return _pid[0]


def parse_temp(name: str, folder: str = "") -> TempName | None:
    """What ``name`` says, or None for a name of another shape (an older server's)."""
    if not name.startswith(TEMP_PREFIX):
        return None
    parts = name[len(TEMP_PREFIX) :].split("-", 3)
    if len(parts) != 4:
        return None
    key, random, pid, tag = parts
    if len(key) != _KEY_LENGTH or len(random) != _RANDOM_LENGTH or not pid.isdigit():
        return None
    return TempName(key, tag, int(pid), os.path.join(folder, name))


def temps_in(folder: str, key: str | None = None) -> list[TempName]:
    """The temporary files in ``folder`` (only those for partial key ``key`` if given)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    parsed = (parse_temp(name, folder) for name in names if name.startswith(TEMP_PREFIX))
    return [temp for temp in parsed if temp is not None and (key is None or temp.key == key)]


def dead_owners(owners: UploadOwners, found: Collection[TempName]) -> set[TempName] | None:
    """Which of ``found`` belong to a dead owner (None: the shared state cannot say)."""
    mine = owner_tag(owners.name)
    alive: set[str] = set()
    if any(temp.tag != mine for temp in found):
        try:
            alive = {owner_tag(name) for name in owners.live_nodes()}
        except Exception:  # the shared state is down: every owner may be alive
            return None
    return {
        temp
        for temp in found
        if (temp.pid != _this_pid() if temp.tag == mine else temp.tag not in alive)
    }


def wait_for_owners(
    owners: UploadOwners,
    found: Callable[[], list[TempName]],
    limit: float,
    step: float = 0.25,
) -> list[TempName]:
    """Wait (at most ``limit`` seconds) until no other live node owns one of ``found()``.

    A client that lost its node reconnects at once, before that node's
    lease ran out; waiting for the lease (or for the owner to finish or keep
    the upload itself) lets it resume instead of starting over.  Returns
    the temporary files of dead owners then found; an owner still alive at
    the deadline keeps its file.
    """
    deadline = time.monotonic() + limit
    mine = owner_tag(owners.name)
    while True:
        temps = found()
        dead = dead_owners(owners, temps)
        if dead is None:
            return []
        others_alive = [t for t in temps if t not in dead and t.tag != mine]
        if not others_alive or time.monotonic() >= deadline:
            return [t for t in temps if t in dead]
        time.sleep(step)


def _mtime(path: str) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return -1.0


def adopt(account: HomeAccount, partials: str, temps: Collection[TempName]) -> int:
    """Keep dead owners' ``temps`` as the partial uploads (in folder ``partials``); how many.

    Per partial key the newest file wins, the kept partial upload there
    included; the others are removed.  Another node adopting the same file
    at the same moment is harmless: one rename wins.
    """
    adopted = 0
    keys: dict[str, list[TempName]] = {}
    for temp in temps:
        keys.setdefault(temp.key, []).append(temp)
    for key, group in keys.items():
        partial = os.path.join(partials, key)
        newest = max(group, key=lambda temp: _mtime(temp.path))
        for temp in group:
            if temp is not newest or _mtime(temp.path) < _mtime(partial):
                with contextlib.suppress(OSError):
                    os.unlink(temp.path)
                continue
            try:
                os.makedirs(partials, exist_ok=True)
                account.replace(temp.path, partial, enforce=False, release=None)
            except OSError:
                continue  # gone meanwhile: adopted by another node
            adopted += 1
    return adopted
