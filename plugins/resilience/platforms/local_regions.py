"""The lab's two regions and their releases behind the Regions and Releases interfaces (mixed into LocalPlatform).

Region ``primary`` is the lab's load balancer and replicas; region ``dr`` is started on demand against a
restored database. Releases are per region (the application rollback). The lab's control functions answer
JSON-friendly dicts (its CLI prints them); here they become the typed values of the seam.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resilience.platforms.types import AppRelease, DrApp, RegionHealth, Revision


def as_revision(number: int, entry: dict[str, Any]) -> Revision:
    """One entry of a lab release history (``{"release", "fail_rate", "deployed_at"}``) as a Revision; the
    demo release's fail rate is what the lab deploys it with, so it is its change cause."""
    cause = f"lab release {entry['release']}, fail rate {float(entry['fail_rate']):g}"
    if entry.get("rollback_of"):
        cause += f" (rollback of {entry['rollback_of']})"
    return Revision(str(entry["release"]), number, entry.get("deployed_at"), cause, entry.get("rollback_of"))


def as_app_release(region: str, doc: dict[str, Any]) -> AppRelease:
    """The lab's ``{"current", "previous", "history"}`` as an AppRelease (revision numbers: history order, from 1)."""
    history = tuple(as_revision(n, e) for n, e in enumerate(doc["history"], start=1))
    previous = next((r for r, e in zip(reversed(history), reversed(doc["history"]), strict=True)
                     if e is doc["previous"]), None) if doc["previous"] is not None else None
    return AppRelease(region, history[-1], previous, history)


class LocalRegions:
    """The Regions and Releases capabilities of the lab; needs ``_state()`` (lab.json, re-read on every call)
    from LocalChaos."""

    lab_dir: Path
    _state: Any

    def region_health(self, region: str) -> RegionHealth:
        from resilience.lab import control

        found = control.region_health(self._state(), region)
        return RegionHealth(region, bool(found["entry_point_up"]), int(found["healthy_replicas"]),
                            int(found["replicas"]))

    def start_dr_app(self, dsn: str, replicas: int) -> DrApp:
        """Start the DR region's replicas and load balancer on ``dsn`` (in their environment, never argv) and
        wait until each answers ``/health``; a DR region running on another DSN is restarted."""
        from resilience.lab import control

        started = control.start_dr_region(self._state(), dsn, replicas=replicas)
        return DrApp(str(started["url"]), tuple(str(r["name"]) for r in started["replicas"]))

    def stop_dr_app(self) -> None:
        from resilience.lab import control

        control.stop_dr_region(self._state())

    def dr_app_status(self) -> dict[str, Any]:
        from resilience.lab import control

        return control.dr_region_status(self._state())

    def app_release(self, region: str) -> AppRelease:
        from resilience.lab import control

        return as_app_release(region, control.app_release(self._state(), region))

    def rollback_app(self, region: str) -> AppRelease:
        """Deploy the previous release again, one replica at a time (a retry finishes the same rollback)."""
        from resilience.lab import control

        return as_app_release(region, control.rollback_release(self._state(), region))

    def region_url(self, region: str) -> str:
        """The region's entry point (what its DNS answer plus the service port reach)."""
        dns = self._state()["dns"]
        return f"http://{dns['targets'][region]}:{dns['port']}"
