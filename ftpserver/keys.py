"""Users' public keys on the server: parse OpenSSH lines, pick keys out, check signatures.

A key is written as in OpenSSH's ``authorized_keys`` or a ``.pub`` file,
``ssh-ed25519 AAAAC3Nza... comment``, and shown by its fingerprint,
``SHA256:...`` as ``ssh-keygen -l`` prints it.  Only Ed25519 keys are taken;
options before the key type are not.  Nothing here logs key material.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ftpproto.keylogin import (
    ALGORITHM,
    SIGNATURE_BYTES,
    decode_field,
    encode_field,
    fingerprint,
    raw_key,
)

__all__ = [
    "AuthorizedKey",
    "find_key",
    "load_checker",
    "parse_key_line",
    "parse_key_lines",
    "parse_wire_key",
    "select_keys",
    "verify",
]

_MAX_LINE = 8192


@dataclass(frozen=True)
class AuthorizedKey:
    """One public key a user may log in with."""

    blob: bytes  # the OpenSSH wire form: string "ssh-ed25519", string key
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """``SHA256:<base64>``, as ``ssh-keygen -l`` prints it."""
        return fingerprint(self.blob)

    @property
    def text(self) -> str:
        """The OpenSSH line: ``ssh-ed25519 BASE64 [comment]``."""
        line = f"{ALGORITHM} {encode_field(self.blob)}"
        return f"{line} {self.comment}" if self.comment else line


def parse_wire_key(algorithm: str, encoded: str) -> bytes:
    """The key blob from a ``login_key`` request's ALGORITHM and KEY fields; ValueError if bad."""
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported key type {algorithm!r} (only {ALGORITHM})")
    blob = decode_field(encoded, "the public key")
    raw_key(blob)
    return blob


def parse_key_line(line: str) -> AuthorizedKey:
    """One ``ssh-ed25519 BASE64 [comment]`` line; ValueError with a one-line reason if bad."""
    text = line.strip()
    if len(text) > _MAX_LINE:
        raise ValueError("the key line is too long")
    words = text.split(None, 2)
    if not words:
        raise ValueError("empty key: expected 'ssh-ed25519 AAAA... [comment]'")
    if len(words) < 2:
        raise ValueError(f"not a public key line: {_short(text)!r}")
    kind, encoded = words[0], words[1]
    if kind != ALGORITHM:
        if kind.startswith(("ssh-", "ecdsa-", "sk-")):
            raise ValueError(f"unsupported key type {kind!r}: only {ALGORITHM} keys are taken")
        raise ValueError(f"expected a key starting with {ALGORITHM!r}, got {_short(kind)!r}")
    blob = decode_field(encoded, "the key")
    raw_key(blob)
    comment = words[2].strip() if len(words) > 2 else ""
    return AuthorizedKey(blob, comment)


def parse_key_lines(text: str) -> list[AuthorizedKey]:
    """The keys of an ``authorized_keys``-style text (blank lines and ``#`` comments skipped)."""
    keys: list[AuthorizedKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            keys.append(parse_key_line(line))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    if not keys:
        raise ValueError("no public key found")
    return keys


def select_keys(keys: Sequence[AuthorizedKey], which: str) -> list[AuthorizedKey]:
    """The keys ``which`` names: a fingerprint, a key line (comment ignored) or a comment.

    A comment that several different keys share is refused (ValueError): the
    fingerprint says which one.
    """
    which = which.strip()
    if which.startswith("SHA256:"):
        return [k for k in keys if k.fingerprint == which.rstrip("=")]
    try:
        wanted = parse_key_line(which).blob
    except ValueError:
        chosen = [k for k in keys if k.comment == which]
        if len({k.blob for k in chosen}) > 1:
            raise ValueError(
                f"{len(chosen)} keys have the comment {which!r}: give a fingerprint"
            ) from None
        return chosen
    return [k for k in keys if k.blob == wanted]


def load_checker(key_lists: Iterable[Sequence[AuthorizedKey]]) -> bool:
    """Import the signature check now if any of the users' ``key_lists`` has a key; whether it did.

    A server whose users log in with keys pays for cryptography's import
    (30-50 ms) when it starts, not in its first key login; one without keys
    never loads it (it adds megabytes to every server process).
    """
    if not any(key_lists):
        return False
    import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401

    return True


def verify(blob: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is the Ed25519 signature of ``data`` by the key ``blob``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    # Here, not at the top: only a key login needs them, and cryptography adds
    # megabytes to every server process.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw_key(blob)).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def find_key(keys: Iterable[AuthorizedKey], blob: bytes) -> AuthorizedKey | None:
    """The key among ``keys`` whose blob is ``blob``, if any."""
    return next((key for key in keys if key.blob == blob), None)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
