"""Build ``libblake3.so`` from BLAKE3's C sources (for :mod:`ftpserver.storage.b3state`).

Usage: ``python3 ftpserver/storage/b3build.py [OUTPUT] [--source DIR]``.
OUTPUT defaults to ``/usr/local/lib/libblake3.so``; the sources default to
the ``c/`` folder of Debian's ``librust-blake3-dev`` package
(``/usr/share/cargo/registry/blake3-*/c``).  Needs ``cc``.  On x86-64 the
SSE2, SSE4.1, AVX2 and AVX-512 kernels go in, chosen at run time by the
CPU; elsewhere the portable C.  Runs with the standard library only, so a
deployment can build it before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import glob
import platform
import subprocess
import sys
from pathlib import Path

DEFAULT_OUTPUT = Path("/usr/local/lib/libblake3.so")
SOURCES = "/usr/share/cargo/registry/blake3-*/c"
X86_KERNELS = ("sse2", "sse41", "avx2", "avx512")


def find_sources() -> Path | None:
    """The newest ``c/`` folder of Debian's blake3 crate sources, or None."""
    found = sorted(glob.glob(SOURCES))
    return Path(found[-1]) if found else None


def build(source: Path, output: Path) -> None:
    """Compile the library into ``output``; raise CalledProcessError with cc's words."""
    files = [source / "blake3.c", source / "blake3_dispatch.c", source / "blake3_portable.c"]
    flags: list[str] = []
    if platform.machine() in ("x86_64", "AMD64"):
        files += [source / f"blake3_{name}_x86-64_unix.S" for name in X86_KERNELS]
    else:
        flags += [f"-DBLAKE3_NO_{name.upper()}" for name in X86_KERNELS]
    output.parent.mkdir(parents=True, exist_ok=True)
    command = ["cc", "-O3", "-shared", "-fPIC", *flags, "-o", str(output), *map(str, files)]
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="b3build", description=__doc__.split("\n")[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--source", type=Path, help="BLAKE3's c/ folder")
    args = parser.parse_args(argv)
    source = args.source or find_sources()
    if source is None:
        print("no BLAKE3 C sources: apt-get install librust-blake3-dev, or --source DIR")
        return 1
    build(source, args.output)
    print(f"built {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
