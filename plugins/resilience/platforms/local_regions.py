"""The lab's two regions behind the Platform interface (mixed into LocalPlatform).

Region ``primary`` is the lab's load balancer and replicas; region ``dr`` is started on
demand against a restored database. Releases are per region (the application rollback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LocalRegions:
    """The :class:`~resilience.platforms.base.RegionPlatform` of the lab; needs ``_state()`` (lab.json,
    re-read on every call) from LocalChaos."""

    lab_dir: Path
    _state: Any

    def region_health(self, region: str) -> dict[str, Any]:
        """``{"entry_point_up", "healthy_replicas", "replicas"}`` measured now."""
        from resilience.lab import control

        return control.region_health(self._state(), region)

    def start_dr_app(self, dsn: str, replicas: int) -> dict[str, Any]:
        """Deploy the app in the DR region against ``dsn``; returns ``{"url", "replicas"}`` once healthy."""
        from resilience.lab import control

        return control.start_dr_region(self._state(), dsn, replicas=replicas)

    def stop_dr_app(self) -> None:
        from resilience.lab import control

        control.stop_dr_region(self._state())

    def dr_app_status(self) -> dict[str, Any]:
        from resilience.lab import control

        return control.dr_region_status(self._state())

    def app_release(self, region: str) -> dict[str, Any]:
        from resilience.lab import control

        return control.app_release(self._state(), region)

    def rollback_app(self, region: str) -> dict[str, Any]:
        """Roll the region's app back to its previous release (rolling); returns the release record."""
        from resilience.lab import control

        return control.rollback_release(self._state(), region)

    def region_url(self, region: str) -> str:
        """The region's entry point (what its DNS answer plus the service port reach)."""
        dns = self._state()["dns"]
        return f"http://{dns['targets'][region]}:{dns['port']}"
