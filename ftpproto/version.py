"""The project's version, for ``ftpclient --version`` and ``ftpserver --version``.

Finding it costs 30-40 ms (``importlib.metadata`` searches the installed
distributions), so the command lines look it up only when asked
(:class:`VersionAction`), not each time they build their parser.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["DISTRIBUTION", "VersionAction", "version"]

DISTRIBUTION = "filetransfer"  # the name in setup.cfg


def version() -> str:
    """The installed version, or that of the source tree's ``setup.cfg`` when not installed."""
    import configparser
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        setup = configparser.ConfigParser()
        root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
        setup.read(os.path.join(root, "setup.cfg"), encoding="utf-8")
        return setup.get("metadata", "version", fallback="unknown")


class VersionAction(argparse.Action):
    """``--version``: print ``PROG VERSION`` and exit, looking the version up only then."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version"
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog} {version()}")  # on stdout, as argparse's own version action
        parser.exit()
