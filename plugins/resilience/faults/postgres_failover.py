"""postgres-failover: stop the primary hard and promote the replica; revert rebuilds the old
primary as the new replica, so the database is two nodes again (roles stay swapped)."""

from __future__ import annotations

from typing import Any, ClassVar


class PostgresFailover:
    scenario: ClassVar[str] = "postgres-failover"

    def plan(self, platform: Any, options: dict[str, Any]) -> dict[str, Any]:
        if options:
            raise ValueError(f"options: postgres-failover takes none, got {sorted(options)}")
        roles = platform.database_roles()
        if not roles.get("replica_streaming"):
            raise ValueError("postgres-failover: the replica is not streaming; a failover would lose data")
        return {"old_primary": roles["primary"], "old_replica": roles["replica"]}

    def inject(self, platform: Any, plan: dict[str, Any]) -> dict[str, Any]:
        new_primary = platform.failover_database()
        return {"new_primary": new_primary}

    def revert(self, platform: Any, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Idempotent: two healthy nodes (either way round) means there is nothing left to do."""
        roles = platform.database_roles()
        if not (roles.get("replica_streaming") and roles.get("primary_up")):
            platform.rebuild_database_replica()
            roles = platform.database_roles()
        return {"roles": roles}
