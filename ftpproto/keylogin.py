"""Public-key login, sans-IO: key blobs, fingerprints, the channel binding and the signed bytes.

Both ends build the same byte string from the server's challenge and sign
or verify it (``docs/PROTOCOL.md`` section 4.1.1)::

    string  "FileTransfer public-key login v1"   (the context: signatures for nothing else)
    string  challenge                             (32 random bytes, fresh for this connection)
    string  user name                             (UTF-8)
    string  "ssh-ed25519"
    string  public key blob                       (as in OpenSSH: string "ssh-ed25519", string key)
    string  binding type                          ("none" or "tls-server-end-point")
    string  binding data                          (empty, or the certificate hash)

where ``string`` is a 4-byte big-endian length and the bytes, as in SSH.

Over TLS the binding is RFC 5929's ``tls-server-end-point``: the hash of the
server's certificate, so a signature made for one server (say, a hostile one
relaying a challenge it got elsewhere) fails at any other.  Python's ``ssl``
module has no TLS exporter (RFC 9266), and its ``tls-unique`` is unsound for
TLS 1.3 and, without a check for the extended master secret, for TLS 1.2.
"""

from __future__ import annotations

import binascii
from typing import NamedTuple

__all__ = [
    "ALGORITHM",
    "CONTEXT",
    "NONCE_BYTES",
    "NO_BINDING",
    "SIGNATURE_BYTES",
    "Binding",
    "certificate_binding",
    "decode_field",
    "encode_field",
    "fingerprint",
    "key_blob",
    "raw_key",
    "signed_data",
]

ALGORITHM = "ssh-ed25519"
CONTEXT = b"FileTransfer public-key login v1"
NONCE_BYTES = 32
SIGNATURE_BYTES = 64
_KEY_BYTES = 32


class Binding(NamedTuple):
    """What ties a signature to the channel it was made for."""

    kind: str
    data: bytes = b""


NO_BINDING = Binding("none")


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def key_blob(raw: bytes) -> bytes:
    """The OpenSSH blob of a 32-byte Ed25519 public key."""
    if len(raw) != _KEY_BYTES:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return _string(ALGORITHM.encode("ascii")) + _string(raw)


def raw_key(blob: bytes) -> bytes:
    """The 32-byte Ed25519 key inside an OpenSSH blob; ValueError for anything else."""
    name = ALGORITHM.encode("ascii")
    head = _string(name)
    if not blob.startswith(head):
        raise ValueError(f"not an {ALGORITHM} key")
    rest = blob[len(head) :]
    if len(rest) != 4 + _KEY_BYTES or int.from_bytes(rest[:4], "big") != _KEY_BYTES:
        raise ValueError(f"malformed {ALGORITHM} key")
    return rest[4:]


def fingerprint(blob: bytes) -> str:
    """``SHA256:<base64>`` of a key blob, as ``ssh-keygen -l`` prints it."""
    import base64  # here, not at the top: only keys need it
    import hashlib  # here, not at the top: only keys need it (OpenSSL costs 2 ms at start)

    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def encode_field(data: bytes) -> str:
    """Bytes as a message field: standard base64 with padding."""
    import base64  # see fingerprint

    return base64.b64encode(data).decode("ascii")


def decode_field(text: str, what: str) -> bytes:
    """The bytes of a base64 message field; ValueError naming ``what`` if it is not base64."""
    import base64  # see fingerprint

    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError(f"{what} is not base64") from None


def signed_data(challenge: bytes, user: str, blob: bytes, binding: Binding) -> bytes:
    """The bytes the client signs and the server verifies (see the module docstring)."""
    return b"".join(
        _string(part)
        for part in (
            CONTEXT,
            challenge,
            user.encode("utf-8", "surrogateescape"),
            ALGORITHM.encode("ascii"),
            blob,
            binding.kind.encode("ascii"),
            binding.data,
        )
    )


def certificate_binding(der: bytes) -> Binding:
    """RFC 5929 ``tls-server-end-point`` for the server certificate ``der``.

    The hash is the one of the certificate's signature algorithm, SHA-256
    where that is MD5 or SHA-1, and also where the signature has no single
    hash (Ed25519, Ed448: RFC 5929 leaves those open).
    """
    # Here, not at the top: only a key login over TLS needs them, and they cost
    # 15-20 ms at every start of the client.
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes

    try:
        algorithm = x509.load_der_x509_certificate(der).signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if algorithm is None or isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return Binding("tls-server-end-point", digest.finalize())
