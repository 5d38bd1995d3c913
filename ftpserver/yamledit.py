"""Rewriting users.yaml the way its administrator wrote it.

The command line (``useradd``, ``passwd``, ``usermod``, ``userdel``) changes
one entry and writes the file back through ruamel.yaml's round-trip mode:
comments, key order, quoting and values such as ``quota: 10G`` stay as they
were written; only what the command changes is new.  The caller checks the
file first with :func:`ftpserver.yamlfile.load` (errors with file and line);
it is written with :func:`ftpserver.yamlfile.write_atomic` (a rename, never half a
file).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftpserver import yamlfile

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

__all__ = ["edit_mapping"]


def _round_trip() -> YAML:
    # Imported here: only the user commands edit the file, and a running
    # server need not carry ruamel.yaml in every process.
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold a long value (a hash) over two lines
    return yaml


@contextmanager
def edit_mapping(path: Path, key: str, new_file: str) -> Iterator[CommentedMap]:
    """Yield the mapping under top-level ``key`` of ``path`` to change in place.

    When the block ends without an error the file is written back atomically
    (mode 0600); on an error nothing is written.  A missing file starts as
    ``new_file`` (a comment header and ``KEY:``).
    """
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    yaml = _round_trip()
    text = path.read_text(encoding="utf-8") if path.exists() else new_file
    try:
        document: Any = yaml.load(text)
    except YAMLError as exc:
        raise yamlfile.ConfigError(path, None, f"not valid YAML: {exc}") from None
    if document is None:
        document = yaml.load(new_file)
    if not isinstance(document, CommentedMap):
        raise yamlfile.ConfigError(path, None, f"expected one top-level key {key!r}")
    if not isinstance(document.get(key), CommentedMap):
        document[key] = CommentedMap()
    yield document[key]
    out = io.StringIO()
    yaml.dump(document, out)
    yamlfile.write_atomic(path, out.getvalue())
