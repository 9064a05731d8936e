"""The sandbox's own CA (kept across restarts so clients keep trusting it) and server cert."""

import os
from pathlib import Path

import trustme

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
SERVER_NAMES = ("127.0.0.1", "::1", "localhost")


def load_or_create_ca(state_dir: Path) -> tuple[trustme.CA, Path]:
    """The CA in `state_dir`, made on first use; returns it and the absolute path of its cert."""
    state_dir.mkdir(parents=True, exist_ok=True)
    cert_path = (state_dir / CA_CERT_NAME).resolve()
    key_path = state_dir / CA_KEY_NAME
    if cert_path.exists() and key_path.exists():
        return trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes()), cert_path
    ca = trustme.CA(organization_name="smsproxy Vonage sandbox")
    # The key first and the cert last, each by rename: a cert on disk always has its key beside it.
    _write_atomically(key_path, ca.private_key_pem.bytes(), mode=0o600)
    _write_atomically(cert_path, ca.cert_pem.bytes(), mode=0o644)
    return ca, cert_path


def write_server_pem(ca: trustme.CA, state_dir: Path) -> Path:
    """A fresh leaf key and certificate chain for the loopback names, in one PEM file."""
    path = (state_dir / "server.pem").resolve()
    leaf = ca.issue_cert(*SERVER_NAMES)
    _write_atomically(path, leaf.private_key_and_cert_chain_pem.bytes(), mode=0o600)
    return path


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
