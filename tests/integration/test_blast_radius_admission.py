"""The blast radius enforced by the ledger's admission, on a throw-away database of the lab's control-plane
PostgreSQL: concurrent admissions for the last slot (exactly one wins), a shared dependency, a reverted entry
freeing its slot, and the single-service campaign's default."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from resilience.ledger import ADMISSION_LOCK_KEY, RUN_LOCK, BlastRadiusRefused, Claim, InjectRefused, Ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(database):
    return Ledger(lambda: psycopg.connect(database))


@pytest.fixture
def run(ledger):
    """A campaign run holding the chaos/DR lock (admission needs it)."""
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    assert ledger.acquire_lock(RUN_LOCK, run_id, "chaos_campaign")[0]
    yield run_id
    ledger.release_lock(RUN_LOCK, run_id)


def admit(ledger: Ledger, run: str, service: str, depends_on: tuple[str, ...] = (), k: int = 1,
          scenario: str = "pod-kill") -> int:
    claim = ledger.admit(run, "chaos_campaign", "lab", scenario, {}, 60, owner=f"inject:{service}",
                         service=service, depends_on=depends_on, blast_radius=k)
    claim.release()
    return claim.entry_id


def waiting_for_admission(dsn: str) -> int:
    """Sessions of this database waiting for the admission lock (a bigint key: classid 0, objid the key)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 0"
            " AND objid = %s AND objsubid = 1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (ADMISSION_LOCK_KEY,)).fetchone()[0]


def test_two_admissions_racing_for_the_last_slot_admit_exactly_one(ledger, run, database):
    """K = 2 with one fault open: two workers admit other services at the same moment. The test holds the
    admission lock until both are queued on it, so both have started before either decides; without the
    lock they would not queue (the wait below would fail) and both could be admitted."""
    first = admit(ledger, run, "checkout", ("postgres",), k=2)
    outcomes: dict[str, Claim | Exception] = {}

    def worker(service: str) -> None:
        try:
            outcomes[service] = ledger.admit(run, "chaos_campaign", "lab", "s3-5xx", {}, 60, owner=f"inject:{service}",
                                             service=service, depends_on=(f"{service}-db",), blast_radius=2)
        except Exception as exc:  # the outcome under test
            outcomes[service] = exc

    with psycopg.connect(database) as gate:
        gate.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK_KEY,))
        workers = [threading.Thread(target=worker, args=(s,)) for s in ("search", "cart")]
        for thread in workers:
            thread.start()
        deadline = time.monotonic() + 30
        while waiting_for_admission(database) < 2:
            assert time.monotonic() < deadline, f"the admissions did not queue on the admission lock: {outcomes}"
            time.sleep(0.05)
        gate.rollback()  # both go, one after the other
    for thread in workers:
        thread.join(timeout=60)
    won = {s: o for s, o in outcomes.items() if isinstance(o, Claim)}
    lost = {s: o for s, o in outcomes.items() if not isinstance(o, Claim)}
    assert len(won) == 1 and len(lost) == 1, outcomes
    [(winner, claim)] = won.items()
    [(loser, refusal)] = lost.items()
    claim.release()
    assert isinstance(refusal, BlastRadiusRefused)
    assert str(refusal) == (
        f"the blast radius of lab is 2 fault(s) at once and 2 are open: ledger #{first} (pod-kill, service "
        f"checkout, run {run}, injecting), ledger #{claim.entry_id} (s3-5xx, service {winner}, run {run}, "
        f"injecting); {loser} waits for one to be reverted")
    assert sorted((e.service, e.depends_on) for e in ledger.open_entries()) == sorted(
        [("checkout", ["postgres"]), (winner, [f"{winner}-db"])])


def test_a_shared_dependency_refuses_and_an_unrelated_service_is_admitted(ledger, run):
    checkout = admit(ledger, run, "checkout", ("postgres", "redis"), k=3)
    with pytest.raises(BlastRadiusRefused, match=rf"service cart shares redis with a service that has a fault open: "
                                                 rf"ledger #{checkout} \(pod-kill, service checkout, run {run}, "
                                                 r"injecting\)"):
        admit(ledger, run, "cart", ("redis", "kafka"), k=3)
    with pytest.raises(BlastRadiusRefused, match="service checkout already has a fault open"):
        admit(ledger, run, "checkout", (), k=3)
    search = admit(ledger, run, "search", ("elasticsearch",), k=3)
    assert [(e.id, e.service, e.depends_on) for e in ledger.open_entries()] == [
        (checkout, "checkout", ["postgres", "redis"]), (search, "search", ["elasticsearch"])]


def test_a_reverted_entry_frees_its_slot_and_a_failed_revert_does_not(ledger, run):
    first = admit(ledger, run, "checkout", k=1)
    with pytest.raises(BlastRadiusRefused, match=r"the blast radius of lab is 1 fault\(s\) at once and 1 are open"):
        admit(ledger, run, "search", k=1)
    ledger.mark_revert_failed(first, "replicas not back")
    with pytest.raises(BlastRadiusRefused, match=rf"ledger #{first} \(pod-kill, run {run}\) is still revert_failed"):
        admit(ledger, run, "search", k=5)  # a failed revert stops every inject, whatever K
    assert ledger.mark_reverted(first, "test")
    second = admit(ledger, run, "search", k=1)
    assert [e.id for e in ledger.open_entries()] == [second]


def test_entries_of_every_run_count_and_a_caller_naming_no_service_is_the_app(ledger, run):
    """An entry a dead run left open (written unchecked, as a crash leaves it) takes a slot like the live
    run's; the single-service campaign's call (no service, no K) is the app with K = 1."""
    orphan = ledger.record_intent("run-dead", "chaos_campaign", "lab", "redis-unavailable", {}, 60,
                                  service="checkout", depends_on=("redis",))
    with pytest.raises(BlastRadiusRefused, match=rf"service cart shares redis with a service that has a fault open: "
                                                 rf"ledger #{orphan} \(redis-unavailable, service checkout, run "
                                                 r"run-dead, injecting\)"):
        admit(ledger, run, "cart", ("redis",), k=2)
    with pytest.raises(BlastRadiusRefused, match=rf"1 fault\(s\) at once and 1 are open: ledger #{orphan} .*run "
                                                 r"run-dead"):
        admit(ledger, run, "search", ("elasticsearch",), k=1)
    with pytest.raises(BlastRadiusRefused, match=r"the blast radius of lab is 1 fault\(s\) at once and 1 are open"):
        ledger.admit(run, "chaos_campaign", "lab", "s3-5xx", {}, 60, owner="inject")
    ledger.mark_reverted(orphan, "chaos_abort:sweep")
    claim = ledger.admit(run, "chaos_campaign", "lab", "s3-5xx", {}, 60, owner="inject")
    claim.release()
    entry = ledger.get(claim.entry_id)
    assert (entry.service, entry.depends_on, entry.state) == ("app", [], "injecting")


def test_without_the_run_lock_nothing_is_admitted_whatever_the_blast_radius(ledger):
    with pytest.raises(InjectRefused, match="does not hold the chaos-dr lock") as refused:
        admit(ledger, "run-without-lock", "checkout", k=10)
    assert not isinstance(refused.value, BlastRadiusRefused)
    assert ledger.open_entries() == []


def first_event(trigger) -> dict:
    import asyncio

    async def first():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout=30))


def test_the_wait_for_a_slot_fires_once_a_revert_frees_it_and_stops_when_the_lock_is_lost(ledger, run, database,
                                                                                          monkeypatch):
    """chaos_services' inject waits in the triggerer (BlastRadiusTrigger): it polls the same decision the
    admission makes, read only, until the slot is free, or the run no longer holds the chaos/DR lock."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    from resilience.triggers import DEFERRAL_SETTLE_S, BlastRadiusTrigger, _slot_now

    db = conninfo_to_dict(database)
    monkeypatch.setenv("AIRFLOW_CONN_BLAST_RADIUS_TEST", f"postgresql://{db['user']}:{quote(str(db['password']))}@"
                                                         f"{db['host']}:{db['port']}/{db['dbname']}")
    held = admit(ledger, run, "checkout", ("postgres",), k=2)
    wait = ("blast_radius_test", run, "lab", "orders", ["postgres"], 2)
    assert _slot_now(*wait) is None  # orders shares postgres with checkout's open fault: it waits
    assert ledger.admission("lab", "orders", ("postgres",), 2).blocking[0].ledger_id == held
    ledger.mark_reverted(held, "test", {}, "done")
    trigger = BlastRadiusTrigger(*wait, poll_interval_s=0.1)
    kind, kwargs = trigger.serialize()
    assert kind == "resilience.triggers.BlastRadiusTrigger"
    event = first_event(BlastRadiusTrigger(**kwargs))
    assert event["status"] == "free" and "none on orders" in event["reason"]
    # free at once, yet the event waits out the deferral's settling time (Airflow's resume race)
    assert event["waited_s"] >= DEFERRAL_SETTLE_S, event
    # the slot is free, but the run lost its lock (an Immediate Abort): the wait ends, and the inject refuses
    ledger.release_lock(RUN_LOCK, run)
    assert first_event(BlastRadiusTrigger(**kwargs))["status"] == "stopped"
    with pytest.raises(InjectRefused):
        admit(ledger, run, "orders", ("postgres",), k=2)
