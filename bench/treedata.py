"""The test tree of the tree workloads: made deterministically, and checked after a copy.

:func:`make_tree` writes ``files`` files of 1-64 KiB spread over ``folders``
folders (``d00/f0000.bin``, ...) with sizes and contents from a seeded
generator, so every run and every machine gets the same tree.
:func:`tree_digests` maps each file's relative path to its size and BLAKE3
digest; :func:`check_copy` compares a copy with the original.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from ftpproto.digest import new_hasher

__all__ = ["check_copy", "file_digest", "hash_seconds", "make_tree", "tree_digests"]

KIB = 1024
SEED = 15


def make_tree(root: Path, files: int, folders: int, seed: int = SEED) -> int:
    """Write the tree under ``root`` (created); return its total size in bytes."""
    rng = random.Random(seed)
    total = 0
    for index in range(folders):
        (root / f"d{index:02d}").mkdir(parents=True)
    for index in range(files):
        size = rng.randint(1 * KIB, 64 * KIB)
        path = root / f"d{index % folders:02d}" / f"f{index:04d}.bin"
        path.write_bytes(rng.randbytes(size))
        total += size
    return total


def file_digest(path: Path) -> str:
    """The BLAKE3 hex digest of one file, read 4 MiB at a time."""
    hasher = new_hasher()
    with open(path, "rb") as source:
        while chunk := source.read(4 * 1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


def tree_digests(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (size, BLAKE3 hex digest) of every regular file under ``root``."""
    found: dict[str, tuple[int, str]] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            data = path.read_bytes()
            hasher = new_hasher()
            hasher.update(data)
            found[str(path.relative_to(root))] = (len(data), hasher.hexdigest())
    return found


def hash_seconds(root: Path) -> float:
    """How long reading and hashing every file under ``root`` takes here (warm cache)."""
    tree_digests(root)
    started = time.perf_counter()
    tree_digests(root)
    return time.perf_counter() - started


def check_copy(original: dict[str, tuple[int, str]], copy: Path) -> None:
    """Raise RuntimeError unless ``copy`` holds exactly the files of ``original``."""
    if not copy.is_dir():
        raise RuntimeError(f"no copy at {copy}")
    found = tree_digests(copy)
    missing = sorted(set(original) - set(found))
    extra = sorted(set(found) - set(original))
    differ = sorted(k for k in set(original) & set(found) if original[k] != found[k])
    if missing or extra or differ:
        raise RuntimeError(
            f"the copy differs: {len(missing)} missing (first {missing[:1]}), {len(extra)} extra"
            f" (first {extra[:1]}), {len(differ)} with other contents (first {differ[:1]})"
        )
