"""The lab's chaos primitives behind the Platform interface (mixed into LocalPlatform).

Each call re-reads lab.json: a failover swaps the database roles under our feet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LocalChaos:
    lab_dir: Path

    def _state(self) -> dict[str, Any]:
        from resilience.lab.state import load_lab_state

        return load_lab_state(self.lab_dir)

    # -- app replicas (pod-kill) ------------------------------------------------------------

    def replicas(self) -> list[dict[str, Any]]:
        from resilience.lab import control

        return [{"name": name, **info} for name, info in sorted(control.replicas(self._state()).items())]

    def kill_replicas(self, names: list[str], grace_period_s: int, force: bool) -> dict[str, dict[str, Any]]:
        from resilience.lab import control

        return control.delete_replicas(self._state(), names, grace_period_s, force)

    def wait_replicas_restarted(self, killed: dict[str, int | None], timeout_s: float) -> dict[str, int]:
        from resilience.lab import control

        state = self._state()
        return {name: control.wait_replica_healthy(state, name, timeout_s, not_pid=pid) for name, pid in killed.items()}

    def deployment_in_progress(self) -> str | None:
        """The lab has no deployments (no rollout controller): never in progress."""
        return None

    # -- cache (redis-unavailable) ------------------------------------------------------------

    def cache_alive(self) -> bool:
        from resilience.lab import control

        return control.redis_ping(self._state())

    def stop_cache(self, deadline_epoch_s: float | None = None) -> None:
        from resilience.lab import control

        control.stop_redis(self._state(), deadline_epoch_s)

    def start_cache(self) -> None:
        from resilience.lab import control

        control.start_redis(self._state())

    # -- object store (s3-5xx) ------------------------------------------------------------------

    def object_store_fault(self) -> dict[str, Any]:
        from resilience.lab import control

        return control.s3_fault(self._state())

    def set_object_store_fault(self, error_rate: float, status: int, expires_at: float | None = None) -> None:
        from resilience.lab import control

        control.set_s3_fault(self._state(), error_rate, status, expires_at)

    # -- database (postgres-failover) ---------------------------------------------------------

    def database_roles(self) -> dict[str, Any]:
        """The lab's roles, plus whether the primary takes writes and the replica streams from it."""
        from resilience.lab import control

        state = self._state()
        roles: dict[str, Any] = dict(control.postgres_roles(state))
        roles["primary_up"], roles["replica_streaming"] = False, False
        try:
            import psycopg

            from resilience.lab.postgres import fetch_one

            db = state["app_db"]
            with psycopg.connect(host=db["primary"]["host"], port=db["primary"]["port"], dbname=db["dbname"],
                                 user=db["user"], password=db["password"], connect_timeout=2) as conn:
                roles["primary_up"] = not fetch_one(conn, "SELECT pg_is_in_recovery()")[0]
                roles["replica_streaming"] = fetch_one(
                    conn, "SELECT count(*) > 0 FROM pg_stat_replication WHERE state = 'streaming'")[0]
        except Exception as exc:  # a down primary is an answer, not an error
            roles["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return roles

    def failover_database(self) -> str:
        from resilience.lab import control

        return control.failover_postgres(self._state())

    def rebuild_database_replica(self) -> None:
        from resilience.lab import control

        control.rebuild_replica(self._state())

    # -- memory (memory-pressure) -------------------------------------------------------------

    def start_memory_hog(self, name: str, limit_mb: int, hog_mb: int,
                         deadline_epoch_s: float | None = None) -> dict[str, Any]:
        from resilience.lab import control

        return control.start_memory_hog(self._state(), name, limit_mb, hog_mb, deadline_epoch_s)

    def stop_memory_hog(self, name: str) -> None:
        from resilience.lab import control

        control.stop_memory_hog(self._state(), name)

    def memory_hog_counters(self, name: str) -> dict[str, Any] | None:
        from resilience.lab import control
        from resilience.lab.errors import LabError

        try:
            return control.memory_hog_counters(self._state(), name)
        except (LabError, FileNotFoundError):
            return None  # no hog (never started, or already removed)
