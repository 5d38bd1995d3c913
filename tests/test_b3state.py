"""BLAKE3 with a saved state (``ftpserver.storage.b3state``): continued in another process.

The state saved here is continued by a separate Python process and gives
the ``blake3`` package's digest of the whole input; a state from another
library version, of the wrong size, or with counts out of bounds is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import digest_of, subprocess_env
from required import require

from ftpserver.storage import b3state

CONTINUE = """
import sys
from ftpserver.storage import b3state
state, rest = (bytes.fromhex(line) for line in sys.stdin.read().split())
hasher = b3state.restore(state, b3state.state_tag())
hasher.update(memoryview(bytearray(rest)))
print(hasher.hexdigest())
"""


def test_a_saved_state_is_continued_by_another_process() -> None:
    require(b3state.library(), "libblake3 is not there (python3 ftpserver/storage/b3build.py)")
    data = os.urandom(3 * 1024 * 1024 + 12345)
    hasher = b3state.saveable_hasher()
    assert hasher is not None
    cut = 2 * 1024 * 1024 + 777  # inside a chunk: the chunk's buffer is part of the state
    hasher.update(data[:cut])
    copy = hasher.copy()
    copy.update(b"more")  # a copy goes its own way
    assert hasher.hexdigest() == digest_of(data[:cut])
    state = hasher.state()
    assert len(state) == b3state.STATE_SIZE
    done = subprocess.run(
        [sys.executable, "-c", CONTINUE], input=f"{state.hex()}\n{data[cut:].hex()}\n",
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == digest_of(data)


def test_a_foreign_or_broken_state_is_refused() -> None:
    require(b3state.library(), "libblake3 is not there (python3 ftpserver/storage/b3build.py)")
    hasher = b3state.saveable_hasher()
    assert hasher is not None
    hasher.update(os.urandom(5000))
    state, tag = hasher.state(), b3state.state_tag()
    assert b3state.restore(state, tag) is not None
    assert b3state.restore(state, "c0.0.0/1912") is None
    assert b3state.restore(state[:-1], tag) is None
    for offset in (136, 137, 144):  # counts the C code indexes with
        broken = bytearray(state)
        broken[offset] = 255
        assert b3state.restore(bytes(broken), tag) is None
