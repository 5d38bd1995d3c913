"""The shell's ``mirror`` command: copy only what changed.

``mirror`` plans with :mod:`ftpclient.mirror` and copies through
:func:`ftpclient.copying.copy_files` (pipelined).  In ``--json`` mode each
file is one ``mirror`` record with its ``action`` and a mirror ends with a
``mirror_summary`` record.  Mixed into :class:`~ftpclient.shell.ClientShell`.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING

from ftpclient.globbing import split_words
from ftpclient.shellparts import ShellParts
from ftpproto.units import format_size

if TYPE_CHECKING:
    from ftpclient.client import TransferResult
    from ftpclient.copying import CopyResult
    from ftpclient.digestcache import DigestCache
    from ftpclient.mirror import MirrorEnds, MirrorPlan

__all__ = ["MirrorCommands"]

MIRROR_USAGE = "mirror [-R] [-c [--rehash]] [--delete] [--dry-run] SOURCE [TARGET]"
MIRROR_FLAGS = {
    "-R": "R",
    "-c": "c",
    "--rehash": "rehash",
    "--delete": "delete",
    "-e": "delete",
    "--dry-run": "dry",
}


class MirrorCommands(ShellParts):
    """``do_mirror``."""

    mtime_warnings: Callable[[CopyResult], None]

    def do_mirror(self, arg: str) -> None:
        """mirror [-R] [-c [--rehash]] [--delete] [--dry-run] SOURCE [TARGET]: copy what changed.

        Downloads the remote folder SOURCE into TARGET (default: its name here);
        -R uploads the local folder SOURCE instead.  Files missing or with
        another size or modification time are copied (-c: another BLAKE3
        digest; local digests are kept between runs while a file's inode,
        size and times stay the same, --rehash reads every file again), times
        kept; --delete (-e) removes what SOURCE no longer has; --dry-run only
        says what it would do.  Example: mirror -c --delete site"""
        options: set[str] = set()
        words: list[str] = []
        for word in split_words(arg):
            if not words and word in MIRROR_FLAGS:
                options.add(MIRROR_FLAGS[word])
            elif not words and word.startswith("-") and word != "-":
                self.fail(f"usage: {MIRROR_USAGE}")
                return
            else:
                words.append(word)
        if not 1 <= len(words) <= 2 or ("rehash" in options and "c" not in options):
            self.fail(f"usage: {MIRROR_USAGE}")
            return
        upload = "R" in options
        source = words[0]
        name = (
            os.path.basename(source.rstrip("/"))
            if upload
            else posixpath.basename(source.rstrip("/"))
        )
        target = words[1] if len(words) == 2 else (name if name not in ("", ".", "..") else ".")
        from ftpclient.mirror import MirrorEnds  # here, not at the top: only mirror needs it

        ends = MirrorEnds("put", target, source) if upload else MirrorEnds("get", source, target)
        from ftpclient.digestcache import DigestCache

        # -c reads and keeps local digests; a download keeps those it verified
        cache = DigestCache.load(ends.local, "rehash" not in options) if "c" in options else None
        try:
            self._mirror(ends, cache, delete="delete" in options, dry="dry" in options)
        finally:
            if cache is not None:
                cache.save()

    def _mirror(self, ends: MirrorEnds, cache: DigestCache | None, delete: bool, dry: bool) -> None:
        """Mirror the ends, by digest if given a ``cache`` (-c)."""
        from ftpclient.mirror import keep_digests, look, plan_mirror, run_plan  # see do_mirror

        by_digest = cache is not None
        remote, local, digest = look(self.client, ends, by_digest, cache)
        if ends.direction == "get":
            if not remote.exists:
                self.fail(f"remote: no such folder: {ends.remote}", 404)
                return
            source, target = remote, local
            plan = plan_mirror(source, target, by_digest, delete, None, digest)
        else:
            if not local.exists:
                self.fail(f"local: no such folder: {ends.local}")
                return
            source, target = local, remote
            plan = plan_mirror(source, target, by_digest, delete, digest, None)
        for skipped in plan.skipped:
            self.out.warning(
                f"skipped (link, special file or a clash of file and folder): {skipped}"
            )
        if dry:
            self._report_plan(plan)
            return
        relative = {ends.source(path): path for path in plan.copy}
        result = run_plan(
            self.client,
            ends,
            plan,
            source,
            target.exists,
            lambda done: self._mirrored(ends.direction, relative, done),
        )
        wrote = result.files or plan.set_time or plan.remove or plan.remove_first
        if ends.direction == "get" and wrote:
            from ftpclient.digestcache import DigestCache

            kept = DigestCache.load(ends.local) if cache is None else cache
            keep_digests(kept, ends, plan, source, result, relative)
            kept.save()
        self.mtime_warnings(result)
        for path, _ in plan.set_time:
            self._event("time set", path)
        for path in plan.remove:
            self._event("removed", path)
        self._summary(plan, len(result.files), result.size, dry=False)

    def _mirrored(self, direction: str, relative: dict[str, str], done: TransferResult) -> None:
        source = done.remote if direction == "get" else done.local
        path = relative.get(source, source)
        fields = {"action": "copy", "path": path, "bytes": done.size, "blake3": done.blake3}
        self.out.record("mirror", fields)
        self.out.info(f"copied: {path} ({format_size(done.size)}, blake3 verified)")

    def _event(self, action: str, path: str, dry: bool = False) -> None:
        """One file's event: a ``mirror`` record, or a line (left out with --quiet)."""
        self.out.record("mirror", {"action": action, "path": path, "dry_run": dry})
        self.out.info(f"{'would be ' if dry else ''}{action}: {path}")

    def _report_plan(self, plan: MirrorPlan) -> None:
        for path in plan.remove_first:
            self._event("removed", path, dry=True)
        for path in plan.make_folders:
            self._event("created", path, dry=True)
        for path in plan.copy:
            self._event("copied", path, dry=True)
        for path, _ in plan.set_time:
            self._event("time set", path, dry=True)
        for path in plan.remove:
            self._event("removed", path, dry=True)
        self._summary(plan, len(plan.copy), None, dry=True)

    def _summary(self, plan: MirrorPlan, copied: int, size: int | None, dry: bool) -> None:
        verb = "would copy" if dry else "copied"
        parts = [f"{copied} {'file' if copied == 1 else 'files'} {verb}"]
        if size:
            parts[0] += f" ({format_size(size)})"
        parts.append(f"{plan.unchanged} unchanged")
        removed = len(plan.remove) + len(plan.remove_first)
        if removed:
            parts.append(f"{removed} {'would be ' if dry else ''}removed")
        if plan.set_time:
            parts.append(f"{len(plan.set_time)} times set")
        if plan.skipped:
            parts.append(f"{len(plan.skipped)} skipped")
        fields = {
            "copied": copied,
            "bytes": size,
            "unchanged": plan.unchanged,
            "removed": removed,
            "times_set": len(plan.set_time),
            "folders_created": len(plan.make_folders),
            "skipped": len(plan.skipped),
            "dry_run": dry,
        }
        self.out.result("mirror_summary", fields, "mirror: " + ", ".join(parts))
