"""HTTPS for the simulator: each host serves its own self-signed certificate, as a real pool does.

XAPI's installer and ``host.reset_server_certificate`` make each host's certificate with
``gencert`` (XA ``ocaml/gencert/selfcert.ml`` ``host``, called from ``ocaml/gencert/gencert.ml``):
a **self-signed** RSA-2048 certificate, subject and issuer ``CN=<host name>``, a
``subjectAltName`` with the host's DNS names and its management IP, valid for ten years, no
CA of the pool behind it. So a client that verifies TLS trusts a pool only with a bundle of
every host's certificate (``ca_file``) — the master's alone breaks at the first
``HOST_IS_SLAVE`` hop or failover — and it reaches the hosts by an address in their SANs.

Needs the ``cryptography`` package (the ``sim`` and ``test`` extras).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VALID_FOR_DAYS = 365 * 10  # gencert.ml
KEY_BITS = 2048  # selfcert.ml key_length


@dataclass(frozen=True)
class HostCertificate:
    """One host's certificate and key, PEM-encoded, and the files the server loads them from."""

    name: str
    cert_pem: str
    key_pem: str
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


def host_certificate(name: str, dns_names: Sequence[str], ips: Sequence[str], folder: Path) -> HostCertificate:
    """selfcert.ml ``host``: self-signed, CN = name, SANs = DNS names + IPs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns_names)]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_FOR_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_text(cert_pem, encoding="utf-8")
    key_file.touch(mode=0o600)
    key_file.write_text(key_pem, encoding="utf-8")
    return HostCertificate(name, cert_pem, key_pem, cert_file, key_file)
