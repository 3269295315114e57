"""Run one Redis/Valkey server process on loopback, and keep track of every one started.

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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import redis

from clusterq.testing.binaries import ServerBinary
from clusterq.testing.common import (
    DEFAULT_STARTUP_TIMEOUT,
    HOST,
    PortClash,
    TopologyError,
    admin_client,
    allocate_port,
    wait_until,
)

STOP_GRACE_SECONDS = 3.0
_LOG_NAME = "server.log"
_STDIO_NAME = "stdio.log"
_CONFIG_NAME = "server.conf"
_START_ATTEMPTS = 4


# --------------------------------------------------------------------------------------------------
# process registry and cleanup


_live_lock = threading.Lock()
_live_processes: dict[int, ServerProcess] = {}
_live_dirs: set[str] = set()
_owner_pid = os.getpid()


def _forget_everything_after_fork() -> None:
    """A forked child (a worker's pool process, say) does not own the parent's servers.

    Without this, the child's interpreter exit would run the atexit hook below and kill the
    servers its parent's tests are still using.
    """
    global _live_lock, _owner_pid
    _live_lock = threading.Lock()
    _live_processes.clear()
    _live_dirs.clear()
    _owner_pid = os.getpid()


os.register_at_fork(after_in_child=_forget_everything_after_fork)


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
    if os.getpid() != _owner_pid:
        return
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
        tls: bool = False,
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
        self.tls_port: int | None = allocate_port() if tls else None  # beside the plain port the harness uses
        self._popen: subprocess.Popen[bytes] | None = None
        self.paused = False
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

    def is_responsive(self) -> bool:
        """Running and not paused by :meth:`pause`: worth asking something."""
        return self.is_running() and not self.paused

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
        if self.tls_port is not None:
            base.append(f"tls-port {self.tls_port}")
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
                preexec_fn=_parent_death_hook(),  # see _parent_death_hook for why
            )
        _remember(self)

    def _answers_as_self(self) -> bool:
        """PING works and it is really our process answering, not someone else on our port."""
        if self._popen is not None and self._popen.poll() is not None:
            self._raise_exited()
        fresh = admin_client(self.port, timeout=0.25)
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
        if self.tls_port is not None:
            self.tls_port = allocate_port()
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
        self.paused = self.is_running()

    def resume(self) -> None:
        """Continue a paused process with SIGCONT."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """``kill -9`` the server (a crash) and reap it; its directory stays for :meth:`restart`."""
        self._signal(signal.SIGKILL)
        self._reap(timeout=STOP_GRACE_SECONDS)
        self.paused = False
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
        self.resume()

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
