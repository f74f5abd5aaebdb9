"""The app database as a Patroni cluster, against real servers: switchover, and lost writes counted.

A synchronous crash (no write lost, the old leader back as the synchronous standby) is tested through the
product: ``tests/integration/test_chaos_campaign.py`` runs postgres-failover's crash variant as a campaign.

A lab of its own (these tests take the database down for seconds at a time: the other chaos tests
keep theirs). Role changes go through Patroni's REST API (``resilience.patroni``,
``resilience.ha_database``), as the postgres-failover scenario does; node crashes and the writer's
journal come from ``lab.control``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from resilience import ha_database
from resilience.lab import control
from resilience.patroni import PatroniClient
from tests.lab.labkit import Lab, eventually, needs_lab_tools, pg, pgbackrest, request, running_lab

pytestmark = [pytest.mark.integration, needs_lab_tools]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as lab:
        yield lab


def test_patroni_switchover_moves_writes_and_the_app_follows(lab: Lab) -> None:
    client = PatroniClient(lab.state["app_db"]["patroni"]["urls"])
    before = client.topology()
    assert before.leader is not None and ha_database.healthy_replica_count(before) == 1, before.describe()
    timing = ha_database.switchover(client)
    assert timing.new_leader != before.leader.name and timing.writable_after_s < 30
    state = lab.state  # lab.json's roles follow Patroni's answer
    assert f"node-{state['app_db']['primary']['node']}" == timing.new_leader
    marker = f"switchover-{os.getpid()}-{time.time_ns()}@lab.test"
    with psycopg.connect(state["app_db"]["read_write_dsn"], autocommit=True) as conn:
        port = conn.execute("SELECT inet_server_port()").fetchone()[0]
        conn.execute("INSERT INTO accounts (email, display_name) VALUES (%s, 'switchover')", (marker,))
    assert port == state["app_db"]["primary"]["port"]
    for _ in range(6):  # every replica drops its pooled connections to the old leader and follows
        status, body, _ = eventually(lambda: (r := request(f"{state['app']['url']}/api/health/database"))[0] == 200
                                     and json.loads(r[1])["server_port"] == port and r, 15)
        health = json.loads(body)
        assert (status, health["server_port"], health["in_recovery"]) == (200, port, False), health
    healed = ha_database.heal(client, lambda: [], replicas=1, timeout_s=60, sync_standby=True)
    assert healed.leader is not None and healed.leader.name == timing.new_leader  # healthy: nothing changed
    with pg(state, "replica") as replica:
        assert replica.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        assert eventually(lambda: replica.execute("SELECT 1 FROM accounts WHERE email = %s", (marker,)).fetchone(),
                          10)
    checked = pgbackrest(state, "check")  # pg1/pg2 both listed: pgBackRest finds the new primary itself
    assert checked.returncode == 0, checked.stdout + checked.stderr


def child_titled(postmaster: int, word: str) -> int:
    """The postmaster's child whose title holds ``word`` (``postgres: app: walsender ...``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            title = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(stat[1]) == postmaster and word in title:
            return int(entry.name)
    raise AssertionError(f"no {word} under postmaster {postmaster}")


def test_with_asynchronous_replication_a_crash_loses_acknowledged_writes_and_they_are_counted(lab: Lab) -> None:
    """The counter's own proof: with synchronous_mode off and the leader's WAL sender held (SIGSTOP), the
    leader acknowledges commits that never leave it; the leader's node is then lost, Patroni promotes the
    replica (its lag is under maximum_lag_on_failover) and pg_rewind discards them on the old leader. The
    writer's journal still lists them as acknowledged: they are counted lost. Synchronous mode is restored
    afterwards."""
    from resilience.lab.postgres import postmaster_pid_of

    state = lab.state
    client = PatroniClient(state["app_db"]["patroni"]["urls"])
    client.set_synchronous_mode(False)
    try:
        assert eventually(lambda: not any(m.is_sync_standby for m in client.topology().members), 30)
        old = client.topology().leader
        sender = child_titled(postmaster_pid_of(Path(state["app_db"]["primary"]["data_dir"])), "walsender")
        held_at = time.time()
        os.kill(sender, signal.SIGSTOP)
        try:
            assert eventually(lambda: control.acknowledged_writes(state, held_at) >= 20, 30)
            control.crash_postgres_node(state, state["app_db"]["primary"]["node"])
        finally:
            os.kill(sender, signal.SIGKILL)  # dies with what it never sent
        ha_database.wait_new_leader(client, old.name, held_at, timeout_s=45)
        ha_database.heal(client, lambda: control.start_postgres_nodes(state), replicas=1, timeout_s=120)
        writes = control.acknowledged_writes_lost(state, held_at - 5)
        # acknowledged to the writer, gone from the database: all but the few whose WAL was on its way already
        assert writes["lost"] >= 10, writes
    finally:
        client.set_synchronous_mode(True)
        assert eventually(lambda: client.topology().whole(1, sync_standby=True), 60)
