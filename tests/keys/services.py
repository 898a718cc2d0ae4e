"""Real key services for the provider tests: a SoftHSM2 token and a PyKMIP server, each started
by the test in a temporary directory.

SoftHSM2 (Debian ``softhsm2``): ``softhsm2-util --init-token`` under a private SOFTHSM2_CONF.
PyKMIP's server (``kmip.services.server``) on Python 3.11: it runs as shipped when started with
an explicit configuration (no /etc/pykmip), TLS certificates made here with ``cryptography``
(a CA, a server and a client certificate, mutual TLS), and a private SQLite database.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                   "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")


def unavailable(reason: str) -> None:
    """Skip where a component truly cannot run here; on CI it must, so fail there."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class SoftHsm:
    module: str
    token_label: str
    pin: str
    conf: str


_HSM_DIR: Path | None = None


def softhsm_token(tmp: Path, label: str | None = None) -> SoftHsm:
    """A fresh token (its own label and PIN) in this process's SoftHSM2 token directory.

    The PKCS#11 library reads SOFTHSM2_CONF once per process, so every token of a test process
    lives in one directory (made under the first caller's ``tmp``); SoftHSM2 sees tokens added
    later when it lists its slots. ``SoftHsm.conf`` is that directory's configuration."""
    global _HSM_DIR
    module = next((m for m in SOFTHSM_MODULES if os.path.exists(m)), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        unavailable("SoftHSM2 is not installed (Debian package softhsm2)")
    assert module is not None and util is not None
    if _HSM_DIR is None:
        _HSM_DIR = tmp
        (tmp / "tokens").mkdir(parents=True, exist_ok=True)
        (tmp / "softhsm2.conf").write_text(
            f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(tmp / "softhsm2.conf")
    conf = _HSM_DIR / "softhsm2.conf"
    label = label or "t-" + os.urandom(6).hex()
    pin = "4" + os.urandom(6).hex()
    subprocess.run([util, "--init-token", "--free", "--label", label, "--so-pin", "so" + pin, "--pin", pin],
                   check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    return SoftHsm(module, label, pin, str(conf))


def softhsm_token_dir(hsm: SoftHsm) -> Path:
    """The directory that holds one token's objects (to take the token away)."""
    tokens = Path(hsm.conf).parent / "tokens"
    for d in tokens.iterdir():
        token_object = d / "token.object"
        if token_object.exists() and hsm.token_label.encode() in token_object.read_bytes():
            return d
    raise FileNotFoundError(hsm.token_label)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cert(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Name | None, issuer_key: rsa.RSAPrivateKey | None,
          ca: bool, usage: x509.ObjectIdentifier | None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(__import__("ipaddress").ip_address(
                                                             "127.0.0.1"))]), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: rsa.RSAPrivateKey | None = None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        kp = path.with_suffix(".key")
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption()))
        kp.chmod(0o600)


@dataclass
class KmipServer:
    host: str
    port: int
    cert: str
    key: str
    ca: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        # PyKMIP's server finishes its accept timeout (10 s) before it honours SIGTERM; its
        # SQLite store is of no use after the test, so it is killed at once. With its whole
        # process group: it starts a multiprocessing manager and a policy monitor process,
        # which outlive a kill of the server alone (they were left running after every test).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def kmip_server(tmp: Path) -> KmipServer:
    try:
        import kmip  # noqa: F401
    except ImportError:
        unavailable("PyKMIP is not installed (test extra)")
    tmp.mkdir(parents=True, exist_ok=True)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _cert("coffre test KMIP CA", ca_key, None, None, True, None)
    _write(tmp / "ca", ca)
    for name, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(tmp / name, _cert("localhost" if name == "server" else "coffre", k, ca.subject, ca_key, False,
                                 usage), k)
    port = _free_port()
    (tmp / "policies").mkdir(exist_ok=True)
    conf = tmp / "server.conf"
    conf.write_text(
        "[server]\n"
        f"hostname=127.0.0.1\nport={port}\n"
        f"certificate_path={tmp / 'server.crt'}\nkey_path={tmp / 'server.key'}\nca_path={tmp / 'ca.crt'}\n"
        "auth_suite=TLS1.2\n"
        f"policy_path={tmp / 'policies'}\n"
        "enable_tls_client_auth=True\n"
        "logging_level=INFO\n"
        f"database_path={tmp / 'kmip.db'}\n")
    log = tmp / "server.log"
    code = ("from kmip.services.server.server import KmipServer\n"
            f"s = KmipServer(config_path={str(conf)!r}, log_path={str(log)!r})\n"
            "with s:\n    s.serve()\n")
    # Its own process group (session): stop() ends the server and the processes it starts.
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "stderr", "wb"), start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it started before it failed
            raise RuntimeError("the KMIP server exited: " + (tmp / "stderr").read_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise RuntimeError("the KMIP server did not start")
    return KmipServer("127.0.0.1", port, str(tmp / "client.crt"), str(tmp / "client.key"), str(tmp / "ca.crt"),
                      proc, log)
