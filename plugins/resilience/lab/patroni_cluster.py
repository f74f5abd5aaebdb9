"""The app database as production runs it: a Patroni cluster of nodes ``a`` and ``b`` on one etcd member.

Patroni owns the nodes (initdb, configuration, replication, promotion, pg_rewind); the lab only
writes each node's ``patroni.yml``, starts and stops the Patroni daemons (as the postgres OS
user) and a single etcd member, and crashes a node on request (SIGKILL of Patroni and its
postmaster: what a lost host looks like to the rest of the cluster). Role changes go through
Patroni's REST API (:mod:`resilience.patroni`), the same code path as production.

The lab's default is ``synchronous_mode: true`` (non-strict): a commit is acknowledged once the
standby has it, so a crash of the leader loses no acknowledged write; with the standby gone
Patroni drops to asynchronous to keep writes going. ``PATCH /config`` switches it at run time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import yaml

from resilience.lab import pgbackrest_setup, postgres
from resilience.lab.daemons import log_tail, running_pid, start_daemon, stop_daemon, wait_for
from resilience.lab.errors import LabError, PreflightError
from resilience.lab.layout import HOST, NODES, PG_SUPERUSER, ClusterPaths, LabLayout
from resilience.lab.osuser import PG_OS_USER, make_dir
from resilience.lab.password import read_password
from resilience.patroni import PatroniClient, PatroniError, Topology

log = logging.getLogger(__name__)

SCOPE = "app"
REPLICATION_USER = "replicator"
TTL_S = 10            # leader key TTL: a crashed leader is replaced after about this long
LOOP_WAIT_S = 1
RETRY_TIMEOUT_S = 4   # Patroni wants loop_wait + 2 x retry_timeout <= ttl
MAX_LAG_ON_FAILOVER = 1024 * 1024
PATRONI_BIN = "/usr/bin/patroni"
ETCD_BIN = "/usr/bin/etcd"
ARCHIVE_TIMEOUT = "15s"


def member_name(name: str) -> str:
    """Patroni's member name of node ``a``: ``node-a`` (also its ``application_name``)."""
    return f"node-{name}"


def node_of_member(member: str) -> str:
    return member.removeprefix("node-")


def client(layout: LabLayout, timeout_s: float = 2.0) -> PatroniClient:
    return PatroniClient(layout.patroni_urls, timeout_s)


def replica_restore_command(layout: LabLayout, node: ClusterPaths) -> str:
    """Patroni's ``pgbackrest`` replica method: a delta restore of the newest backup into ``node``."""
    return " ".join([*pgbackrest_setup.base_argv(layout.pgbackrest_conf), f"--pg1-path={node.data_dir}",
                     "--delta", "restore"])


def node_config(layout: LabLayout, name: str) -> dict[str, object]:
    """``patroni.yml`` of node ``name`` (passwords come from the environment, never this file)."""
    node = layout.node(name)
    settings = postgres.base_settings(node)
    # Patroni sets these itself from listen/connect_address and its DCS settings
    for key in ("listen_addresses", "port", "wal_level", "hot_standby", "max_wal_senders", "max_replication_slots",
                "max_connections", "wal_log_hints"):
        settings.pop(key, None)
    settings.update(archive_mode="on", archive_timeout=ARCHIVE_TIMEOUT,
                    archive_command=pgbackrest_setup.archive_command(layout.pgbackrest_conf, pg_path=node.data_dir))
    return {
        "scope": SCOPE,
        "name": member_name(name),
        "log": {"level": "INFO", "dir": str(node.root), "file_num": 2, "file_size": 10_000_000},
        "restapi": {"listen": f"{HOST}:{layout.port(f'patroni_{name}')}",
                    "connect_address": f"{HOST}:{layout.port(f'patroni_{name}')}"},
        "etcd3": {"hosts": f"{HOST}:{layout.port('etcd')}"},
        "bootstrap": {
            "dcs": {
                "ttl": TTL_S, "loop_wait": LOOP_WAIT_S, "retry_timeout": RETRY_TIMEOUT_S,
                "maximum_lag_on_failover": MAX_LAG_ON_FAILOVER,
                "synchronous_mode": True,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {"wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                                   "max_wal_senders": 10, "max_replication_slots": 10, "max_connections": 120},
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"{HOST}:{node.port}",
            "connect_address": f"{HOST}:{node.port}",
            "data_dir": str(node.data_dir),
            "bin_dir": str(postgres.pg_bindir()),
            "pgpass": str(node.root / "pgpass"),
            "use_unix_socket": True,
            "authentication": {"superuser": {"username": PG_SUPERUSER},
                               "replication": {"username": REPLICATION_USER}},
            "parameters": {k: (("on" if v else "off") if isinstance(v, bool) else v) for k, v in settings.items()},
            "recovery_conf": {"restore_command": pgbackrest_setup.restore_command(layout.pgbackrest_conf,
                                                                                  pg_path=node.data_dir)},
            "create_replica_methods": ["pgbackrest", "basebackup"],
            "pgbackrest": {"command": replica_restore_command(layout, node),
                           "keep_data": True, "no_params": True},
            "basebackup": [{"checkpoint": "fast"}],
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
            "pg_hba": ["local all postgres peer", "local replication postgres peer",
                       f"host all all {HOST}/32 scram-sha-256",
                       f"host replication {REPLICATION_USER} {HOST}/32 scram-sha-256"],
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }


def refuse_unmanaged_nodes(layout: LabLayout) -> None:
    """A lab dir made before Patroni (data dirs, no ``patroni.yml``, or the v1 names) cannot be adopted."""
    old = [d for d in layout.legacy_data_dirs if (d / "PG_VERSION").exists()]
    old += [layout.node(n).data_dir for n in NODES
            if (layout.node(n).data_dir / "PG_VERSION").exists() and not layout.patroni_config(n).exists()]
    if old:
        raise PreflightError(
            f"lab dir {layout.lab_dir} holds PostgreSQL data dirs not managed by Patroni "
            f"({', '.join(str(d) for d in old)}): run `resilience lab down --purge` first")


def write_node_config(layout: LabLayout, name: str) -> Path:
    node = layout.node(name)
    postgres.prepare_dirs(node)
    path = layout.patroni_config(name)
    path.write_text("# Written by resilience.lab on every `resilience lab up`.\n"
                    + yaml.safe_dump(node_config(layout, name), sort_keys=False))
    path.chmod(0o600)
    if os.geteuid() == 0:
        import shutil

        shutil.chown(path, PG_OS_USER, PG_OS_USER)
    return path


def patroni_pid_file(layout: LabLayout, name: str) -> Path:
    return layout.pid_file(f"patroni-{name}")


def patroni_argv(layout: LabLayout, name: str) -> list[str]:
    """``python3 /usr/bin/patroni CONF``: the interpreter named, so the process's cmdline is this argv
    (the pid file check compares them)."""
    shebang = Path(PATRONI_BIN).read_text().splitlines()[0]
    interpreter = shebang[2:].split() if shebang.startswith("#!") else []
    return [*interpreter, PATRONI_BIN, str(layout.patroni_config(name))]


def etcd_argv(layout: LabLayout) -> list[str]:
    client_url, peer_url = layout.url("etcd"), layout.url("etcd_peer")
    return [ETCD_BIN, "--name", "lab", "--data-dir", str(layout.etcd_dir / "data"),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"lab={peer_url}", "--initial-cluster-state", "new",
            "--initial-cluster-token", f"resilience-lab-{layout.port_base}", "--log-level", "warn"]


def etcd_healthy(layout: LabLayout) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{layout.url('etcd')}/health", timeout=1) as response:
            return b'"health":"true"' in response.read()
    except OSError:
        return False


def start_etcd(layout: LabLayout, timeout_s: float = 30) -> int:
    make_dir(layout.etcd_dir, None, 0o700)
    pid = start_daemon(etcd_argv(layout), layout.pid_file("etcd"), layout.log_file("etcd"))
    if not wait_for(lambda: etcd_healthy(layout), timeout_s, interval_s=0.1):
        raise LabError(f"etcd did not become healthy on {layout.url('etcd')} within {timeout_s:.0f} s:\n"
                       f"{log_tail(layout.log_file('etcd'))}")
    return pid


def start_node(layout: LabLayout, name: str) -> int:
    """Start node ``name``'s Patroni (idempotent); it starts, clones or rewinds PostgreSQL itself."""
    write_node_config(layout, name)
    password = read_password(layout.password_file)
    env = {"PATRONI_SUPERUSER_PASSWORD": password, "PATRONI_REPLICATION_PASSWORD": password}
    return start_daemon(patroni_argv(layout, name), patroni_pid_file(layout, name),
                        layout.node(name).root / "patroni.out", user=PG_OS_USER, env=env)


def node_running(layout: LabLayout, name: str) -> int | None:
    return running_pid(patroni_pid_file(layout, name))


def leader_topology(layout: LabLayout, timeout_s: float) -> Topology:
    topology = client(layout).wait_writable_leader(timeout_s)
    if topology is None:
        raise LabError(f"the Patroni cluster has no writable leader after {timeout_s:.0f} s (logs: "
                       f"{', '.join(str(layout.node(n).root / 'patroni.out') for n in NODES)})")
    return topology


def ensure_cluster(layout: LabLayout, timeout_s: float = 60) -> str:
    """etcd and both nodes' Patroni up; wait for a leader; return its node name."""
    start_etcd(layout)
    for name in NODES:
        start_node(layout, name)
    leader = leader_topology(layout, timeout_s).leader
    assert leader is not None
    log.info("Patroni cluster %s: leader %s on port %d", SCOPE, leader.name, leader.port)
    return node_of_member(leader.name)


def wait_replicas(layout: LabLayout, replicas: int = len(NODES) - 1, timeout_s: float = 60) -> Topology:
    """Wait until ``replicas`` replicas stream from the leader, one of them its synchronous standby
    when synchronous mode is on: the cluster can then fail over without losing a commit."""
    patroni = client(layout)
    topology = patroni.wait_whole(replicas, patroni.synchronous_mode(), timeout_s)
    if topology is None:
        raise LabError(f"the Patroni cluster has not {replicas} streaming replica(s) (one synchronous in "
                       f"synchronous mode) after {timeout_s:.0f} s")
    log.info("Patroni cluster %s: %s", SCOPE, topology.describe())
    return topology


def stop_node(layout: LabLayout, name: str, timeout_s: float = 60) -> bool:
    """SIGTERM node ``name``'s Patroni: it stops PostgreSQL (fast shutdown) and exits."""
    stopped = stop_daemon(patroni_pid_file(layout, name), timeout_s, name=f"Patroni of node {name}")
    postgres.stop(layout.node(name))  # a postmaster left by a Patroni that was SIGKILLed
    return stopped


def crash_node(layout: LabLayout, name: str) -> dict[str, int | None]:
    """SIGKILL node ``name``'s Patroni, then its postmaster: the host is gone. Returns the PIDs killed."""
    patroni_pid = node_running(layout, name)
    postmaster = postgres.postmaster_pid(layout.node(name))
    if patroni_pid is None and postmaster is None:
        raise LabError(f"cannot crash node {name}: neither its Patroni nor its PostgreSQL runs")
    for pid in (patroni_pid, postmaster):
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    log.warning("Crashed node %s: SIGKILL to Patroni (pid %s) and its postmaster (pid %s)", name, patroni_pid,
                postmaster)
    return {"patroni_pid": patroni_pid, "postmaster_pid": postmaster}


def stop_cluster(layout: LabLayout) -> None:
    """Both nodes at once (SIGTERM: each Patroni stops its PostgreSQL, the leader releases its key while the
    replica is shutting down too, so no handover starts), then etcd."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(NODES)) as pool:
        list(pool.map(lambda name: stop_node(layout, name), NODES))
    stop_daemon(layout.pid_file("etcd"), name="etcd")


def leader_node(layout: LabLayout) -> str | None:
    """Node name of the running leader, None when no Patroni API answers or there is none."""
    try:
        leader = client(layout, 1.0).topology().leader
    except PatroniError:
        return None
    return node_of_member(leader.name) if leader else None
