"""Read an unencrypted OpenSSH Ed25519 private key without cryptography's serialization.

``cryptography``'s ``load_ssh_private_key`` costs 20-25 ms of imports at
every start (its serialization package), which a script that runs the client
per file pays each time.  An unencrypted key is plain framing (OpenSSH's
``PROTOCOL.key``): this reads its 32-byte seed and makes the key with
``Ed25519PrivateKey.from_private_bytes``, checking that the seed gives the
public key the file holds.  Anything else (an encrypted key, another key
type, a file that does not parse or does not agree with itself) gives None,
and the caller falls back to ``load_ssh_private_key``, which also says what
is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["load_unencrypted_ed25519"]

_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_END = b"-----END OPENSSH PRIVATE KEY-----"
_MAGIC = b"openssh-key-v1\x00"
_TYPE = b"ssh-ed25519"


class _Reader:
    """SSH wire fields (uint32, string) off a byte string; ValueError past its end."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def uint32(self) -> int:
        if self.at + 4 > len(self.data):
            raise ValueError("short")
        value = int.from_bytes(self.data[self.at : self.at + 4], "big")
        self.at += 4
        return value

    def string(self) -> bytes:
        size = self.uint32()
        if self.at + size > len(self.data):
            raise ValueError("short")
        value = self.data[self.at : self.at + size]
        self.at += size
        return value

    def rest(self) -> bytes:
        return self.data[self.at :]


def load_unencrypted_ed25519(text: bytes) -> Ed25519PrivateKey | None:
    """The key of an unencrypted OpenSSH Ed25519 key file; None for anything else."""
    import base64  # here, not at the top: only keys need it
    import binascii

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = text.strip()
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        return None
    try:
        data = base64.b64decode(b"".join(text[len(_BEGIN) : -len(_END)].split()), validate=True)
        found = _seed_and_public(data)
    except (ValueError, binascii.Error):
        return None
    if found is None:
        return None
    key = Ed25519PrivateKey.from_private_bytes(found[0])
    return key if key.public_key().public_bytes_raw() == found[1] else None


def _seed_and_public(data: bytes) -> tuple[bytes, bytes] | None:
    if not data.startswith(_MAGIC):
        return None
    outer = _Reader(data[len(_MAGIC) :])
    cipher, kdf, _options = outer.string(), outer.string(), outer.string()
    if cipher != b"none" or kdf != b"none" or outer.uint32() != 1:
        return None
    public_blob, private = outer.string(), _Reader(outer.string())
    if outer.rest():
        return None
    if private.uint32() != private.uint32() or private.string() != _TYPE:
        return None
    public, secret = private.string(), private.string()
    private.string()  # the comment
    padding = private.rest()
    expected_blob = len(_TYPE).to_bytes(4, "big") + _TYPE + len(public).to_bytes(4, "big") + public
    if (
        len(public) != 32
        or len(secret) != 64
        or secret[32:] != public
        or public_blob != expected_blob
        or padding != bytes(range(1, len(padding) + 1))
    ):
        return None
    return secret[:32], public
