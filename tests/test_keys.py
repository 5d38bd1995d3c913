"""Tests for public keys without a network: ftpproto.keylogin, ftpserver.keys, users.yaml keys.

* OpenSSH public key lines parse (or fail with one clear line), fingerprints
  are those ``ssh-keygen -l`` prints, keys are picked out by fingerprint,
  key or comment.
* The signed bytes are unambiguous and name challenge, user, key and binding;
  a signature checks only against exactly those.
* users.yaml takes ``keys:``; a user with keys may have no password (and then
  no password opens the account); ``change_keys`` adds and removes keys in
  one rewrite and never leaves a user without a way in.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ftpproto.keylogin import (
    NO_BINDING,
    Binding,
    certificate_binding,
    fingerprint,
    key_blob,
    raw_key,
    signed_data,
)
from ftpserver.config import ConfigError
from ftpserver.keys import AuthorizedKey, parse_key_line, parse_key_lines, select_keys, verify
from ftpserver.users import add_user, change_keys, key_fingerprints, load_users

# A key made by ssh-keygen -t ed25519, and what ssh-keygen -l printed for it.
SSH_KEYGEN_LINE = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKr64wBY8AtL6pRFdTEp9dLRgcAR0tnVUFOpApbiwASh c1"
)
SSH_KEYGEN_FINGERPRINT = "SHA256:oirsm+8AWSa+YmiTf+q8Srf549qC2Byis8FbdXc3rHc"
RSA_LINE = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 me@host"


def new_key() -> tuple[Ed25519PrivateKey, bytes]:
    """A fresh private key and its OpenSSH public blob."""
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, key_blob(raw)


def line_of(blob: bytes, comment: str = "") -> str:
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}".strip()


# -- parsing and fingerprints ---------------------------------------------------------


def test_an_ssh_keygen_line_parses_with_its_fingerprint() -> None:
    key = parse_key_line(SSH_KEYGEN_LINE)
    assert key.comment == "c1"
    assert key.fingerprint == SSH_KEYGEN_FINGERPRINT
    assert key.text == SSH_KEYGEN_LINE
    assert len(raw_key(key.blob)) == 32


def test_a_comment_may_hold_spaces_and_may_be_missing() -> None:
    _, blob = new_key()
    assert parse_key_line(line_of(blob, "alice at work laptop")).comment == "alice at work laptop"
    assert parse_key_line(f"  {line_of(blob)}  \n") == AuthorizedKey(blob, "")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty key"),
        ("ssh-ed25519", "not a public key line"),
        (RSA_LINE, "unsupported key type 'ssh-rsa'"),
        ('from="10.0.0.1" ' + SSH_KEYGEN_LINE, "expected a key starting with 'ssh-ed25519'"),
        ("ssh-ed25519 not*base64 c", "the key is not base64"),
        ("ssh-ed25519 " + base64.b64encode(b"\0\0\0\x07ssh-rsa").decode(), "not an ssh-ed25519"),
        (
            "ssh-ed25519 " + base64.b64encode(key_blob(b"k" * 32)[:-1]).decode(),
            "malformed ssh-ed25519 key",
        ),
        ("ssh-ed25519 " + "A" * 9000, "too long"),
    ],
)
def test_bad_key_lines_are_refused_with_a_reason(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_key_line(line)


def test_key_lines_skip_blanks_and_comments_and_name_the_bad_line() -> None:
    _, blob = new_key()
    text = f"# my keys\n\n{SSH_KEYGEN_LINE}\n{line_of(blob, 'two')}\n"
    assert [k.comment for k in parse_key_lines(text)] == ["c1", "two"]
    with pytest.raises(ValueError, match="line 2: unsupported key type"):
        parse_key_lines(f"{SSH_KEYGEN_LINE}\n{RSA_LINE}\n")
    with pytest.raises(ValueError, match="no public key found"):
        parse_key_lines("# nothing\n\n")


def test_keys_are_picked_by_fingerprint_key_or_comment() -> None:
    _, blob = new_key()
    one, two = parse_key_line(SSH_KEYGEN_LINE), parse_key_line(line_of(blob, "laptop"))
    keys = [one, two]
    assert select_keys(keys, SSH_KEYGEN_FINGERPRINT) == [one]
    assert select_keys(keys, line_of(blob)) == [two]  # the comment does not matter
    assert select_keys(keys, "laptop") == [two]
    assert select_keys(keys, "SHA256:nothing") == []
    assert select_keys(keys, "desktop") == []
    twin = parse_key_line(line_of(new_key()[1], "laptop"))
    with pytest.raises(ValueError, match="2 keys have the comment 'laptop'"):
        select_keys([*keys, twin], "laptop")


# -- the signed bytes -------------------------------------------------------------------


def test_a_signature_checks_only_for_its_challenge_user_key_and_binding() -> None:
    private, blob = new_key()
    _, other_blob = new_key()
    challenge = b"c" * 32
    binding = Binding("tls-server-end-point", b"h" * 32)
    data = signed_data(challenge, "alice", blob, binding)
    signature = private.sign(data)
    assert verify(blob, signature, data)
    for changed in (
        signed_data(b"d" * 32, "alice", blob, binding),
        signed_data(challenge, "bob", blob, binding),
        signed_data(challenge, "alice", other_blob, binding),
        signed_data(challenge, "alice", blob, NO_BINDING),
        signed_data(challenge, "alice", blob, Binding("tls-server-end-point", b"i" * 32)),
    ):
        assert not verify(blob, signature, changed)
    assert not verify(other_blob, signature, data)
    assert not verify(blob, signature[:-1], data)
    assert not verify(blob, bytes(64), data)


def test_the_signed_bytes_are_length_prefixed_and_start_with_the_context() -> None:
    data = signed_data(b"\1" * 32, "al", b"B", NO_BINDING)
    context = b"FileTransfer public-key login v1"
    assert data.startswith(len(context).to_bytes(4, "big") + context)
    # Moving a byte from one field to the next changes the bytes signed.
    assert signed_data(b"\1" * 32, "a", b"lB", NO_BINDING) != data


def test_the_certificate_binding_hashes_the_certificate_as_rfc_5929_says() -> None:
    ca = trustme.CA()
    pem = ca.issue_cert("127.0.0.1").cert_chain_pems[0].bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(Encoding.DER)
    binding = certificate_binding(der)
    assert binding.kind == "tls-server-end-point"
    algorithm = cert.signature_hash_algorithm
    assert algorithm is not None
    expected = hashes.Hash(algorithm)
    expected.update(der)
    assert binding.data == expected.finalize()


def test_fingerprint_is_unpadded_base64_of_sha256() -> None:
    text = fingerprint(b"x")
    assert text.startswith("SHA256:") and not text.endswith("=") and len(text) == 7 + 43


# -- users.yaml -------------------------------------------------------------------------


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    add_user(path, tmp_path / "homes", "alice", "alice-secret", rounds=4)
    return path


def entry(path: Path, name: str = "alice") -> dict[str, object]:
    data = yaml.safe_load(path.read_text())
    result: dict[str, object] = data["users"][name]
    return result


def test_keys_are_added_listed_and_removed(users: Path, tmp_path: Path) -> None:
    _, blob = new_key()
    added, removed = change_keys(users, "alice", f"{SSH_KEYGEN_LINE}\n{line_of(blob, 'laptop')}")
    assert [k.comment for k in added] == ["c1", "laptop"] and removed == []
    assert entry(users)["keys"] == [SSH_KEYGEN_LINE, line_of(blob, "laptop")]
    user = load_users(users, tmp_path / "homes").users["alice"]
    assert key_fingerprints(user) == [SSH_KEYGEN_FINGERPRINT, fingerprint(blob)]
    _, removed = change_keys(users, "alice", remove=["laptop"])
    assert removed == [AuthorizedKey(blob, "laptop")]
    assert entry(users)["keys"] == [SSH_KEYGEN_LINE]
    change_keys(users, "alice", remove=[SSH_KEYGEN_FINGERPRINT])
    assert "keys" not in entry(users)
    assert entry(users)["password"], "the password went with the keys"


def test_change_keys_refuses_what_would_break_the_account(users: Path) -> None:
    before = users.read_text()
    with pytest.raises(ValueError, match="no such user: nobody"):
        change_keys(users, "nobody", SSH_KEYGEN_LINE)
    with pytest.raises(ValueError, match="has no key"):
        change_keys(users, "alice", remove=["laptop"])
    with pytest.raises(ValueError, match="neither a password nor a key"):
        change_keys(users, "alice", drop_password=True)
    with pytest.raises(ValueError, match="unsupported key type"):
        change_keys(users, "alice", RSA_LINE)
    assert users.read_text() == before, "a refused change rewrote the file"
    change_keys(users, "alice", SSH_KEYGEN_LINE)
    with pytest.raises(
        ValueError, match=re.escape(f"already has the key {SSH_KEYGEN_FINGERPRINT}")
    ):
        change_keys(users, "alice", SSH_KEYGEN_LINE + " other comment")
    change_keys(users, "alice", drop_password=True)
    with pytest.raises(ValueError, match="neither a password nor a key"):
        change_keys(users, "alice", remove=["c1"])
    assert entry(users)["keys"] == [SSH_KEYGEN_LINE]


def test_a_user_with_keys_only_loads_and_no_password_opens_it(users: Path, tmp_path: Path) -> None:
    change_keys(users, "alice", SSH_KEYGEN_LINE, drop_password=True)
    store = load_users(users, tmp_path / "homes")
    alice = store.users["alice"]
    assert alice.password_hash is None and len(alice.keys) == 1
    for password in ("", "alice-secret", "anything"):
        assert store.authenticate("alice", password) is None


def test_bad_keys_in_users_yaml_are_reported_with_file_and_line(
    users: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(users.read_text())
    data["users"]["alice"]["keys"] = [SSH_KEYGEN_LINE, RSA_LINE]
    data["users"]["bob"] = {"keys": []}
    users.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_users(users, tmp_path / "homes")
    problems = [str(p) for p in caught.value.problems]
    assert any(
        "user alice: keys: key 2: unsupported key type 'ssh-rsa'" in p and str(users) in p
        for p in problems
    ), problems
    assert any("user bob: 'password' is missing" in p for p in problems), problems  # issue 17


def test_the_worked_example_in_protocol_md() -> None:
    text = (Path(__file__).parent.parent / "docs" / "PROTOCOL.md").read_text()
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    blob = key_blob(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    challenge = bytes(range(0x40, 0x60))
    data = signed_data(challenge, "alice", blob, NO_BINDING)
    request = "|".join(
        [
            "FileTransfer|login_key|alice|ssh-ed25519",
            base64.b64encode(blob).decode(),
            base64.b64encode(private.sign(data)).decode(),
        ]
    )
    assert request in text
    assert base64.b64encode(challenge).decode() in text
    assert fingerprint(blob) in text
    listed = re.search(r"The 163 signed bytes.*?```\n(.*?)```", text, re.S)
    assert listed is not None and len(data) == 163
    assert bytes.fromhex(listed.group(1).replace(" ", "").replace("\n", "")) == data


def test_the_signature_check_is_loaded_at_start_only_for_users_with_keys(tmp_path: Path) -> None:
    """A server whose users have keys imports cryptography when it starts (its first key
    login then imports nothing); one without keys never does."""
    from conftest import run_command

    probe = (
        "import sys\n"
        "from ftpserver.keys import load_checker, parse_key_line\n"
        "print(load_checker([(), ()]), 'cryptography' in sys.modules)\n"
        f"key = parse_key_line({SSH_KEYGEN_LINE!r})\n"
        "print(load_checker([(), (key,)]), 'cryptography' in sys.modules)\n"
    )
    done = run_command(["-c", probe], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["False False", "True True"]
