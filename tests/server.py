"""Start and stop real coffre servers for tests (a subprocess on 127.0.0.1).

Every server starts with the root operator's credentials (OPERATOR_ACCESS_KEY, for the admin
API only) and, made through the admin API as an operator would, a tenant "test" whose root
access key is ACCESS_KEY / SECRET_KEY: the S3 tests act as that tenant's root.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

# The tenant "test"'s root key (imported with the admin API at start, so it is known in advance).
ACCESS_KEY = "COTESTROOTKEY0000001"
SECRET_KEY = "test-secret-key-that-is-long-enough-000"
TENANT = "test"
# The root operator's key (COFFRE_ROOT_ACCESS_KEY): the admin API's, refused on S3.
OPERATOR_ACCESS_KEY = "COTESTOPERATOR000001"
OPERATOR_SECRET_KEY = "test-operator-secret-long-enough-00000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    data_dir: str
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    # Every server has its own admin listener (metrics, health): servers run side by side.
    admin_port: int = field(default_factory=free_port)
    log_path: str = ""
    # Make the tenant "test" with ACCESS_KEY at start (idempotent: restarts on the same data find it).
    with_tenant: bool = True

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 30) -> Server:
        env = dict(os.environ)
        env.update({"COFFRE_ROOT_ACCESS_KEY": OPERATOR_ACCESS_KEY, "COFFRE_ROOT_SECRET_KEY": OPERATOR_SECRET_KEY,
                    "COFFRE_DATA_DIR": self.data_dir, "COFFRE_ADDRESS": f"127.0.0.1:{self.port}",
                    "COFFRE_ADMIN_ADDRESS": f"127.0.0.1:{self.admin_port}", "COFFRE_LOG_LEVEL": "WARNING"})
        env.update(self.env)
        self.log_path = os.path.join(os.path.dirname(self.data_dir.rstrip("/")) or ".",
                                     f"coffre-{self.port}.log")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "coffre", "serve"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coffre exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("coffre did not start in time")
        if self.with_tenant:
            from tests.tenants import ensure_test_tenant

            ensure_test_tenant(self)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the crash a power cut or OOM killer would cause."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
