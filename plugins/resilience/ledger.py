"""The fault ledger: a durable row for every fault, written BEFORE the side effect.

States: ``injecting`` (intent recorded, side effect may have started) -> ``active`` ->
``reverted`` | ``revert_failed``. Anything not ``reverted`` is something to undo: the revert
teardown, the guard (on a breach) and ``chaos_abort`` all revert through this table, and a
revert is idempotent, so whichever comes first wins and the others find nothing to do.

Inject and revert of one entry are serialised by a **claim** on its row (a token with a lease,
renewed while the holder works): unlike a session advisory lock, a claim is not dropped when a
connection is lost while its holder still acts, and a holder that died lets go when its lease
runs out. Waiting for a claim is bounded.

A new fault is admitted atomically (:meth:`Ledger.admit`) only while its run holds the chaos/DR
lock and the blast radius allows it (:mod:`resilience.chaos.blast_radius`: at most K faults of the
environment open at once, never two on one service or on services sharing a dependency): an Immediate
Abort (which takes the lock away) or a failed revert (which leaves its entry open) stops every later
inject. Admissions are serialised by one transaction-level advisory lock, so concurrent runs and
workers each see the entries the others admitted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resilience.chaos.blast_radius import DEFAULT_BLAST_RADIUS, DEFAULT_SERVICE, Admission, OpenFault, decide
from resilience.control_schema import ensure_migrated
from resilience.controldb import ControlDb, postgres_connect
from resilience.errors import RefusedError

log = logging.getLogger(__name__)

OPEN_STATES = ("injecting", "active", "revert_failed")
RUN_LOCK = "chaos-dr"  # one lock for every chaos and DR run: no chaos during a DR, no two faults at once
CLAIM_LEASE_S = 30.0  # a claim's holder renews it every third of this; a dead holder lets go after it
CLAIM_WAIT_S = 180.0  # longest wait for another holder (an inject or a revert in progress) to finish
LOCK_LEASE_S = 1800.0  # a lock whose holder's state is unknown is stale after this long without a heartbeat
ADMISSION_LOCK_KEY = 7_426_012  # pg_advisory_xact_lock key: one admission at a time (control_schema has 7_426_011)


COLUMNS = ("id", "run_id", "dag_id", "environment", "scenario", "state", "plan", "revert_info", "error",
           "created_at", "injected_at", "reverted_at", "reverted_by", "observed", "expires_at", "revert_reason",
           "service", "depends_on")


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    run_id: str
    dag_id: str
    environment: str
    scenario: str
    state: str
    plan: dict[str, Any]
    revert_info: dict[str, Any]
    error: str | None
    created_at: datetime
    injected_at: datetime | None
    reverted_at: datetime | None
    reverted_by: str | None
    observed: dict[str, Any]
    expires_at: datetime | None
    revert_reason: str | None = None
    service: str = DEFAULT_SERVICE  # the service the fault targets (migration 4)
    depends_on: list[str] | None = None  # the shared dependencies of that service (None: read before migration 4)


@dataclass(frozen=True)
class HeldLock:
    name: str
    run_id: str
    dag_id: str
    acquired_at: datetime
    heartbeat_age_s: float
    lease_s: float


class ClaimTimeout(TimeoutError):
    """Another holder kept the entry past the bounded wait (its work goes on; try again later)."""


class Claim:
    """A held claim on a ledger entry, renewed in the background until released."""

    def __init__(self, ledger: Ledger, entry_id: int, token: str, owner: str) -> None:
        self.ledger, self.entry_id, self.token, self.owner = ledger, entry_id, token, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"claim-{entry_id}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(CLAIM_LEASE_S / 3):
            try:
                if not self.ledger._renew_claim(self.entry_id, self.token):
                    log.error("Lost the claim on ledger #%d (%s): another holder may act on it", self.entry_id,
                              self.owner)
                    return
            except Exception as exc:  # a lost connection: the lease still runs; retry at the next tick
                log.warning("Could not renew the claim on ledger #%d: %s", self.entry_id, exc)

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.ledger._release_claim(self.entry_id, self.token)


class Ledger:
    """The ledger and the run lock in the control database (``connect`` = DB-API factory)."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        ensure_migrated(connect)
        self._connect = connect
        self._execute = ControlDb(connect).execute

    # -- claims: inject and revert of one entry never overlap ------------------------------

    def _try_claim(self, entry_id: int, token: str, owner: str) -> bool:
        return bool(self._execute(
            "UPDATE fault_ledger SET claim_token = %s, claimed_by = %s,"
            " claim_until = clock_timestamp() + %s * interval '1 second'"
            " WHERE id = %s AND (claim_until IS NULL OR claim_until < clock_timestamp()) RETURNING id",
            (token, owner, CLAIM_LEASE_S, entry_id)))

    def _renew_claim(self, entry_id: int, token: str) -> bool:
        return bool(self._execute(
            "UPDATE fault_ledger SET claim_until = clock_timestamp() + %s * interval '1 second'"
            " WHERE id = %s AND claim_token = %s RETURNING id", (CLAIM_LEASE_S, entry_id, token)))

    def _release_claim(self, entry_id: int, token: str) -> None:
        self._execute("UPDATE fault_ledger SET claim_token = NULL, claimed_by = NULL, claim_until = NULL"
                      " WHERE id = %s AND claim_token = %s", (entry_id, token))

    def claim(self, entry_id: int, owner: str, wait_s: float = CLAIM_WAIT_S) -> Claim:
        """Claim the entry, waiting (at most ``wait_s``) while another holder works on it."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        announced = False
        while not self._try_claim(entry_id, token, owner):
            holder = self._execute("SELECT claimed_by, claim_until FROM fault_ledger WHERE id = %s", (entry_id,))
            if not holder:
                raise LookupError(f"no ledger entry #{entry_id}")
            if time.monotonic() > deadline:
                raise ClaimTimeout(f"ledger #{entry_id} is held by {holder[0][0]} (lease until {holder[0][1]}); "
                                   f"{owner} gave up after {wait_s:g} s")
            if not announced:
                log.info("Ledger #%d is held by %s; %s waits (at most %g s)", entry_id, holder[0][0], owner, wait_s)
                announced = True
            time.sleep(0.1)
        return Claim(self, entry_id, token, owner)

    @contextmanager
    def revert_lock(self, entry_id: int, owner: str = "revert", wait_s: float = CLAIM_WAIT_S) -> Iterator[None]:
        """Hold the entry's claim while reverting it."""
        held = self.claim(entry_id, owner, wait_s)
        try:
            yield
        finally:
            held.release()

    # -- faults ------------------------------------------------------------------------

    def record_intent(self, run_id: str, dag_id: str, environment: str, scenario: str, plan: dict,
                      expires_in_s: float, *, service: str = DEFAULT_SERVICE, depends_on: Sequence[str] = ()) -> int:
        """Write the row before anything is touched (unclaimed, unchecked); returns the ledger id.

        ``expires_in_s``: the fault's whole planned life (guard start + duration + revert + grace)."""
        return self._insert_intent(run_id, dag_id, environment, scenario, plan, expires_in_s, None, None,
                                   service, depends_on, DEFAULT_BLAST_RADIUS)

    def admit(self, run_id: str, dag_id: str, environment: str, scenario: str, plan: dict,
              expires_in_s: float, owner: str, *, service: str = DEFAULT_SERVICE, depends_on: Sequence[str] = (),
              blast_radius: int = DEFAULT_BLAST_RADIUS) -> Claim:
        """The campaign's inject: write the intent row, already claimed by ``owner``, only while
        ``run_id`` holds the chaos/DR lock and the blast radius allows a fault on ``service`` (which
        depends on ``depends_on``): at most ``blast_radius`` (the environment's ``chaos.blast_radius``)
        open in ``environment``, none on the same service or a shared dependency, none failed to revert
        (:func:`resilience.chaos.blast_radius.decide`). All is checked in the transaction of the insert,
        under the admission advisory lock and with the run-lock row locked, so an Immediate Abort (which
        takes the lock away), a failed revert (which leaves its entry open) or a concurrent admission
        that took the last slot refuses it: :class:`InjectRefused` (:class:`BlastRadiusRefused` when the
        blast radius refuses). A caller naming no service is the environment's one app, with no
        dependencies: with K = 1 it is admitted exactly when nothing is open."""
        token = uuid.uuid4().hex
        entry_id = self._insert_intent(run_id, dag_id, environment, scenario, plan, expires_in_s, token, owner,
                                       service, depends_on, blast_radius)
        return Claim(self, entry_id, token, owner)

    def _insert_intent(self, run_id: str, dag_id: str, environment: str, scenario: str, plan: dict,
                       expires_in_s: float, token: str | None, owner: str | None, service: str,
                       depends_on: Sequence[str], blast_radius: int) -> int:
        if isinstance(depends_on, str) or any(not isinstance(d, str) or not d for d in depends_on):
            raise ValueError(f"depends_on: {depends_on!r} must be a list of non-empty dependency names")
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                if token is not None:
                    refusal = _admission_refusal(cur, run_id)
                    if refusal:
                        conn.rollback()
                        raise InjectRefused(refusal)
                    admission = decide(environment, service, depends_on, blast_radius, _open_faults(cur))
                    if not admission.admitted:
                        conn.rollback()
                        raise BlastRadiusRefused(admission)
                cur.execute(
                    "INSERT INTO fault_ledger (run_id, dag_id, environment, scenario, state, plan, expires_at,"
                    " claim_token, claimed_by, claim_until, service, depends_on)"
                    " VALUES (%s, %s, %s, %s, 'injecting', %s::jsonb, clock_timestamp() + %s * interval '1 second',"
                    " %s, %s, CASE WHEN %s::text IS NULL THEN NULL"
                    " ELSE clock_timestamp() + %s * interval '1 second' END, %s, %s::jsonb) RETURNING id",
                    (run_id, dag_id, environment, scenario, json.dumps(plan), expires_in_s, token, owner, token,
                     CLAIM_LEASE_S, service, json.dumps(sorted(set(depends_on)))))
                entry_id = cur.fetchone()[0]
            conn.commit()
        finally:
            conn.close()
        return entry_id

    def mark_active(self, entry_id: int, revert_info: dict) -> None:
        """``injecting`` -> ``active``; raises :class:`LedgerConflict` when the row is no longer
        ``injecting`` (it was closed while the side effect ran: the caller must undo it)."""
        rows = self._execute(
            "UPDATE fault_ledger SET state = 'active', revert_info = %s::jsonb, injected_at = clock_timestamp()"
            " WHERE id = %s AND state = 'injecting' RETURNING id",
            (json.dumps(revert_info), entry_id),
        )
        if not rows:
            raise LedgerConflict(f"ledger #{entry_id} is no longer 'injecting' ({self.get(entry_id).state}): "
                                 "the fault just applied must be undone")

    def open_faults(self) -> list[OpenFault]:
        """Every entry not yet reverted, as admission sees it; read only (the blast-radius wait polls it), the
        admission itself reads them again inside its transaction."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                return _open_faults(cur)
        finally:
            conn.close()

    def admission(self, environment: str, service: str, depends_on: Sequence[str], blast_radius: int) -> Admission:
        """Would a fault on ``service`` be admitted now? Read only."""
        return decide(environment, service, depends_on, blast_radius, self.open_faults())

    def still_admitted(self, run_id: str) -> str | None:
        """Why ``run_id`` should stop now (None: it still holds the lock), checked after a side effect."""
        rows = self._execute("SELECT run_id FROM run_locks WHERE name = %s", (RUN_LOCK,))
        if rows and rows[0][0] == run_id:
            return None
        broken = [e for e in self.lock_events(run_id) if e["action"] == "broken"]
        if broken:
            return f"the {RUN_LOCK} lock was taken from this run by {broken[-1]['by']} ({broken[-1]['reason']})"
        return f"this run no longer holds the {RUN_LOCK} lock"

    def mark_reverted(self, entry_id: int, by: str, observed: dict | None = None, reason: str | None = None) -> bool:
        """True when this call closed the entry (False: someone else already had)."""
        rows = self._execute(
            "UPDATE fault_ledger SET state = 'reverted', reverted_at = clock_timestamp(), reverted_by = %s,"
            " error = NULL, observed = %s::jsonb, revert_reason = %s WHERE id = %s AND state <> 'reverted'"
            " RETURNING id",
            (by, json.dumps(observed or {}, default=str), reason, entry_id),
        )
        return bool(rows)

    def mark_revert_failed(self, entry_id: int, error: str) -> None:
        self._execute("UPDATE fault_ledger SET state = 'revert_failed', error = %s WHERE id = %s AND state <> "
                      "'reverted'", (error, entry_id))

    def get(self, entry_id: int) -> LedgerEntry:
        rows = self._execute(f"SELECT {', '.join(COLUMNS)} FROM fault_ledger WHERE id = %s", (entry_id,))
        if not rows:
            raise LookupError(f"no ledger entry #{entry_id}")
        return LedgerEntry(*rows[0])

    def open_entries(self, run_id: str | None = None) -> list[LedgerEntry]:
        """Entries not yet reverted (all runs, or one), oldest first."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM fault_ledger WHERE state = ANY(%s)"
        args: tuple = (list(OPEN_STATES),)
        if run_id is not None:
            sql += " AND run_id = %s"
            args += (run_id,)
        return [LedgerEntry(*row) for row in self._execute(sql + " ORDER BY id", args)]

    def entries(self, run_id: str) -> list[LedgerEntry]:
        """Every entry of one run, oldest first."""
        return [LedgerEntry(*row) for row in self._execute(
            f"SELECT {', '.join(COLUMNS)} FROM fault_ledger WHERE run_id = %s ORDER BY id", (run_id,))]

    def guard_seen(self, entry_id: int) -> tuple[str, str | None, str | None, float | None, float | None]:
        """The guard watched the fault just now: (state, reverted_by, revert_reason, reverted_at, the
        previous time it watched) — epoch seconds; None when unknown."""
        rows = self._execute(
            "UPDATE fault_ledger f SET guard_seen_at = clock_timestamp()"
            " FROM (SELECT id, guard_seen_at AS prev FROM fault_ledger WHERE id = %s FOR UPDATE) o"
            " WHERE f.id = o.id RETURNING f.state, f.reverted_by, f.revert_reason,"
            " extract(epoch FROM f.reverted_at)::float, extract(epoch FROM o.prev)::float", (entry_id,))
        if not rows:
            raise LookupError(f"no ledger entry #{entry_id}")
        return rows[0]

    def expired_entries(self) -> list[LedgerEntry]:
        """Open entries past their planned life: orphans whatever their run's state says."""
        return [e for e in self.open_entries() if e.expires_at is not None and e.expires_at < self.now()]

    def now(self) -> datetime:
        return self._execute("SELECT clock_timestamp()")[0][0]

    # -- the run lock (shared by chaos and DR DAGs) --------------------------------------

    def acquire_lock(self, name: str, run_id: str, dag_id: str,
                     lease_s: float = LOCK_LEASE_S) -> tuple[bool, str | None, str | None]:
        """Take ``name`` for ``run_id``: (acquired, holder run_id, holder dag_id). Re-entrant per run
        (taking it again is a heartbeat)."""
        rows = self._execute(
            "INSERT INTO run_locks (name, run_id, dag_id, lease_s) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET heartbeat_at = CASE WHEN run_locks.run_id = EXCLUDED.run_id"
            " THEN clock_timestamp() ELSE run_locks.heartbeat_at END"
            " RETURNING run_id, dag_id, (xmax = 0) AS inserted",
            (name, run_id, dag_id, lease_s),
        )
        holder_run, holder_dag, inserted = rows[0]
        if inserted:
            self._lock_event(name, "taken", run_id, dag_id, run_id, "")
        return holder_run == run_id, holder_run, holder_dag

    def heartbeat(self, name: str, run_id: str) -> bool:
        """The holder is alive (a step of its run, or the sweeper seeing it live)."""
        return bool(self._execute("UPDATE run_locks SET heartbeat_at = clock_timestamp() WHERE name = %s"
                                  " AND run_id = %s RETURNING name", (name, run_id)))

    def release_lock(self, name: str, run_id: str) -> bool:
        rows = self._execute("DELETE FROM run_locks WHERE name = %s AND run_id = %s RETURNING dag_id",
                             (name, run_id))
        if rows:
            self._lock_event(name, "released", run_id, rows[0][0], run_id, "")
        return bool(rows)

    def held_locks(self) -> list[HeldLock]:
        return [HeldLock(*row) for row in self._execute(
            "SELECT name, run_id, dag_id, acquired_at,"
            " extract(epoch FROM clock_timestamp() - heartbeat_at)::float, lease_s FROM run_locks ORDER BY name")]

    def break_lock(self, name: str, run_id: str, by: str = "chaos_abort", reason: str = "") -> bool:
        """Free a lock only if ``run_id`` still holds it; audited with who and why."""
        rows = self._execute("DELETE FROM run_locks WHERE name = %s AND run_id = %s RETURNING dag_id",
                             (name, run_id))
        if rows:
            self._lock_event(name, "broken", run_id, rows[0][0], by, reason)
        return bool(rows)

    def lock_events(self, run_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT at, name, action, run_id, dag_id, by_whom, reason FROM lock_events"
        rows = self._execute(sql + (" WHERE run_id = %s ORDER BY id" if run_id else " ORDER BY id"),
                             (run_id,) if run_id else None)
        keys = ("at", "name", "action", "run_id", "dag_id", "by", "reason")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def _lock_event(self, name: str, action: str, run_id: str, dag_id: str, by: str, reason: str) -> None:
        self._execute("INSERT INTO lock_events (name, action, run_id, dag_id, by_whom, reason)"
                      " VALUES (%s, %s, %s, %s, %s, %s)", (name, action, run_id, dag_id, by, reason))


class InjectRefused(RefusedError):
    """The campaign may not inject (its lock was taken away, or a fault is still open)."""


class BlastRadiusRefused(InjectRefused):
    """The blast radius refused the fault (its limit is reached, or its service or a dependency is already
    under a fault): ``admission`` says why and which open entries stand in the way."""

    def __init__(self, admission: Admission) -> None:
        super().__init__(admission.reason)
        self.admission = admission


class LedgerConflict(RuntimeError):
    """The row changed under the holder (it was closed while the side effect ran)."""


def _admission_refusal(cur: Any, run_id: str) -> str | None:
    """Why ``run_id`` may not inject now because of the run lock (None: it holds it), read inside the
    admitting transaction once it holds the admission lock (every admission waits for the one before it
    to commit, so the open entries read next include what that one admitted)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK_KEY,))
    cur.execute("SELECT run_id, dag_id FROM run_locks WHERE name = %s FOR UPDATE", (RUN_LOCK,))
    holder = cur.fetchone()
    if holder is None or holder[0] != run_id:
        cur.execute("SELECT at, by_whom, reason FROM lock_events WHERE run_id = %s AND action = 'broken'"
                    " ORDER BY id DESC LIMIT 1", (run_id,))
        broken = cur.fetchone()
        if broken:
            return (f"the {RUN_LOCK} lock was taken from this run at {broken[0]:%Y-%m-%d %H:%M:%S %Z} by {broken[1]}"
                    f" ({broken[2]}): nothing more is injected")
        held = f"held by {holder[1]} run {holder[0]}" if holder else "not held"
        return f"this run does not hold the {RUN_LOCK} lock ({held}): nothing is injected"
    return None


def _open_faults(cur: Any) -> list[OpenFault]:
    """Every entry not yet reverted, in every environment, oldest first (inside the admitting transaction)."""
    cur.execute("SELECT id, run_id, environment, scenario, service, depends_on, state FROM fault_ledger"
                " WHERE state = ANY(%s) ORDER BY id", (list(OPEN_STATES),))
    return [OpenFault(row[0], row[1], row[2], row[3], row[4], tuple(row[5] or ()), row[6]) for row in cur.fetchall()]


def ledger_for(control_conn_id: str) -> Ledger:
    """The ledger behind an Airflow Postgres Connection."""
    return Ledger(postgres_connect(control_conn_id))


def release_run_lock(control_conn_id: str, run_id: str) -> bool:
    """Give the chaos/DR lock back (a no-op, logged, when ``run_id`` does not hold it)."""
    ledger = ledger_for(control_conn_id)  # a run refused before it took the lock may be the first to ask
    released = ledger.release_lock(RUN_LOCK, run_id)
    if not released:
        log.warning("Not releasing %s: run %s does not hold it", RUN_LOCK, run_id)
    return released
