"""The lab's certificate authority: one CA and one server certificate for the lab's TLS endpoints.

The server certificate names ``localhost``, 127.0.0.1 and 127.0.0.2 (the lab's two regions, see
:mod:`resilience.lab.layout`), so a client verifies it against the CA whichever region endpoint it
uses (see :func:`server_names` for why the addresses are also DNS entries). Certificates are
world-readable (pgBackRest runs as the postgres OS user and must read the CA file); private keys
are readable by their owner only (the TLS terminator runs as us).

:func:`ensure_ca` is idempotent: existing files are kept while they still fit (CA signs the server
certificate, names present, more than :data:`RENEW_BEFORE` left); otherwise they are re-made.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from resilience.lab.layout import DR_HOST, HOST
from resilience.lab.osuser import chown_to

log = logging.getLogger(__name__)

CA_NAME = "resilience lab CA"
SERVER_DNS_NAMES = ("localhost",)
SERVER_IPS = (HOST, DR_HOST)
CA_VALID = dt.timedelta(days=3650)
SERVER_VALID = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)
CERT_MODE, KEY_MODE, DIR_MODE = 0o644, 0o600, 0o755


@dataclass(frozen=True)
class CaFiles:
    """The PEM files of the lab CA under one directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """What clients trust (``repo*-storage-ca-file``, boto3 ``verify=``)."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The server certificate followed by the CA certificate (the chain a TLS server sends)."""
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"


def ca_files(directory: Path) -> CaFiles:
    return CaFiles(Path(directory))


def server_names(dns_names: tuple[str, ...] = SERVER_DNS_NAMES,
                 ips: tuple[str, ...] = SERVER_IPS) -> list[x509.GeneralName]:
    """The subjectAltName entries of the server certificate.

    Each address is there twice: as an IP entry (what Python's ssl, boto3 and curl match) and as a
    DNS entry spelling the address, because pgBackRest 2.45 matches DNS entries (and the common
    name) only: an IP entry alone fails with ``[095] unable to find hostname '127.0.0.1' in
    certificate common name or subject alternative names``.
    """
    return [*(x509.DNSName(n) for n in (*dns_names, *ips)),
            *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_file(path: Path, data: bytes, mode: int, user: str | None = None) -> Path:
    """Write atomically, with ``mode`` (and owner ``user`` when root) set before the file gets its name:
    a secret is never readable by others, not even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)  # umask may have narrowed it
    if user:
        chown_to(tmp, user)
    tmp.replace(path)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load(files: CaFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    """(CA cert, CA key, server cert) when all four files parse, else None."""
    try:
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
        server_cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        serialization.load_pem_private_key(files.server_key.read_bytes(), password=None)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        return None
    return ca_cert, ca_key, server_cert


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _server_cert_fits(server_cert: x509.Certificate, ca_cert: x509.Certificate,
                      names: list[x509.GeneralName]) -> bool:
    try:
        server_cert.verify_directly_issued_by(ca_cert)
        san = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return set(names) <= set(san) and _fresh(server_cert)


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = _now()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CA_VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                 names: list[x509.GeneralName]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_DNS_NAMES[0])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + SERVER_VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure_ca(directory: Path) -> CaFiles:
    """Create (or keep) the lab CA and the server certificate under ``directory``; return their paths.

    The directory is made traversable for every user (mode 755) so the postgres OS user reaches the
    CA certificate; its parents must be traversable too (the lab dir checks that at preflight).
    """
    files = ca_files(directory)
    files.directory.mkdir(parents=True, exist_ok=True)
    os.chmod(files.directory, DIR_MODE)
    names = server_names()
    loaded = _load(files)
    if loaded is not None and _fresh(loaded[0]) and _server_cert_fits(loaded[2], loaded[0], names):
        for path in (files.ca_cert, files.server_cert):
            os.chmod(path, CERT_MODE)
        return files
    if loaded is not None and _fresh(loaded[0]):
        ca_cert, ca_key = loaded[0], loaded[1]
        log.info("Re-issuing the lab server certificate under %s", files.directory)
    else:
        log.info("Creating the lab CA under %s", files.directory)
        ca_cert, ca_key = _make_ca()
        write_file(files.ca_key, _key_pem(ca_key), KEY_MODE)
        write_file(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)
    server_cert, server_key = _make_server(ca_cert, ca_key, names)
    write_file(files.server_key, _key_pem(server_key), KEY_MODE)
    chain = server_cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    write_file(files.server_cert, chain, CERT_MODE)
    return files
