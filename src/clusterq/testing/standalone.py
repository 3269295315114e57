"""A single server: the simplest deployment, and the one most users test against first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from clusterq.testing.binaries import ServerBinary
from clusterq.testing.common import DEFAULT_STARTUP_TIMEOUT, HOST, TopologyError
from clusterq.testing.servers import ServerProcess
from clusterq.testing.tls import TLSFiles
from clusterq.testing.topology import Topology, base_data_config


class Standalone(Topology):
    """One server on a free loopback port.

    ``extra_args`` are appended to the command line (``("--maxmemory", "10mb")``) and override the
    harness's config file, so a test can try non-default settings. With ``tls`` (see
    :mod:`clusterq.testing.tls`) the server also listens on a TLS port: :attr:`tls_url`.
    """

    kind = "standalone"

    def __init__(
        self,
        binary: ServerBinary | None = None,
        extra_args: Sequence[str] = (),
        *,
        tls: TLSFiles | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        super().__init__(binary, startup_timeout=startup_timeout)
        self.extra_args = tuple(extra_args)
        self.tls = tls
        self._server: ServerProcess | None = None

    def _start(self) -> None:
        config = base_data_config() + (self.tls.server_config() if self.tls else [])
        self._server = self._new_process("node-0", config, extra_args=self.extra_args, tls=self.tls is not None)
        self._server.start(self.startup_timeout)

    @property
    def server(self) -> ServerProcess:
        """The one server process."""
        if self._server is None or not self.started:
            raise TopologyError("Standalone is not started; call start() first")
        return self._server

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.server.port}/0"

    @property
    def tls_url(self) -> str:
        """``rediss://`` to the TLS port, trusting the test CA and presenting the test certificate."""
        if self.tls is None or self.server.tls_port is None:
            raise TopologyError("this Standalone was started without tls=")
        return f"rediss://{HOST}:{self.server.tls_port}/0?{self.tls.url_options()}"

    def flush(self) -> None:
        self.server.admin.flushall()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client for the server (keyword arguments go to redis.Redis)."""
        return self.server.client(**kwargs)

    def stop(self) -> None:
        super().stop()
        self._server = None
