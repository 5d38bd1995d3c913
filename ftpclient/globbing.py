"""Glob patterns in the shell's words: ``get *.csv``, ``rm logs/2025-*``, ``mput *.txt``.

The shell splits a line as a POSIX shell does (``shlex`` rules: spaces
separate words, ``'...'`` is literal, ``"..."`` keeps spaces, a backslash
escapes the next character).  :func:`split_words` does that and also
remembers which ``*``, ``?`` and ``[`` were typed bare: only those are
wildcards.  Quoted or backslash-escaped, they are plain characters, so
``get "report*.pdf"`` or ``get report\\*.pdf`` name the one file called
``report*.pdf``.  Each word is a :class:`Word`, a ``str`` whose
:attr:`Word.pattern` is an ``fnmatch``/``glob`` pattern (literal characters
escaped as ``[*]``) or None when the word has no wildcard.

Wildcards work in the last name of a path only (``logs/2025-*``, not
``*/x``).  Remote patterns are matched on the client against a listing of
the folder (:func:`expand_remote`; no server support needed), local ones
with :mod:`glob` (:func:`expand_local`).  As in a shell, ``*`` and ``?``
do not match a leading dot.  A pattern that matches nothing is an error
(``ValueError``: the shell prints ``error: no match: PATTERN``).
"""

from __future__ import annotations

import posixpath

from ftpclient.client import Entry, FileTransferClient

__all__ = ["Word", "expand_local", "expand_remote", "pattern_of", "split_words"]

WILDCARDS = "*?["


class Word(str):
    """A word of a command line; :attr:`pattern` is set if it holds a bare wildcard."""

    pattern: str | None = None


def _word(chars: list[tuple[str, bool]]) -> Word:
    """A :class:`Word` of ``(character, quoted)`` pairs."""
    word = Word("".join(c for c, _ in chars))
    if any(c in WILDCARDS and not quoted for c, quoted in chars):
        import glob  # here, not at the top: only a pattern needs it (a millisecond at start)

        word.pattern = "".join(glob.escape(c) if quoted else c for c, quoted in chars)
    return word


def split_words(line: str) -> list[Word]:
    """Split ``line`` like ``shlex.split`` (POSIX mode), keeping which wildcards were bare.

    Raises ``ValueError("No closing quotation")`` as shlex does.
    """
    words: list[Word] = []
    chars: list[tuple[str, bool]] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(line):
        char = line[i]
        i += 1
        if quote == "'":
            if char == "'":
                quote = None
            else:
                chars.append((char, True))
        elif quote == '"':
            if char == '"':
                quote = None
            elif char == "\\" and i < len(line) and line[i] in '"\\':
                chars.append((line[i], True))
                i += 1
            else:
                chars.append((char, True))
        elif char.isspace():
            if in_word:
                words.append(_word(chars))
                chars, in_word = [], False
        else:
            in_word = True
            if char in "'\"":
                quote = char
            elif char == "\\":
                if i >= len(line):
                    raise ValueError("No escaped character")
                chars.append((line[i], True))
                i += 1
            else:
                chars.append((char, False))
    if quote is not None:
        raise ValueError("No closing quotation")
    if in_word:
        words.append(_word(chars))
    return words


def pattern_of(word: str) -> str | None:
    """The wildcard pattern of a :class:`Word`; None for a plain ``str`` or a word without one."""
    return word.pattern if isinstance(word, Word) else None


def _last_name_only(word: str, pattern: str) -> tuple[str, str]:
    """``(folder as typed, pattern of the last name)``; wildcards in a folder are refused."""
    import glob  # see _word

    folder, _, _ = word.rpartition("/")
    folder_pattern, slash, name_pattern = pattern.rpartition("/")
    if slash and folder_pattern != glob.escape(folder):
        raise ValueError(f"wildcards only in the last name of a path: {word}")
    return (folder + slash if slash else ""), name_pattern


def _matches(name: str, pattern: str) -> bool:
    import fnmatch  # see _word

    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def expand_remote(client: FileTransferClient, word: str) -> list[tuple[str, Entry]]:
    """The remote paths ``word`` names, with their listing entries (sorted by name).

    A word without a wildcard is itself (its entry not looked up: type
    ``?``).  A pattern is matched against a listing of its folder.
    """
    whole = pattern_of(word)
    if whole is None:
        return [(str(word), Entry(posixpath.basename(word.rstrip("/")), "?", 0, 0))]
    folder, pattern = _last_name_only(word, whole)
    entries = client.ls(folder.rstrip("/") or ("/" if folder else None))
    found = [(folder + e.name, e) for e in entries if _matches(e.name, pattern)]
    if not found:
        raise ValueError(f"no match: {word} (quote it to use the name as it is)")
    return found


def expand_local(word: str) -> list[str]:
    """The local paths ``word`` names, sorted; a word without a wildcard is itself."""
    whole = pattern_of(word)
    if whole is None:
        return [str(word)]
    import glob  # see _word

    _last_name_only(word, whole)
    found = sorted(glob.glob(whole))
    if not found:
        raise ValueError(f"no match: {word} (quote it to use the name as it is)")
    return found
