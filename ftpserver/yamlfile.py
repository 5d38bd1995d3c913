"""Reading and writing the server's YAML files safely.

:func:`load` parses with PyYAML's safe loader but keeps the line of every
value, refuses duplicate keys, and reports every problem as
:class:`ConfigError` ``FILE:LINE: text``.  :func:`write_atomic` replaces a
file through a temporary file and a rename, so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "Document",
    "FileSignature",
    "closest",
    "file_signature",
    "load",
    "raise_all",
    "write_atomic",
]


class ConfigError(Exception):
    """A configuration problem, printed as ``FILE:LINE: text``."""

    def __init__(self, path: Path | str, line: int | None, text: str) -> None:
        self.path = str(path)
        self.line = line
        self.text = text
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {text}")
        self.problems: list[ConfigError] = [self]


def closest(word: str, known: tuple[str, ...] | list[str]) -> str:
    """`` (did you mean 'x'?)`` for the known word closest to a misspelt one, or ``""``."""
    match = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def raise_all(problems: list[ConfigError]) -> None:
    """Raise the first problem, carrying all of them in line order (``str``: one per line)."""
    if problems:
        problems = sorted(problems, key=lambda p: p.line or 0)
        first = ConfigError(problems[0].path, problems[0].line, problems[0].text)
        first.problems = list(problems)
        first.args = ("\n".join(str(p.args[0]) for p in problems),)
        raise first


@dataclass
class Document:
    """A parsed YAML file: its data and the line of each value by key path."""

    path: Path
    data: Any
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def error(self, keys: tuple[str, ...], text: str) -> ConfigError:
        """A :class:`ConfigError` located at the value under ``keys``."""
        while keys and keys not in self.lines:
            keys = keys[:-1]
        return ConfigError(self.path, self.lines.get(keys), text)


def load(path: Path) -> Document:
    """Parse ``path``; raise :class:`ConfigError` if it is unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            path, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    loader = yaml.SafeLoader(text)
    doc = Document(path, None)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _convert(loader, node, (), doc.lines, path)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(path, line, f"not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return doc


def _convert(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    keys: tuple[str, ...],
    lines: dict[tuple[str, ...], int],
    path: Path,
    active: tuple[yaml.Node, ...] = (),
) -> Any:
    lines.setdefault(keys, node.start_mark.line + 1)  # a mapping entry keeps its key's line
    if any(node is seen for seen in active):
        where = ".".join(keys) or "the top level"
        raise ConfigError(path, node.start_mark.line + 1, f"recursive alias under {where}")
    active = (*active, node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise ConfigError(path, key_node.start_mark.line + 1, "keys must be plain words")
            if key in result:
                raise ConfigError(path, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            entry = (*keys, str(key))
            lines[entry] = key_node.start_mark.line + 1
            result[key] = _convert(loader, value_node, entry, lines, path, active)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = enumerate(node.value)
        return [_convert(loader, item, (*keys, str(i)), lines, path, active) for i, item in items]
    return loader.construct_object(node, deep=True)


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


FileSignature = tuple[int, int, int, int]


def file_signature(path: Path) -> FileSignature | None:
    """What tells a changed file apart: device, inode, size, mtime; None if it is missing."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
