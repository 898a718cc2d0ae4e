"""``coffre dev-cert``: a self-signed certificate and key for local HTTPS, never for production."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from typing import Any

CERT_NAME = "coffre-dev.crt"
KEY_NAME = "coffre-dev.key"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
VALIDITY_DAYS = 397  # the longest validity clients accept for a leaf certificate


def _san(hosts: list[str]) -> list[Any]:
    from cryptography import x509

    names: list[Any] = []
    seen: set[str] = set()
    for host in [*DEFAULT_HOSTS, *hosts]:
        if host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_pair(hosts: list[str]) -> tuple[bytes, bytes]:
    """PEM certificate and PEM PKCS#8 key: ECDSA P-256, self-signed, SAN = localhost + ``hosts``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coffre development certificate")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a client clock slightly behind
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        # A CA:TRUE self-signed certificate, so it can be given to clients as their trust anchor
        # (--ca-bundle, verify=) as well as presented by the server.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def _write(path: str, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` from the start: the key is never readable by others, not even briefly."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened beyond ``mode``
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    out_dir = args.out
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    cert_path = os.path.abspath(os.path.join(out_dir, CERT_NAME))
    key_path = os.path.abspath(os.path.join(out_dir, KEY_NAME))
    if not args.force and (os.path.exists(cert_path) or os.path.exists(key_path)):
        print(f"coffre: {cert_path} or {key_path} already exists (--force to replace)", file=sys.stderr)
        return 2
    cert_pem, key_pem = make_pair(list(args.host or []))
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)
    names = ", ".join(dict.fromkeys([*DEFAULT_HOSTS, *(args.host or [])]))
    print(f"""Self-signed development certificate (ECDSA P-256, valid {VALIDITY_DAYS} days) for: {names}
  certificate: {cert_path}
  private key: {key_path} (mode 0600)

Serve over HTTPS:
  coffre serve --tls-cert {cert_path} --tls-key {key_path}

Trust it in clients (it is its own certificate authority):
  aws --endpoint-url https://localhost:9000 --ca-bundle {cert_path} s3 ls
  export AWS_CA_BUNDLE={cert_path}
  boto3.client("s3", endpoint_url="https://localhost:9000", verify="{cert_path}")

For local use only: in production, use a certificate from your certificate authority.""")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dev-cert", help="write a self-signed certificate and key for local HTTPS")
    p.add_argument("--out", default=".", help="directory to write coffre-dev.crt and coffre-dev.key in "
                                               "(default: the current directory)")
    p.add_argument("--host", action="append", metavar="NAME",
                   help="another DNS name or IP address for the certificate (repeatable); "
                        "localhost, 127.0.0.1 and ::1 are always included")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=run)
