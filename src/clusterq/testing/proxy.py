"""Standalone servers sharded behind a proxy: twemproxy (Debian's ``nutcracker``) with the ``{}`` hash tag
in front of three servers, the deployment many sites ran before Redis Cluster and still run."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import redis

from clusterq.testing.binaries import ServerBinary
from clusterq.testing.common import DEFAULT_STARTUP_TIMEOUT, HOST, TopologyError, allocate_port
from clusterq.testing.servers import ServerProcess
from clusterq.testing.topology import Topology, base_data_config

NUTCRACKER = "nutcracker"


def find_nutcracker() -> str:
    """The twemproxy binary on PATH (or in /usr/sbin, where Debian puts it), else a TopologyError."""
    found = shutil.which(NUTCRACKER) or shutil.which(NUTCRACKER, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise TopologyError("twemproxy is not installed: apt-get install nutcracker (the proxy tests need it)")
    return found


class Twemproxy(Topology):
    """``backends`` standalone servers behind one twemproxy listening on a free loopback port.

    The proxy hashes each key's ``{...}`` tag (``hash_tag: "{}"``) with ketama over the backends, so every
    key of one clusterq queue (one tag) lives on one backend and each script runs there whole.
    """

    kind = "proxy"

    def __init__(self, binary: ServerBinary | None = None, backends: int = 3, *,
                 startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        super().__init__(binary, startup_timeout=startup_timeout)
        self.backend_count = backends
        self._backends: list[ServerProcess] = []
        self._proxy: subprocess.Popen[bytes] | None = None
        self.proxy_port: int | None = None

    def _start(self) -> None:
        assert self.root is not None
        binary = find_nutcracker()
        self._backends = [self._new_process(f"backend-{i}", base_data_config()) for i in range(self.backend_count)]
        for backend in self._backends:
            backend.start(self.startup_timeout)
        self.proxy_port = allocate_port()
        config = self.root / "nutcracker.yml"
        config.write_text(self.config_text(self.proxy_port, [b.port for b in self._backends]))
        log = (self.root / "nutcracker.log").open("wb")
        # Its stats server gets a free port too (the default 22222 may be taken by another twemproxy).
        self._proxy = subprocess.Popen([binary, "-c", str(config), "-o", str(self.root / "nutcracker.out"),
                                        "-a", HOST, "-s", str(allocate_port())],
                                       stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                with socket.create_connection((HOST, self.proxy_port), timeout=0.5) as sock:
                    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self._proxy.poll() is not None or time.monotonic() > deadline:
                out = self.root / "nutcracker.out"
                said = out.read_text(errors="replace")[-2000:] if out.exists() else "(no output)"
                raise TopologyError(f"twemproxy did not start on port {self.proxy_port}: {said}")
            time.sleep(0.05)

    @staticmethod
    def config_text(port: int, backends: Sequence[int]) -> str:
        servers = "\n".join(f"   - {HOST}:{p}:1 backend{i}" for i, p in enumerate(backends))
        return (f"clusterq:\n  listen: {HOST}:{port}\n  hash: murmur\n  hash_tag: \"{{}}\"\n"
                f"  distribution: ketama\n  redis: true\n  auto_eject_hosts: false\n  timeout: 5000\n"
                f"  servers:\n{servers}\n")

    @property
    def backends(self) -> list[ServerProcess]:
        if not self.started:
            raise TopologyError("Twemproxy is not started; call start() first")
        return list(self._backends)

    @property
    def url(self) -> str:
        if self.proxy_port is None:
            raise TopologyError("Twemproxy is not started; call start() first")
        return f"redis+proxy://{HOST}:{self.proxy_port}"

    def flush(self) -> None:
        for backend in self._backends:
            backend.admin.flushall()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client of the proxy (RESP2, no handshake: what the proxy relays)."""
        from clusterq.connection.sync import PROXY_OPTIONS, proxy_client

        if self.proxy_port is None:
            raise TopologyError("Twemproxy is not started; call start() first")
        client: redis.Redis = proxy_client(redis.Redis(host=HOST, port=self.proxy_port, **{**PROXY_OPTIONS, **kwargs}))
        return client

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.terminate()
            try:
                self._proxy.wait(5)
            except subprocess.TimeoutExpired:
                self._proxy.kill()
                self._proxy.wait(5)
            self._proxy = None
        super().stop()
        self._backends = []
        self.proxy_port = None
