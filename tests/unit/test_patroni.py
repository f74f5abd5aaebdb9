"""Patroni's REST answers -> topology, the failover decisions above the seam, and the postgres-failover
scenario's runbook checks: pure functions over Patroni 3.0 documents as the lab's Patroni returns them."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilience.faults.postgres_failover import measurements, validate_options
from resilience.ha_database import DatabaseHAError, require_failover_ready
from resilience.lab.writer import Journal, read_journal
from resilience.patroni import parse_cluster, parse_history


def cluster(replica_role: str = "sync_standby", replica_state: str = "running", lag: object = 0,
            replica_timeline: int = 3) -> dict[str, object]:
    return {"members": [
        {"name": "node-a", "role": replica_role, "state": replica_state, "api_url": "http://127.0.0.1:1/patroni",
         "host": "127.0.0.1", "port": 5433, "timeline": replica_timeline, "lag": lag},
        {"name": "node-b", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:2/patroni",
         "host": "127.0.0.1", "port": 5434, "timeline": 3}]}


def test_the_sync_standby_is_the_failover_candidate() -> None:
    topology = parse_cluster(cluster())
    assert topology.leader is not None and topology.leader.name == "node-b"
    assert require_failover_ready(topology, synchronous_mode=True) == ("node-b", "node-a")
    assert topology.whole(1, sync_standby=True)


@pytest.mark.parametrize(("doc", "synchronous", "message"), [
    (cluster(replica_state="stopped"), False, "no replica streams from node-b"),
    (cluster(lag="unknown"), False, "no replica streams"),  # Patroni does not know the lag: not streaming
    (cluster(lag=64 * 1024 * 1024), False, "no replica streams"),  # more than a WAL segment behind
    (cluster(replica_timeline=2), False, "no replica streams"),  # still on the old timeline
    (cluster(replica_role="replica"), True, "no replica is the synchronous standby yet"),
    ({"members": [m for m in cluster()["members"] if m["role"] != "leader"]}, False, "no running leader"),  # type: ignore[attr-defined]
])
def test_a_failover_that_could_lose_data_is_refused(doc: dict[str, object], synchronous: bool, message: str) -> None:
    with pytest.raises(DatabaseHAError, match=message):
        require_failover_ready(parse_cluster(doc), synchronous)


def test_an_asynchronous_replica_may_take_over_when_synchronous_mode_is_off() -> None:
    topology = parse_cluster(cluster(replica_role="replica"))
    assert require_failover_ready(topology, synchronous_mode=False) == ("node-b", "node-a")
    assert topology.whole(1, sync_standby=False) and not topology.whole(1, sync_standby=True)


def test_history_rows_carry_the_promotion_time() -> None:
    rows = [[1, 50331808, "no recovery target specified", "2026-12-02T02:01:36.431761+00:00", "node-a"],
            [2, 83886240, "no recovery target specified", "2026-12-02T02:07:15.803216+00:00", "node-b"],
            [3, 100663456, "no recovery target specified"]]  # Patroni < 2.1: no time, skipped
    switches = parse_history(rows)  # type: ignore[arg-type]
    assert [(s.timeline, s.new_leader) for s in switches] == [(1, "node-a"), (2, "node-b")]
    assert switches[1].at_epoch_s - switches[0].at_epoch_s == pytest.approx(339.372, abs=0.001)


def test_options_are_checked_before_the_cluster_is_asked() -> None:
    assert validate_options({}) == ("switchover", False)
    assert validate_options({"mode": "crash", "switch_back": True}) == ("crash", True)
    with pytest.raises(ValueError, match=r"options.mode: 'kill' is not one of \['switchover', 'crash'\]"):
        validate_options({"mode": "kill"})
    with pytest.raises(ValueError, match="options.switch_back: 'yes' must be true or false"):
        validate_options({"switch_back": "yes"})
    with pytest.raises(ValueError, match=r"options: \['count'\] not allowed for postgres-failover"):
        validate_options({"count": 1})


def test_the_runbook_measures_come_from_what_revert_observed_and_missing_ones_have_no_value() -> None:
    good = {"mode": "crash", "failover_s": 10.6, "synchronous_mode": True,
            "acknowledged_writes": {"acknowledged": 427, "lost": 0, "after_failover": 153}}
    measured = measurements(good)
    assert {k: m.value for k, m in measured.items()} == {"failover_s": 10.6, "acked_writes_lost": 0,
                                                         "writes_after_failover": 153}
    assert measured["acked_writes_lost"].detail == "of 427 acknowledged, synchronous replication"
    lost = measurements({**good, "synchronous_mode": False,
                         "acknowledged_writes": {"acknowledged": 427, "lost": 2, "after_failover": 0}})
    assert lost["acked_writes_lost"].value == 2 and "asynchronous" in lost["acked_writes_lost"].detail
    assert lost["writes_after_failover"].detail == "connections did not recover"
    assert {k: m.value for k, m in measurements({}).items()} == {
        "failover_s": None, "acked_writes_lost": None, "writes_after_failover": None}


def test_the_writer_journal_keeps_what_was_acknowledged_across_a_rotation(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("resilience.lab.writer.JOURNAL_MAX_BYTES", 60)
    path = tmp_path / "writer-acked.log"
    journal = Journal(path)
    for post_id in range(1, 8):
        journal.record(post_id, 1000.0 + post_id, 5_000_000 + post_id)
    journal.close()
    assert path.with_name("writer-acked.log.1").exists()  # rotated once it passed the limit
    with open(path, "a") as handle:
        handle.write("8 1008.000 ")  # a line cut by a kill mid-write
    assert read_journal(path, 1003.0) == [(i, 5_000_000 + i) for i in (3, 4, 5, 6, 7)]
    assert read_journal(path, 1002.0, 1004.0) == [(2, 5_000_002), (3, 5_000_003), (4, 5_000_004)]


def test_a_failover_that_held_its_slos_still_fails_on_a_lost_acknowledged_write() -> None:
    from resilience.chaos.expectations import check_expectation, failures
    from resilience.chaos.scenarios import load_catalogue

    checks = load_catalogue()["postgres-failover"].checks
    observed = {"mode": "crash", "failover_s": 10.6, "synchronous_mode": False,
                "acknowledged_writes": {"acknowledged": 427, "lost": 3, "after_failover": 153}}
    measured = measurements(observed)
    results = [check_expectation(c, measured.get(c.measure), {}) for c in checks]
    assert failures(results) == ["acknowledged writes lost 3 (of 427 acknowledged, asynchronous replication; at most 0)"]
    kept = {**observed, "acknowledged_writes": {"acknowledged": 427, "lost": 0, "after_failover": 153}}
    measured = measurements(kept)
    assert failures([check_expectation(c, measured.get(c.measure), {}) for c in checks]) == []
