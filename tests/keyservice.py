"""The reference key service (`coffre keyserver`) as a subprocess, for tests of hold your own key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.server import free_port


def coffre(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coffre", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


class KeyService:
    """A `coffre keyserver` subprocess on 127.0.0.1 (plain HTTP on loopback, or TLS)."""

    def __init__(self, directory: Path, tls: bool = False) -> None:
        self.dir = directory
        self.key_file = str(directory / "keys.json")
        self.token_file = str(directory / "token")
        self.port = free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = str(directory / "keyserver.log")
        assert coffre("keyserver", "new-token", "--token-file", self.token_file).returncode == 0
        self.cert = self.key = None
        if tls:
            out = coffre("dev-cert", "--out", str(directory))
            assert out.returncode == 0, out.stderr
            self.cert, self.key = str(directory / "coffre-dev.crt"), str(directory / "coffre-dev.key")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return Path(self.token_file).read_text().strip()

    def keys(self, *args: str) -> str:
        out = coffre("keyserver", *args, "--key-file", self.key_file)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def start(self) -> KeyService:
        cmd = [sys.executable, "-m", "coffre", "keyserver", "--key-file", self.key_file, "--token-file",
               self.token_file, "--address", f"127.0.0.1:{self.port}"]
        if self.tls:
            cmd += ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]
        seen = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, Path(self.log).read_text()
            if b"listening on" in Path(self.log).read_bytes()[seen:]:
                return self
            time.sleep(0.05)
        raise RuntimeError("the key service did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
