"""Moving and removing objects and folder markers in an S3 home (for ``mv`` and ``rm -r``).

``mv`` of a file is a server-side copy then a delete (:func:`move_object`),
of a folder the same object by object (:func:`move_folder`), each step
reported to the quota ledger as it happens, so an interrupted ``mv`` leaves
each file in one place or the other (or both), never lost.  Folder markers
are made before the objects leave and dropped deepest first
(:func:`drop_folders`).  :func:`call` is one store request with its error
turned into the client's reply.
"""

from __future__ import annotations

from typing import Any

from ftpserver.storage.s3client import StoreError, store_error
from ftpserver.storage.s3files import COPY_LIMIT, Home

__all__ = ["call", "drop_folders", "folders_under", "move_folder", "move_object"]


def call(home: Home, subject: str, method: str, **kwargs: Any) -> Any:
    """``home.client.METHOD(Bucket=..., **kwargs)``; a store error becomes the client's reply."""
    try:
        return getattr(home.client, method)(Bucket=home.bucket, **kwargs)
    except StoreError as exc:
        raise store_error(exc, subject) from exc


def folders_under(prefix: str, key: str) -> set[str]:
    """The folder keys (``name/``) from ``prefix`` down to the folder holding ``key``."""
    folders = {prefix}
    parts = key[len(prefix) :].split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folders.add(prefix + "/".join(parts[:depth]) + "/")
    return folders


def drop_folders(home: Home, folders: set[str], subject: str) -> None:
    """Delete folder markers deepest first (stores that keep folders drop them only empty)."""
    ordered = sorted(folders, key=lambda k: (k.count("/"), k), reverse=True)
    for start in range(0, len(ordered), 1000):
        batch = [{"Key": k} for k in ordered[start : start + 1000]]
        call(home, subject, "delete_objects", Delete={"Objects": batch, "Quiet": True})


def move_folder(home: Home, source: str, target: str, subject: str) -> None:
    """Move every object under ``source`` one by one; then the folders, made first."""
    folders: set[str] = {source}
    for page in home.pages(source, delimiter=False):
        for item in page.get("Contents", []):
            folders |= folders_under(source, item["Key"])
            if not item["Key"].endswith("/"):
                move_object(home, item["Key"], target + item["Key"][len(source) :], subject)
    for folder in sorted(folders):
        call(home, subject, "put_object", Key=target + folder[len(source) :], Body=b"")
    drop_folders(home, folders, subject)


def move_object(home: Home, source: str, target: str, subject: str, replace: bool = False) -> None:
    """Copy ``source`` to ``target``, then delete ``source``.

    Never over an object there, unless ``replace``: then the copy
    replaces it (atomically, as any write of an object) and its bytes
    stop counting in the same step.
    """
    size = home.size_of(source)
    copy_source = {"Bucket": home.bucket, "Key": source}
    with home.locked():
        replaced = home.size_of(target) if replace else 0
        if size <= COPY_LIMIT:
            guard = {} if replace else {"IfNoneMatch": "*"}
            call(home, subject, "copy_object", Key=target, CopySource=copy_source, **guard)
        else:
            try:
                home.client.copy(copy_source, home.bucket, target)
            except StoreError as exc:
                raise store_error(exc, subject) from exc
        home.settle(size - replaced)
    with home.locked():
        call(home, subject, "delete_object", Key=source)
        home.settle(-size)
