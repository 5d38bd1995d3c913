"""The client reads unencrypted OpenSSH Ed25519 keys without cryptography's serialization.

``ftpclient.sshkey`` is a fast path: for every key it takes it must give the
same seed ``load_ssh_private_key`` gives, and for anything else None (then
``load_identity`` falls back to cryptography, which names what is wrong).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_ssh_private_key,
)

from ftpclient.identity import IdentityError, generate, load_identity
from ftpclient.sshkey import load_unencrypted_ed25519

pytestmark = pytest.mark.timeout(60)

BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
END = b"-----END OPENSSH PRIVATE KEY-----\n"


def fast_seed(text: bytes) -> bytes | None:
    """The seed of the key the fast path reads, or None."""
    key = load_unencrypted_ed25519(text)
    return None if key is None else key.private_bytes_raw()


def seed_of(text: bytes) -> bytes:
    key = load_ssh_private_key(text, None)
    assert isinstance(key, Ed25519PrivateKey)
    return key.private_bytes_raw()


def openssh(key: Ed25519PrivateKey, password: bytes = b"") -> bytes:
    encryption = BestAvailableEncryption(password) if password else NoEncryption()
    return key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, encryption)


def rewrapped(text: bytes, change: Callable[[bytearray], None]) -> bytes:
    """The key file with its decoded bytes changed by ``change``."""
    body = bytearray(base64.b64decode(b"".join(text.strip()[len(BEGIN) : -len(END)].split())))
    change(body)
    return BEGIN + base64.encodebytes(bytes(body)) + END


def test_generated_keys_give_the_seed_cryptography_gives() -> None:
    for _ in range(20):
        text = openssh(Ed25519PrivateKey.generate())
        assert fast_seed(text) == seed_of(text)


def test_an_ssh_keygen_key_gives_the_seed_cryptography_gives(tmp_path: Path) -> None:
    program = shutil.which("ssh-keygen")
    if program is None:
        if os.environ.get("FT_REQUIRE_SERVICES") == "1":
            pytest.fail("ssh-keygen is missing (install openssh-client) and FT_REQUIRE_SERVICES=1")
        pytest.skip("ssh-keygen is missing: install openssh-client")
    path = tmp_path / "id_ed25519"
    made = subprocess.run(
        [program, "-q", "-t", "ed25519", "-N", "", "-C", "me@host", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    text = path.read_bytes()
    assert fast_seed(text) == seed_of(text)
    identity = load_identity(path)
    assert identity.public_line("me@host") == path.with_suffix(".pub").read_text().strip()


def test_encrypted_keys_and_other_files_give_none() -> None:
    key = Ed25519PrivateKey.generate()
    assert fast_seed(openssh(key, b"secret")) is None
    assert fast_seed(b"") is None
    assert fast_seed(b"ssh-ed25519 AAAA me@host\n") is None
    assert fast_seed(BEGIN + b"not base64 !!\n" + END) is None


def _flip(at: int) -> Callable[[bytearray], None]:
    def change(body: bytearray) -> None:
        body[at] ^= 1

    return change


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda b: b.__delitem__(slice(-9, None)), id="truncated"),
        pytest.param(lambda b: b.extend(b"\x00\x00"), id="trailing bytes"),
        pytest.param(_flip(0), id="magic"),
        pytest.param(lambda b: b.__setitem__(slice(-1, None), b"\x09"), id="padding"),
    ],
)
def test_damaged_keys_give_none_and_load_identity_says_so(
    tmp_path: Path, change: Callable[[bytearray], None]
) -> None:
    text = rewrapped(openssh(Ed25519PrivateKey.generate()), change)
    assert fast_seed(text) is None
    path = tmp_path / "key"
    path.write_bytes(text)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="not an OpenSSH private key"):
        load_identity(path)


def test_a_damaged_private_half_is_never_taken(tmp_path: Path) -> None:
    """Flipping any one bit of the file: None, or the same seed (a comment's), never another."""
    text = openssh(Ed25519PrivateKey.generate())
    seed = seed_of(text)
    body = base64.b64decode(b"".join(text.strip()[len(BEGIN) : -len(END)].split()))
    for at in range(len(body)):
        found = fast_seed(rewrapped(text, _flip(at)))
        assert found is None or found == seed, at


def test_a_generated_key_loads_and_signs(tmp_path: Path) -> None:
    made = generate(tmp_path / "id_ed25519", comment="c")
    loaded = load_identity(tmp_path / "id_ed25519")
    assert loaded.blob == made.blob
    data = b"challenge"
    made.key.public_key().verify(loaded.sign(data), data)
