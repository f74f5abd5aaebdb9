"""The file Airflow's plugin loader runs (see .airflowignore): it only exposes the package's plugin."""

from resilience.plugin import ResiliencePlugin

__all__ = ["ResiliencePlugin"]
