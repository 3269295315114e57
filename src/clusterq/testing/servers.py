"""Run one Redis/Valkey server process on loopback, and the shared machinery of topologies.

Every server gets a free port, its own directory (config file, log, cluster/sentinel state), no
persistence, and its own session, so Ctrl-C in a terminal does not hit it and a test can crash
(``kill -9``), pause (SIGSTOP) or restart it on purpose. Every running process is remembered so an
``atexit`` hook can reap whatever a crashed or interrupted test run leaves behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .binaries import ServerBinary, find_server

HOST = "127.0.0.1"
POLL_INTERVAL = 0.01
STOP_GRACE_SECONDS = 3.0
DEFAULT_STARTUP_TIMEOUT = 30.0
_LOG_NAME = "server.log"
_STDIO_NAME = "stdio.log"
_CONFIG_NAME = "server.conf"
_START_ATTEMPTS = 4

T = TypeVar("T")
TopologyT = TypeVar("TopologyT", bound="Topology")

# Errors that only mean "not ready yet" while polling a server that is starting or converging.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ResponseError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
)


class TopologyError(RuntimeError):
    """A server or topology did not start or did not reach the expected state in time."""


class PortClash(TopologyError):
    """The server could not bind its port because something else took it after we picked it."""


# --------------------------------------------------------------------------------------------------
# ports


_port_lock = threading.Lock()
_handed_out: set[int] = set()


def allocate_port() -> int:
    """Return a loopback port that is free right now and not handed out before by this process.

    Binding to port 0 lets the kernel pick; remembering what we handed out stops two servers of one
    topology from getting the same port. Another program can still take it before the server binds,
    which is why starts retry on :class:`PortClash`.
    """
    with _port_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise TopologyError("could not find a free loopback port")


# --------------------------------------------------------------------------------------------------
# polling


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy, treating redis/socket errors as "not yet".

    Short sleeps instead of fixed waits keep topology start-up in the low seconds. On timeout the
    error names what we waited for, the last error seen, and ``details()`` (e.g. a log tail).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except TRANSIENT_ERRORS as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:.1f}s waiting for {what}"
            if last_error is not None:
                message += f" (last error: {last_error!r})"
            if details is not None:
                message += "\n" + details()
            raise TopologyError(message)
        time.sleep(interval)


def admin_client(port: int, timeout: float = 5.0) -> redis.Redis:
    """A client for the harness's own commands: decoded strings, bounded timeouts, no retries.

    redis-py >= 6 retries with a back-off of up to seconds by default, which would turn fast polling
    into slow polling and hide a paused node; the harness wants every failure reported at once.
    """
    return redis.Redis(
        host=HOST,
        port=port,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 2.0),
        retry=Retry(NoBackoff(), 0),
    )


# --------------------------------------------------------------------------------------------------
# process registry and cleanup


_live_lock = threading.Lock()
_live_processes: dict[int, ServerProcess] = {}
_live_dirs: set[str] = set()


def _remember(process: ServerProcess) -> None:
    with _live_lock:
        _live_processes[id(process)] = process


def _forget(process: ServerProcess) -> None:
    with _live_lock:
        _live_processes.pop(id(process), None)


def running_processes() -> list[ServerProcess]:
    """Every server process started by this Python process and not stopped yet."""
    with _live_lock:
        return [proc for proc in _live_processes.values() if proc.is_running()]


def _reap_everything() -> None:
    """atexit hook: kill whatever is still running and delete the temporary directories.

    Interrupted runs (Ctrl-C, a failing session fixture) must not leave servers holding ports.
    """
    with _live_lock:
        processes = list(_live_processes.values())
        directories = list(_live_dirs)
    for process in processes:
        process.kill_group()
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


atexit.register(_reap_everything)


def make_temp_dir(kind: str) -> Path:
    """A fresh temporary directory for one topology, removed at stop() or at interpreter exit."""
    path = tempfile.mkdtemp(prefix=f"clusterq-{kind}-")
    with _live_lock:
        _live_dirs.add(path)
    return Path(path)


def remove_temp_dir(path: Path) -> None:
    """Delete a topology's directory and stop tracking it."""
    shutil.rmtree(path, ignore_errors=True)
    with _live_lock:
        _live_dirs.discard(str(path))


def _parent_death_hook() -> Callable[[], None] | None:
    """On Linux, make servers die with the test process even if it is killed with SIGKILL.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked exits, so it is only used for starts
    from the main thread, whose end is the end of the process.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


# --------------------------------------------------------------------------------------------------
# one server


def _quote(value: str) -> str:
    """Quote a config value the way redis.conf parses it (paths may contain spaces)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ServerProcess:
    """One ``redis-server``/``valkey-server`` process (data node or sentinel) that tests can abuse.

    The config lives in a file in the node's directory, so the server can rewrite it (sentinels do,
    and ``CONFIG REWRITE`` works) and :meth:`restart` brings the node back with the same port,
    directory, identity and data.
    """

    def __init__(
        self,
        binary: ServerBinary,
        directory: Path,
        name: str,
        config: Sequence[str] = (),
        *,
        sentinel: bool = False,
        cluster: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.name = name
        self.sentinel = sentinel
        self.cluster = cluster
        self.config_lines = list(config)
        self.extra_args = list(extra_args)
        self.port = allocate_port()
        self.cluster_port: int | None = allocate_port() if cluster else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._admin: redis.Redis | None = None
        self._config_written = False
        directory.mkdir(parents=True, exist_ok=True)

    # -- description ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"<ServerProcess {self.name} {HOST}:{self.port} {state}>"

    @property
    def address(self) -> str:
        """``host:port``, as used in URLs."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The pid of the current incarnation (changes on restart), or None before start."""
        return self._popen.pid if self._popen is not None else None

    @property
    def config_path(self) -> Path:
        return self.directory / _CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.directory / _LOG_NAME

    def is_running(self) -> bool:
        """True while the process exists (a paused process is running)."""
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log and of its stdout/stderr, for error messages."""
        parts = []
        for path in (self.log_path, self.directory / _STDIO_NAME):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                tail = "\n".join(text.splitlines()[-lines:])
                parts.append(f"--- {self.name} {path.name} (last {lines} lines) ---\n{tail}")
        return "\n".join(parts) or f"--- {self.name}: no log output ---"

    # -- clients ----------------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new redis-py client connected to this node only (keyword arguments go to redis.Redis)."""
        kwargs.setdefault("host", HOST)
        kwargs.setdefault("port", self.port)
        return redis.Redis(**kwargs)

    @property
    def admin(self) -> redis.Redis:
        """The harness's own cached client (decoded responses, no retries)."""
        if self._admin is None:
            self._admin = admin_client(self.port)
        return self._admin

    def info(self, section: str = "server") -> dict[str, Any]:
        """``INFO <section>`` as parsed by redis-py."""
        return dict(self.admin.info(section))

    # -- lifecycle --------------------------------------------------------------------------------

    def _render_config(self) -> str:
        base = [
            f"port {self.port}",
            f"bind {HOST}",
            "daemonize no",
            f"dir {_quote(str(self.directory))}",
            f"logfile {_quote(str(self.log_path))}",
        ]
        if not self.sentinel:
            base += ['save ""', "appendonly no"]
        if self.cluster_port is not None:
            base.append(f"cluster-port {self.cluster_port}")
        return "\n".join(base + self.config_lines) + "\n"

    def write_config(self) -> None:
        """(Re)write the config file; done before the first start and after a port change only."""
        self.config_path.write_text(self._render_config())
        self._config_written = True

    def launch(self) -> None:
        """Spawn the process without waiting for it; :meth:`wait_ready` does the waiting."""
        if self.is_running():
            raise TopologyError(f"{self.name} is already running (pid {self.pid})")
        if not self._config_written:
            self.write_config()
        argv = [self.binary.path, str(self.config_path)]
        if self.sentinel:
            argv.append("--sentinel")
        argv += self.extra_args
        with open(self.directory / _STDIO_NAME, "ab") as stdio:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=_parent_death_hook(),  # noqa: PLW1509 - see _parent_death_hook
            )
        _remember(self)

    def _answers_as_self(self) -> bool:
        """PING works and it is really our process answering, not someone else on our port."""
        if self._popen is not None and self._popen.poll() is not None:
            self._raise_exited()
        fresh = admin_client(self.port, timeout=1.0)
        try:
            if not fresh.ping():
                return False
            return int(fresh.info("server")["process_id"]) == self.pid
        except redis.BusyLoadingError:
            return False
        finally:
            fresh.close()

    def _raise_exited(self) -> None:
        tail = self.log_tail()
        code = self._popen.returncode if self._popen is not None else None
        message = f"{self.name} ({self.binary}) exited with code {code} while starting\n{tail}"
        if "Address already in use" in tail or "Could not create server TCP" in tail:
            raise PortClash(message)
        raise TopologyError(message)

    def wait_ready(self, timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        """Block until the server answers PING as itself; raise with the log tail otherwise."""
        wait_until(self._answers_as_self, timeout, f"{self.name} on port {self.port}", details=self.log_tail)

    def reallocate_ports(self) -> None:
        """Pick new ports after a clash and rewrite the config file with them."""
        self.port = allocate_port()
        if self.cluster_port is not None:
            self.cluster_port = allocate_port()
        self._reset_admin()
        self.write_config()

    def start(self, timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        """Launch and wait until ready, moving to new ports if another program took ours."""
        start_all([self], timeout)

    def restart(self, wait: bool = True, timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        """Stop (gracefully) if running, then start again on the same port and directory."""
        if self.is_running():
            self.terminate()
        self._reset_admin()
        self.launch()
        if wait:
            self.wait_ready(timeout)

    def _reset_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def _signal(self, signum: int) -> None:
        if self.is_running() and self._popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signum)

    def pause(self) -> None:
        """Freeze the process with SIGSTOP: it keeps its sockets but answers nothing (a hung node)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused process with SIGCONT."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """``kill -9`` the server (a crash) and reap it; its directory stays for :meth:`restart`."""
        self._signal(signal.SIGKILL)
        self._reap(timeout=STOP_GRACE_SECONDS)
        self._reset_admin()

    def terminate(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM (and SIGCONT, in case it is paused); SIGKILL if it is still there after ``grace``."""
        self.send_terminate()
        if not self._reap(timeout=grace):
            self.kill()
        self.kill_group()
        self._reset_admin()

    def send_terminate(self) -> None:
        """Ask the process to exit without waiting, so a topology can stop all nodes in parallel."""
        self._signal(signal.SIGTERM)
        self._signal(signal.SIGCONT)

    def _reap(self, timeout: float) -> bool:
        """Wait for the process to exit; True if it did (or was never started)."""
        if self._popen is None:
            return True
        try:
            self._popen.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        _forget(self)
        return True

    def kill_group(self) -> None:
        """SIGKILL the process and anything it forked (an RDB or replication child), then reap."""
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=STOP_GRACE_SECONDS)
        _forget(self)


def start_all(processes: Iterable[ServerProcess], timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
    """Start several servers in parallel and wait for all; a node whose port was taken moves ports.

    Launching everything first and then waiting overlaps the servers' start-up times.
    """
    pending = list(processes)
    for attempt in range(_START_ATTEMPTS):
        for process in pending:
            process.launch()
        clashed: list[ServerProcess] = []
        for process in pending:
            try:
                process.wait_ready(timeout)
            except PortClash:
                if attempt == _START_ATTEMPTS - 1:
                    raise
                clashed.append(process)
        for process in clashed:
            process.reallocate_ports()
        pending = clashed
        if not pending:
            return


def stop_all(processes: Iterable[ServerProcess], grace: float = STOP_GRACE_SECONDS) -> None:
    """Terminate all servers at once, then SIGKILL any that outlive the shared grace period."""
    processes = list(processes)
    for process in processes:
        process.send_terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        if not process._reap(timeout=deadline - time.monotonic()):
            process.kill()
        process.kill_group()
        process._reset_admin()


# --------------------------------------------------------------------------------------------------
# topologies


class Topology(ABC):
    """Common life cycle of the test topologies: start once, flush between tests, stop at the end.

    Subclasses implement :meth:`_start`, :attr:`url`, :meth:`flush` and :meth:`client`.
    """

    kind: str = "topology"

    def __init__(self, binary: ServerBinary | None = None, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT):
        self.binary = binary if binary is not None else find_server()
        self.startup_timeout = startup_timeout
        self.root: Path | None = None
        self.startup_seconds: float | None = None
        self._processes: list[ServerProcess] = []

    def __repr__(self) -> str:
        state = "running" if self.started else "stopped"
        return f"<{type(self).__name__} {self.binary.engine} {self.binary.version_string} {state}>"

    @property
    def started(self) -> bool:
        return self.root is not None

    @property
    def processes(self) -> list[ServerProcess]:
        """Every server process of this topology, data nodes and sentinels alike."""
        return list(self._processes)

    def _new_process(self, name: str, config: Sequence[str] = (), **kwargs: Any) -> ServerProcess:
        """Create (not start) a server with its own sub-directory of the topology's directory."""
        if self.root is None:
            raise TopologyError(f"{type(self).__name__} is not started")
        process = ServerProcess(self.binary, self.root / name, name, config, **kwargs)
        self._processes.append(process)
        return process

    def start(self: TopologyT) -> TopologyT:
        """Start every server and wait until the topology is fully formed; returns ``self``."""
        if self.started:
            return self
        began = time.monotonic()
        self.root = make_temp_dir(self.kind)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every server (terminate, then kill after a grace period) and delete the directory."""
        stop_all(self._processes)
        self._processes.clear()
        if self.root is not None:
            remove_temp_dir(self.root)
            self.root = None

    def __enter__(self: TopologyT) -> TopologyT:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _require_started(self) -> None:
        if not self.started:
            raise TopologyError(f"{type(self).__name__} is not started; call start() first")

    @abstractmethod
    def _start(self) -> None:
        """Create and start the servers, then wait until the topology is usable."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The clusterq connection URL of this topology."""

    @abstractmethod
    def flush(self) -> None:
        """Empty every database and wait until replicas have applied it too."""

    @abstractmethod
    def client(self, **kwargs: Any) -> Any:
        """A redis-py client of the kind this topology needs (Redis, Sentinel master, RedisCluster)."""


def base_data_config() -> list[str]:
    """Settings shared by every data node: fast replication, debuggable, quick to shut down.

    ``repl-diskless-sync-delay`` defaults to 5 s, which would add 5 s to every replica start;
    ``shutdown-timeout`` (7.0+) would make SIGTERM wait for lagging replicas.
    """
    return [
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
        "shutdown-timeout 0",
        "enable-debug-command local",
        "protected-mode no",
    ]


def flush_primary(node: ServerProcess, wait_timeout_ms: int = 2000) -> None:
    """``FLUSHALL`` on a primary, then ``WAIT`` until its connected replicas have applied it.

    Counting connected replicas first (``ROLE``) keeps WAIT from stalling when a test killed one.
    """
    pipe = node.admin.pipeline(transaction=False)
    pipe.execute_command("FLUSHALL")
    pipe.execute_command("ROLE")
    _, role = pipe.execute()
    replicas = len(role[2]) if role and role[0] == "master" else 0
    if replicas:
        acked = int(node.admin.execute_command("WAIT", replicas, wait_timeout_ms))
        if acked < replicas:
            raise TopologyError(f"only {acked} of {replicas} replicas of {node.name} acknowledged FLUSHALL")
