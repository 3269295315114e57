"""A Redis Cluster behind real kernel NAT, for tests/nat.

The six nodes (three primaries, three replicas) run inside their own network namespace, each on its own
"pod" address ``10.77.N.11`` .. ``10.77.N.16`` port 6379, which is also what they announce
(``cluster-announce-ip``): ``CLUSTER SLOTS`` and ``MOVED`` replies name those addresses. The namespace is
joined to the test's (the host's) by a veth pair, ``10.78.N.1`` (host) <-> ``10.78.N.2`` (namespace),
and the nodes are published only through iptables DNAT rules in the namespace: ``10.78.N.2:7001`` ->
``10.77.N.11:6379`` and so on, as a Kubernetes NodePort or a NAT gateway publishes pods. The host has no
way to the announced addresses: ``ip route add unreachable 10.77.N.0/24``, so a connection to one fails
at once with "No route to host" and no packet leaves the machine (the host's default route never sees
them). For the "silently dropped" case (a firewall, a pod network that swallows packets), the route can
be switched to the veth, where a ``raw`` rule in the namespace drops anything addressed to the pod
addresses directly (DNAT'd traffic is rewritten after the ``raw`` table, so it still passes).

Where iptables is missing or the kernel has no NAT table, :func:`choose_mode` picks the fallback: the same
namespace, addresses and ports, published by a userspace TCP forwarder (forwarder.py) running inside the
namespace instead of DNAT rules; the nodes then see connections come from the gateway address, and the
"dropped" case routes the pod subnet to a veth neighbour that never answers.

The pod addresses sit on the namespace's loopback device (no ``dummy`` kernel module is needed); DNAT to a
local address is delivered like any packet for the host.

Everything a run creates is named for that run (namespace ``clusterq-nat-<pid>-<octet>``, veth
``cqh<token>``/``cqn<token>``, a subnet octet no route here uses), :meth:`NatCluster.stop` removes it all
whatever state the start-up reached, and :func:`remove_stale_runs` removes what a run killed before its
teardown left (its servers die with it: ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from clusterq.testing.cluster import parse_cluster_nodes, split_slots

ANNOUNCED_PORT = 6379
FIRST_EXPOSED_PORT = 7001
STARTUP_S = 30.0


class NetworkUnavailable(RuntimeError):
    """This machine cannot build the namespace or the NAT rules (the reason is the message)."""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetworkUnavailable(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


KERNEL = "kernel"
FORWARDER = "forwarder"
MODE_ENV = "CLUSTERQ_NAT_MODE"


def choose_mode() -> tuple[str | None, str]:
    """``(mode, why)``: ``"kernel"`` (iptables DNAT), ``"forwarder"`` (the userspace forwarder, where the
    machine has network namespaces but no usable iptables), or None when the test cannot run (``why``).
    ``$CLUSTERQ_NAT_MODE`` (kernel or forwarder) forces one."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "needs root: it creates a network namespace, a veth pair and NAT rules"
    if shutil.which("ip") is None:
        return None, "needs the `ip` command (iproute2)"
    forced = os.environ.get(MODE_ENV, "")
    if forced not in ("", KERNEL, FORWARDER):
        return None, f"${MODE_ENV} must be {KERNEL} or {FORWARDER}, not {forced!r}"
    probe = f"clusterq-natprobe-{secrets.token_hex(3)}"
    try:
        result = run("ip", "netns", "add", probe, check=False)
        if result.returncode != 0:
            return None, f"`ip netns add` is not available here: {result.stderr.strip()}"
        if forced == FORWARDER:
            return FORWARDER, f"the userspace forwarder (${MODE_ENV}={FORWARDER})"
        if shutil.which("iptables") is None:
            why = "no `iptables` command (Debian: apt-get install iptables)"
        else:
            nat = run("ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n", check=False)
            if nat.returncode == 0:
                return KERNEL, "kernel NAT (iptables DNAT)"
            why = f"the kernel has no iptables NAT table here: {nat.stderr.strip()}"
        if forced == KERNEL:
            return None, f"${MODE_ENV}={KERNEL}, but {why}"
        return FORWARDER, f"the userspace forwarder, not kernel NAT: {why}"
    finally:
        run("ip", "netns", "del", probe, check=False)


def why_unavailable() -> str | None:
    """Why the NAT test cannot run here at all, or None."""
    mode, why = choose_mode()
    return None if mode else why


def _die_with_parent() -> Callable[[], None]:
    """preexec_fn: the server gets SIGKILL if the test process dies (even by SIGKILL)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        os.setsid()
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def remove_stale_runs() -> list[str]:
    """Remove what runs that died without their teardown (their process was SIGKILLed) left behind: their
    namespaces (named ``clusterq-nat-<pid>-<octet>``, the pid being gone) and the route for their subnet.
    Their servers died with them (PR_SET_PDEATHSIG); any still inside such a namespace is killed."""
    removed = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        match = re.match(r"^clusterq-nat-(\d+)-(\d+)\b", line)
        if not match:
            continue
        pid, octet = int(match.group(1)), int(match.group(2))
        try:
            os.kill(pid, 0)
            continue  # its run is still going
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        namespace = f"clusterq-nat-{pid}-{octet}"
        for leftover in run("ip", "netns", "pids", namespace, check=False).stdout.split():
            try:
                os.kill(int(leftover), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run("ip", "netns", "del", namespace, check=False)
        run("ip", "route", "del", f"10.77.{octet}.0/24", check=False)
        removed.append(namespace)
    return removed


def _free_octet() -> int:
    """A third octet N for 10.77.N.0/24 and 10.78.N.0/29 that no route or address here uses yet."""
    taken = run("ip", "-4", "route", "show").stdout + run("ip", "-4", "addr", "show").stdout
    choices = [n for n in range(1, 255) if f"10.77.{n}." not in taken and f"10.78.{n}." not in taken]
    if not choices:
        raise NetworkUnavailable("no free 10.77.N.0/24 subnet left for the NAT test")
    return random.choice(choices)


class NatCluster:
    """Three primaries and three replicas in a namespace, published only through DNAT."""

    def __init__(self, binary: str, primaries: int = 3, replicas_per_primary: int = 1,
                 node_timeout_ms: int = 1500, mode: str = KERNEL) -> None:
        if mode not in (KERNEL, FORWARDER):
            raise ValueError(f"mode must be {KERNEL!r} or {FORWARDER!r}")
        self.mode = mode
        self.forwarder: subprocess.Popen[bytes] | None = None
        self.binary = binary
        self.primary_count = primaries
        self.count = primaries * (1 + replicas_per_primary)
        self.node_timeout_ms = node_timeout_ms
        self.token = secrets.token_hex(3)
        self.namespace = ""  # clusterq-nat-<pid>-<octet>, once the octet is chosen
        self.host_if = f"cqh{self.token}"
        self.ns_if = f"cqn{self.token}"
        self.octet = 0
        self.dir = Path(tempfile.mkdtemp(prefix="clusterq-nat-"))
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * self.count
        self._admins: dict[int, redis.Redis] = {}
        self._route_added = False

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def host_address(self) -> str:
        """The host's end of the veth."""
        return f"10.78.{self.octet}.1"

    @property
    def client_source(self) -> str:
        """Where the test's connections come from as the nodes see them: the host's end of the veth through
        kernel NAT (DNAT keeps the source), the gateway through the userspace forwarder."""
        return self.host_address if self.mode == KERNEL else self.gateway

    @property
    def gateway(self) -> str:
        """The namespace's end of the veth: the only address the host can reach, with one port per node."""
        return f"10.78.{self.octet}.2"

    @property
    def pod_subnet(self) -> str:
        return f"10.77.{self.octet}.0/24"

    def announced(self, index: int) -> tuple[str, int]:
        return f"10.77.{self.octet}.{11 + index}", ANNOUNCED_PORT

    def exposed(self, index: int) -> tuple[str, int]:
        return self.gateway, FIRST_EXPOSED_PORT + index

    @property
    def remap(self) -> dict[tuple[str, int], tuple[str, int]]:
        return {self.announced(i): self.exposed(i) for i in range(self.count)}

    def remap_option(self) -> str:
        """The URL's ``remap`` value: ``announced>reachable;...`` for every node, replicas included."""
        return ";".join(f"{a}:{ap}>{e}:{ep}" for (a, ap), (e, ep) in self.remap.items())

    def url(self, remap: bool = True, seeds: int = 3, **options: Any) -> str:
        """A ``redis+cluster://`` URL through the published ports, the first ``seeds`` nodes as seeds (three by
        default, so that a test may kill any one of them)."""
        hosts = ",".join(f"{h}:{p}" for h, p in (self.exposed(i) for i in range(seeds)))
        query = [f"{k}={v}" for k, v in options.items()]
        if remap:
            query.append(f"remap={self.remap_option()}")
        return f"redis+cluster://{hosts}" + (f"?{'&'.join(query)}" if query else "")

    def index_of(self, address: tuple[str, int]) -> int:
        """The node index of an announced or a published address."""
        for i in range(self.count):
            if address in (self.announced(i), self.exposed(i)):
                return i
        raise KeyError(address)

    # -- start -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._network()
        for index in range(self.count):
            self._launch(index)
        for index in range(self.count):
            self._wait(lambda index=index: self._ping(index), f"node {index} to answer through the NAT")
        self._form_cluster()

    def _network(self) -> None:
        # Choosing a free subnet and taking it is one step for concurrent runs on one machine.
        with open(os.path.join(tempfile.gettempdir(), "clusterq-nat.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            remove_stale_runs()
            self.octet = _free_octet()
            self.namespace = f"clusterq-nat-{os.getpid()}-{self.octet}"
            run("ip", "netns", "add", self.namespace)
            run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.namespace)
            run("ip", "addr", "add", f"{self.host_address}/29", "dev", self.host_if)
        ns = ("ip", "netns", "exec", self.namespace)
        run("ip", "link", "set", self.host_if, "up")
        run(*ns, "ip", "link", "set", "lo", "up")
        run(*ns, "ip", "addr", "add", f"{self.gateway}/29", "dev", self.ns_if)
        run(*ns, "ip", "link", "set", self.ns_if, "up")
        for index in range(self.count):
            run(*ns, "ip", "addr", "add", f"{self.announced(index)[0]}/32", "dev", "lo")
        if self.mode == KERNEL:
            for index in range(self.count):
                host, port = self.announced(index)
                run(*ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", self.ns_if, "-d", self.gateway, "-p",
                    "tcp", "--dport", str(self.exposed(index)[1]), "-j", "DNAT", "--to-destination", f"{host}:{port}")
            # Packets addressed to the pods directly (only possible once the host routes them here) are dropped
            # before NAT, as a firewall would: the client then sees a connect timeout, not a refusal.
            run(*ns, "iptables", "-t", "raw", "-A", "PREROUTING", "-i", self.ns_if, "-d", self.pod_subnet, "-j",
                "DROP")
        else:
            self._start_forwarder()
        self.unroutable()

    def _start_forwarder(self) -> None:
        specs = ["{}:{}={}:{}".format(*self.exposed(i), *self.announced(i)) for i in range(self.count)]
        script = Path(__file__).with_name("forwarder.py")
        self.forwarder = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, str(script), *specs],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent())
        assert self.forwarder.stdout is not None
        if self.forwarder.stdout.readline().strip() != b"ready":
            raise NetworkUnavailable("the userspace forwarder did not start")

    def unroutable(self) -> None:
        """The host has no route to the announced addresses: a connect fails at once (EHOSTUNREACH)."""
        run("ip", "route", "replace", "unreachable", self.pod_subnet)
        self._route_added = True

    def filtered(self) -> None:
        """Packets to the announced addresses vanish: connects time out. Through kernel NAT the host routes
        them to the namespace, which drops them; with the forwarder, to a neighbour on the veth that does not
        exist (10.78.N.3: never answers ARP)."""
        via = self.gateway if self.mode == KERNEL else f"10.78.{self.octet}.3"
        run("ip", "route", "replace", self.pod_subnet, "via", via, "dev", self.host_if)
        self._route_added = True

    def _config(self, index: int) -> Path:
        host, port = self.announced(index)
        node_dir = self.dir / f"node-{index}"
        node_dir.mkdir(exist_ok=True)
        lines = [
            f"bind {host}", f"port {port}", "protected-mode no", f'dir "{node_dir}"', 'logfile "server.log"',
            'save ""', "appendonly no", "cluster-enabled yes", "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout_ms}", f"cluster-announce-ip {host}",
            "repl-diskless-sync yes", "repl-diskless-sync-delay 0", "shutdown-timeout 0",
        ]
        path = node_dir / "redis.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _launch(self, index: int) -> None:
        config = self._config(index)
        self.processes[index] = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, self.binary, str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent())

    def admin(self, index: int) -> redis.Redis:
        """A plain client to one node, through its published port (never through the remap)."""
        if index not in self._admins:
            host, port = self.exposed(index)
            self._admins[index] = redis.Redis(host=host, port=port, socket_timeout=5, socket_connect_timeout=5,
                                              decode_responses=True)
        return self._admins[index]

    def _ping(self, index: int) -> bool:
        process = self.processes[index]
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"node {index} exited ({process.returncode}):\n{self.log_tail(index)}")
        try:
            return bool(self.admin(index).ping())
        except redis.RedisError:
            return False

    def log_tail(self, index: int, lines: int = 20) -> str:
        try:
            return "\n".join((self.dir / f"node-{index}" / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait(self, check: Callable[[], Any], what: str, timeout_s: float = STARTUP_S) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = check()
            except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- node {i}\n{self.log_tail(i)}" for i in range(self.count))
                raise RuntimeError(f"gave up after {timeout_s:g} s waiting for {what}\n{logs}")
            time.sleep(0.05)

    def _form_cluster(self) -> None:
        for index, (start, end) in enumerate(split_slots(self.primary_count)):
            self.admin(index).execute_command("CLUSTER ADDSLOTSRANGE", start, end)
        for index in range(self.count):
            self.admin(index).execute_command("CLUSTER SET-CONFIG-EPOCH", index + 1)
        for index in range(self.count):  # a full mesh of MEETs, by the announced (in-namespace) addresses
            for other in range(index + 1, self.count):
                host, port = self.announced(other)
                self.admin(index).execute_command("CLUSTER MEET", host, port)
        self._wait(self._all_met, "all nodes to meet")
        primary_ids = [self.admin(i).execute_command("CLUSTER", "MYID") for i in range(self.primary_count)]
        for index in range(self.primary_count, self.count):
            primary_id = primary_ids[index % self.primary_count]
            self._wait(lambda index=index, primary_id=primary_id:
                       self.admin(index).execute_command("CLUSTER REPLICATE", primary_id),
                       f"node {index} to accept CLUSTER REPLICATE")
        replicas = range(self.primary_count, self.count)
        self._wait(lambda: all(self.admin(i).info("replication").get("master_link_status") == "up" for i in replicas),
                   "the replicas to sync")
        # CLUSTER SLOTS hides a replica whose offset is still 0: a write replicated now makes them all show.
        for index in range(self.primary_count):
            self.admin(index).flushall()
            self.admin(index).execute_command("WAIT", 1, 2000)
        self.wait_converged()

    def _all_met(self) -> bool:
        for index in range(self.count):
            views = parse_cluster_nodes(self.admin(index).execute_command("CLUSTER", "NODES"))
            if len(views) != self.count or not all(v.settled for v in views):
                return False
        return True

    def cluster_state(self, index: int) -> str:
        info = self.admin(index).execute_command("CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in info.splitlines() if ":" in line).get("cluster_state", "?")

    def live(self) -> list[int]:
        return [i for i, p in enumerate(self.processes) if p is not None and p.poll() is None]

    def slots(self, index: int | None = None) -> list[tuple[int, int, tuple[str, int], list[tuple[str, int]]]]:
        """``CLUSTER SLOTS`` as one live node reports it: (start, end, primary, replicas), announced addresses."""
        node = self.live()[0] if index is None else index
        ranges = []
        for entry in self.admin(node).execute_command("CLUSTER", "SLOTS"):
            start, end, primary, *replicas = entry
            ranges.append((int(start), int(end), (primary[0], int(primary[1])),
                           [(r[0], int(r[1])) for r in replicas]))
        return sorted(ranges)

    def node_for_slot(self, slot: int) -> int:
        for start, end, primary, _ in self.slots():
            if start <= slot <= end:
                return self.index_of(primary)
        raise KeyError(slot)

    def wait_converged(self, expected_replicas: int | None = None) -> None:
        """Every live node says ``cluster_state:ok`` and reports the same slot map, covering every slot."""
        want = self.count // self.primary_count - 1 if expected_replicas is None else expected_replicas

        def converged() -> bool:
            maps = []
            for index in self.live():
                if self.cluster_state(index) != "ok":
                    return False
                ranges = self.slots(index)
                if sum(e - s + 1 for s, e, _, _ in ranges) != 16384:
                    return False
                if any(len(r) < want for _, _, _, r in ranges):
                    return False
                maps.append([(s, e, p) for s, e, p, _ in ranges])
            return all(m == maps[0] for m in maps)

        self._wait(converged, "the cluster to converge")

    # -- faults ------------------------------------------------------------------------------------

    def kill(self, index: int) -> None:
        """SIGKILL one node (a crash: its replica is promoted after ``cluster-node-timeout``)."""
        process = self.processes[index]
        assert process is not None
        process.kill()
        process.wait(10)
        admin = self._admins.pop(index, None)
        if admin is not None:
            admin.close()

    def wait_promoted(self, dead: int) -> int:
        """Wait until a replica of the dead primary took its slots; return the new primary's index."""
        old = self.announced(dead)

        def promoted() -> int | None:
            ranges = self.slots()
            if any(primary == old for _, _, primary, _ in ranges):
                return None
            for index in self.live():
                if self.cluster_state(index) != "ok":
                    return None
            return 1

        self._wait(promoted, f"a replica to take over from node {dead}")
        self.wait_converged(expected_replicas=0)
        former = {self.index_of(p) for _, _, p, _ in self.slots()}
        new = [i for i in former if i >= self.primary_count]
        assert len(new) == 1, f"expected one promoted replica, the primaries are {sorted(former)}"
        return new[0]

    # -- stop --------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Remove everything start() made, whatever it got to; never raises."""
        for admin in self._admins.values():
            try:
                admin.close()
            except Exception:
                pass
        self._admins.clear()
        for process in [*self.processes, self.forwarder]:
            if process is not None and process.poll() is None:
                process.kill()
        for process in [*self.processes, self.forwarder]:
            if process is not None:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        if self._route_added:
            run("ip", "route", "del", self.pod_subnet, check=False)
        # Deleting the namespace removes its end of the veth (so the host's end too), its addresses and its
        # iptables rules; the explicit link delete covers a namespace whose deletion lags behind.
        if self.namespace:
            run("ip", "netns", "del", self.namespace, check=False)
            run("ip", "link", "del", self.host_if, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What of this run is still on the machine (for the teardown check)."""
        found = []
        if self.namespace and self.namespace in run("ip", "netns", "list", check=False).stdout.split():
            found.append(f"namespace {self.namespace}")
        if self.octet and f"10.77.{self.octet}.0/24" in run("ip", "-4", "route", "show", check=False).stdout:
            found.append(f"route {self.pod_subnet}")
        found += [f"process {p.pid}" for p in [*self.processes, self.forwarder] if p is not None and p.poll() is None]
        return found
