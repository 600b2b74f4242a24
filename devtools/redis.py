"""Private Redis peers (never the machine's Redis on 6379) for tests and bench: a standalone server that can
be stopped and restarted on its port, a 3-master Cluster, and a Sentinel group (master, replica, 3 sentinels).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis
from redis.crc import key_slot

from devtools.net import free_port, wait_for_port
from devtools.procs import Proc

REDIS_SERVER = "redis-server"
SENTINEL_SERVICE = "tokengate"
READY_TIMEOUT = 15.0


def _sync_client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``predicate()`` (errors count as "not yet") until it is true, or fail with ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last!r})")


@dataclass
class RedisServer:
    """One redis-server process on 127.0.0.1:``port``; ``stop()``/``start()`` keep the port."""

    port: int
    workdir: Path
    extra_args: Sequence[str] = ()
    name: str = "redis"
    config_file: Path | None = None  # sentinels need a writable config file instead of flags
    bus_port: int | None = None  # Cluster bus, when cluster-enabled
    proc: Proc | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.alive()

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.port}.log"

    def start(self) -> None:
        if self.running:
            return
        args = [REDIS_SERVER]
        if self.config_file is not None:
            args.append(str(self.config_file))
        # --port 0 would switch TCP off, not pick a port (PEERS.md): the port is chosen by free_port().
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        if self.config_file is None:
            args += ["--save", "", "--appendonly", "no"]
        args += list(self.extra_args)
        # SIGKILL as the stop signal: a stop is a crash (no shutdown save), which outage tests rely on.
        self.proc = Proc(self.name, args, self.log_path, cwd=self.workdir, term_signal=signal.SIGKILL)
        try:
            wait_for_port(self.port, timeout=READY_TIMEOUT)
            _wait(self.ping, f"{self.name} on port {self.port}")
        except BaseException:
            self.stop()
            raise

    def ping(self) -> bool:
        with _sync_client(self.port) as client:
            return bool(client.ping())

    def stop(self) -> None:
        """Kill the process (as a crash would: no shutdown save) and wait for it."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def client(self) -> redis.Redis:
        return _sync_client(self.port)

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung Redis)."""
        assert self.proc is not None
        self.proc.signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.signal(signal.SIGCONT)


@dataclass
class RedisClusterPeer:
    """Three masters (no replicas) forming one Cluster on loopback."""

    nodes: list[RedisServer]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def slot_bounds(self) -> list[int]:
        """Node i serves slots [bounds[i], bounds[i + 1])."""
        return [round(i * 16384 / len(self.nodes)) for i in range(len(self.nodes) + 1)]

    def node_for(self, key: str) -> RedisServer:
        slot = key_slot(key.encode())
        bounds = self.slot_bounds
        return next(n for i, n in enumerate(self.nodes) if bounds[i] <= slot < bounds[i + 1])

    def wait_ok(self, timeout: float = READY_TIMEOUT) -> None:
        _wait(self.cluster_ok, "redis cluster", timeout)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def cluster_ok(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                info = client.cluster("info")  # parsed by redis-py into a dict
                if info.get("cluster_state") != "ok":
                    return False
        return True

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class RedisSentinelPeer:
    """A master, one replica and three sentinels watching service ``SENTINEL_SERVICE``."""

    master: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer]
    service: str = SENTINEL_SERVICE

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def master_address(self, sentinel: RedisServer | None = None) -> tuple[str, int] | None:
        with (sentinel or self.sentinels[0]).client() as client:
            found = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
        if not found:
            return None
        host, port = found
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    def current_master(self) -> RedisServer:
        address = self.master_address()
        return next(n for n in (self.master, self.replica) if address == ("127.0.0.1", n.port))

    def wait_replica_known(self, timeout: float = 30.0) -> None:
        """Sentinels learn of the replica from the master's INFO (~10 s); failover needs it."""

        def known() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    state = client.sentinel_master(self.service)
                if int(state.get("num-slaves", 0)) < 1 or int(state.get("num-other-sentinels", 0)) < 2:
                    return False
            return True

        _wait(known, "sentinels knowing the replica and each other", timeout)

    def wait_failover_from(self, old_master: RedisServer, timeout: float = 20.0) -> None:
        """Until every sentinel names another master and that server has taken the master role."""

        def done() -> bool:
            addresses = {self.master_address(sentinel) for sentinel in self.sentinels}
            if len(addresses) != 1 or addresses == {("127.0.0.1", old_master.port)}:
                return False
            with self.current_master().client() as client:
                return bool(client.info("replication").get("role") == "master")

        _wait(done, "sentinel failover", timeout)

    def wait_in_sync(self, timeout: float = 30.0) -> None:
        """Until the current master has its replica attached and in sync (after an earlier failover)."""
        master = self.current_master()
        replica = self.replica if master is self.master else self.master

        def synced() -> bool:
            with replica.client() as client:
                info = client.info("replication")
            return bool(info.get("role") == "slave" and info.get("master_port") == master.port) and bool(
                info.get("master_link_status") == "up"
            )

        _wait(synced, "the replica in sync with the current master", timeout)

    def reattach(self, old_master: RedisServer) -> None:
        """After a failover, make the old master a replica of the new one now, as the sentinels would
        within ~10 s (they poll it), so the next test finds a replicated pair."""
        if self.current_master() is old_master:
            return  # no failover happened
        with old_master.client() as client:
            client.replicaof("127.0.0.1", self.current_master().port)
        self.wait_in_sync()

    def flushall(self) -> None:
        self.current_master().flushall()

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.stop()


#: An append-only file synced on every write: what a crash (SIGKILL) leaves is exactly what was acknowledged.
PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "always")


def _cluster_node(workdir: Path, index: int) -> RedisServer:
    bus_port = free_port()
    return RedisServer(
        free_port(),
        workdir,
        name=f"cluster{index}",
        bus_port=bus_port,
        extra_args=[
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(bus_port),
            "--cluster-config-file",
            f"nodes-{index}.conf",
            "--cluster-node-timeout",
            "2000",
        ],
    )


def _sentinel_node(workdir: Path, index: int, master_port: int) -> RedisServer:
    port = free_port()
    config = workdir / f"sentinel{index}.conf"  # sentinels rewrite their config: one file each
    config.write_text(
        f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} 2\n"
        f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n"
        f"sentinel failover-timeout {SENTINEL_SERVICE} 5000\n"
        f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
    )
    return RedisServer(port, workdir, name=f"sentinel{index}", config_file=config, extra_args=["--sentinel"])


def _names_master(peer: RedisSentinelPeer, sentinel: RedisServer, port: int) -> bool:
    return peer.master_address(sentinel) == ("127.0.0.1", port)


def start_cluster(workdir: Path, masters: int = 3) -> RedisClusterPeer:
    """``masters`` Cluster masters on loopback, slots assigned, ``cluster_state:ok`` on every node."""
    cluster = RedisClusterPeer([_cluster_node(workdir, i) for i in range(masters)])
    try:
        for node in cluster.nodes:
            node.start()
        # What `redis-cli --cluster create --cluster-replicas 0` does, minus its 1 s polling sleeps: split
        # the 16384 slots, introduce the nodes, wait for gossip to agree. ~2.1 s instead of ~3 s; the floor
        # is Redis's own 2 s CLUSTER_WRITABLE_DELAY after start-up before a master reports "ok".
        bounds = cluster.slot_bounds
        for index, node in enumerate(cluster.nodes):
            with node.client() as client:
                client.execute_command("CLUSTER ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1)
                client.execute_command("CLUSTER SET-CONFIG-EPOCH", index + 1)
        with cluster.nodes[0].client() as client:
            for node in cluster.nodes[1:]:
                client.execute_command("CLUSTER MEET", "127.0.0.1", node.port, node.bus_port)
        cluster.wait_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_sentinel_group(workdir: Path) -> RedisSentinelPeer:
    """Master + replica + 3 sentinels; ready when every sentinel names the master (no fixed sleeps)."""
    # Diskless full sync without its default 5 s wait for more replicas: the replica is in sync at once.
    sync = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
    master = RedisServer(free_port(), workdir, name="master", extra_args=sync)
    replica = RedisServer(
        free_port(), workdir, name="replica", extra_args=[*sync, "--replicaof", "127.0.0.1", str(master.port)]
    )
    peer = RedisSentinelPeer(master, replica, [_sentinel_node(workdir, i, master.port) for i in range(3)])
    try:
        master.start()
        replica.start()

        def replica_in_sync() -> bool:
            with replica.client() as client:
                return bool(client.info("replication").get("master_link_status") == "up")

        # Sentinels start once the replica is attached, so their first INFO of the master already lists
        # it (otherwise they learn of it ~10 s later, and a failover test waits that long).
        _wait(replica_in_sync, "redis replica")
        for sentinel in peer.sentinels:
            sentinel.start()
        for sentinel in peer.sentinels:
            _wait(partial(_names_master, peer, sentinel, master.port), f"sentinel on port {sentinel.port}")
    except BaseException:
        peer.stop()
        raise
    return peer
