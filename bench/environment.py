"""What the benchmark needs around it: its own venv, a certificate, test data and limits.

* :func:`bench_python` creates ``bench/.venv`` once (``pip install pyftpdlib
  psutil``) and returns its interpreter; pyftpdlib runs from there, apart from
  the project's environment.
* :func:`make_certificate` writes a self-signed certificate for 127.0.0.1 with
  the ``openssl`` command, or with the ``cryptography`` package if there is no
  ``openssl``.
* :func:`make_file` writes a file of random bytes and returns its BLAKE3 digest.
* :func:`raise_open_files_limit` lifts the soft limit on open files to the hard one.
"""

from __future__ import annotations

import datetime
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

from ftpproto.digest import new_hasher

__all__ = [
    "BENCH_DIR",
    "REPO_ROOT",
    "bench_python",
    "child_env",
    "make_certificate",
    "make_file",
    "raise_open_files_limit",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENV = BENCH_DIR / ".venv"
BENCH_PACKAGES = ("pyftpdlib", "psutil")


def child_env() -> dict[str, str]:
    """The environment for child processes: this work tree first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def bench_python(log: bool = True) -> Path:
    """The interpreter of ``bench/.venv``, created with pyftpdlib and psutil if needed."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import pyftpdlib, psutil; print(pyftpdlib.__ver__)"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return python
        shutil.rmtree(VENV)
    if log:
        print(f"creating {VENV} with {', '.join(BENCH_PACKAGES)} (once) ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *BENCH_PACKAGES],
        check=True,
    )
    subprocess.run(probe, check=True, capture_output=True)
    return python


def bench_versions(python: Path) -> dict[str, str]:
    """The versions of the packages in the benchmark's venv."""
    code = "import pyftpdlib, psutil; print(pyftpdlib.__ver__, psutil.__version__)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    ftpd, ps = out.stdout.split()
    return {"pyftpdlib": ftpd, "psutil": ps}


def make_certificate(folder: Path, addresses: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (and localhost); ``(cert, key)``.

    ``addresses``: more IP addresses the certificate names (needs ``openssl``).
    """
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl")
    names = ",".join(["IP:127.0.0.1", *(f"IP:{a}" for a in addresses), "DNS:localhost"])
    if openssl:
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                "-addext", f"subjectAltName={names}",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return cert, key
    return _certificate_with_cryptography(cert, key)


def _certificate_with_cryptography(cert: Path, key: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert, key


def make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their BLAKE3 digest."""
    hasher = new_hasher()
    block = 16 * 1024 * 1024
    with open(path, "wb") as out:
        left = size
        while left:
            data = os.urandom(min(block, left))
            hasher.update(data)
            out.write(data)
            left -= len(data)
    return hasher.hexdigest()


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
