"""The project's version, for ``ftpclient --version`` and ``ftpserver --version``."""

from __future__ import annotations

import configparser
from importlib import metadata
from pathlib import Path

__all__ = ["DISTRIBUTION", "version"]

DISTRIBUTION = "filetransfer"  # the name in setup.cfg


def version() -> str:
    """The installed version, or that of the source tree's ``setup.cfg`` when not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        setup = configparser.ConfigParser()
        setup.read(Path(__file__).resolve().parent.parent / "setup.cfg", encoding="utf-8")
        return setup.get("metadata", "version", fallback="unknown")
