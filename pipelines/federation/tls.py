"""Certificates and keys of a federation, made with `cryptography`: a CA and the SuperLink's TLS
certificate (EC P-256; the SuperLink serves TLS with it, each node verifies it with the CA), and each
node's SuperNode authentication key pair (EC P-384, OpenSSH format, as Flower's SuperNode reads it; the
SuperLink admits only registered public keys). Private keys are written 0600 and never printed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from anonymisation.keys import write_private

VALID_DAYS = 365


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ds4h federation"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_superlink_certs(folder: Path, hosts: list[str], *, now: dt.datetime | None = None) -> list[Path]:
    """``ca.pem`` + ``ca.key`` (the federation's CA) and ``superlink.pem`` + ``superlink.key`` for
    ``hosts`` (names or IPs the nodes use to reach the SuperLink)."""
    if not hosts:
        raise ValueError("give at least one --host (the name or IP the nodes reach the SuperLink at)")
    now = now or dt.datetime.now(dt.UTC)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("ds4h federation CA")).issuer_name(_name("ds4h federation CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [folder / "ca.pem", folder / "ca.key", folder / "superlink.pem", folder / "superlink.key"]
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    write_private(paths[1], _pem_key(ca_key))
    paths[2].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(paths[3], _pem_key(key))
    return paths


def make_node_keys(folder: Path, site: str) -> tuple[Path, Path]:
    """``<site>`` (private, OpenSSH, 0600) and ``<site>.pub`` (public, OpenSSH) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    key = ec.generate_private_key(ec.SECP384R1())
    private = folder / site
    public = folder / f"{site}.pub"
    write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + f" ds4h-{site}\n".encode())
    return private, public
