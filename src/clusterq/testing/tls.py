"""Throwaway TLS material for test servers: a CA and one certificate for loopback, and a check that a
server binary was built with TLS.

The certificate is valid for ``127.0.0.1`` and ``localhost``, serves both as the servers' certificate
and as the clients' (servers ask clients for one by default: ``tls-auth-clients yes``), and lasts a
day. Made with the ``cryptography`` package (in clusterq's ``test`` extra), imported only when used.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from clusterq.testing.binaries import ServerBinary
from clusterq.testing.common import HOST, allocate_port


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the CA that signed ``cert``, and ``cert`` with its private ``key``."""

    ca_cert: Path
    cert: Path
    key: Path

    def server_config(self) -> list[str]:
        """redis.conf lines that load these files (servers use ``cert`` towards each other too)."""
        return [f'tls-cert-file "{self.cert}"', f'tls-key-file "{self.key}"', f'tls-ca-cert-file "{self.ca_cert}"']

    def url_options(self) -> str:
        """The clusterq URL query that trusts the CA and presents ``cert`` as the client certificate."""
        return "&".join(f"{name}={quote(str(path), safe='/')}" for name, path in (
            ("ssl_ca_certs", self.ca_cert), ("ssl_certfile", self.cert), ("ssl_keyfile", self.key)))


def make_tls_files(directory: str | Path) -> TLSFiles:
    """Write a fresh CA, certificate and key for loopback into ``directory``."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:  # a clear message instead of a bare ImportError deep in a fixture
        raise RuntimeError("making test certificates needs the 'cryptography' package "
                           "(pip install 'clusterq[test]')") from exc
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clusterq test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))

    files = TLSFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.key.chmod(0o600)
    return files


_support: dict[str, str | None] = {}


def tls_unsupported_reason(binary: ServerBinary) -> str | None:
    """None if ``binary`` can serve TLS, else why not (e.g. built without it). Cached per binary.

    Starts the binary on a TLS port for a moment: a build without TLS says so and exits at once
    (valkey: "Failed finding TLS support"; older redis: "Bad directive").
    """
    if binary.path in _support:
        return _support[binary.path]
    with tempfile.TemporaryDirectory(prefix="clusterq-tls-probe-") as tmp:
        files = make_tls_files(tmp)
        argv = [binary.path, "--port", "0", "--tls-port", str(allocate_port()), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", tmp, "--tls-cert-file", str(files.cert), "--tls-key-file",
                str(files.key), "--tls-ca-cert-file", str(files.ca_cert)]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp)
        output = b""
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline and process.poll() is None and b"Ready to accept" not in output:
                line = process.stdout.readline() if process.stdout else b""
                output += line
        finally:
            process.kill()
            rest, _ = process.communicate()
        output += rest or b""
    text = output.decode("utf-8", "replace")
    reason = None if "Ready to accept" in text else (
        f"{binary} cannot serve TLS (built without it?): "
        + next((line.split("# ", 1)[-1] for line in text.splitlines() if "TLS" in line or "Bad directive" in line),
               text.strip().splitlines()[-1] if text.strip() else "it exited without saying why"))
    _support[binary.path] = reason
    return reason


__all__ = ["TLSFiles", "make_tls_files", "tls_unsupported_reason"]
