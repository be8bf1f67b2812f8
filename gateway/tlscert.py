"""A gateway's own self-signed TLS certificate, for the cascade with pinning.

Village and town boxes rarely have a certificate from a CA. With
``server.tls_self_signed: true`` and no ``tls_cert``/``tls_key``, the gateway makes
one on first start (EC P-256, ten years), keeps it in ``data_dir/tls/``, and reuses it
on every start so the fingerprint children pin stays the same. The fingerprint
(SHA-256 of the DER certificate) is logged, shown by ``/api/v1/health`` and printed
by ``gateway children add``: the operator gives it to the child with its token
(``cascade.parent.tls_fingerprint``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def fingerprint(cert_pem: Path) -> str:
    """SHA-256 of the certificate's DER form, hex, as the cascade pins it."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem.read_text(encoding="ascii"))
    return hashlib.sha256(der).hexdigest()


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", *hosts]):
        if not host or host in ("0.0.0.0", "::"):
            continue
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def ensure_self_signed(data_dir: Path, common_name: str, hosts: list[str]) -> tuple[Path, Path]:
    """The (cert, key) paths in ``data_dir/tls``, made on first use."""
    folder = data_dir / "tls"
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    folder.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "gateway")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    key_bytes = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def served_certificate(tls_cert: Path | None, tls_self_signed: bool, data_dir: Path) -> Path | None:
    """The certificate this gateway serves HTTPS with, if any (made or configured)."""
    if tls_cert is not None:
        return tls_cert
    made = data_dir / "tls" / "cert.pem"
    return made if tls_self_signed and made.exists() else None


def served_fingerprint(tls_cert: Path | None, tls_self_signed: bool, data_dir: Path) -> str | None:
    cert = served_certificate(tls_cert, tls_self_signed, data_dir)
    try:
        return fingerprint(cert) if cert is not None else None
    except (OSError, ValueError):
        return None
