"""A chaos campaign: what every step shares, the first step (validate, open the record) and preflight.

The scenario steps are in ``chaos.scenario_steps``, the end of the run in ``chaos.conclude``;
``chaos.steps`` is the DAG file's single import.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from resilience.chaos.measure import missing_window_queries, needed_by_checks
from resilience.chaos.params import CampaignParams, parse_campaign_params
from resilience.chaos.preflight import PreflightFacts, preflight_checks
from resilience.chaos.scenarios import load_catalogue
from resilience.checks import summary
from resilience.config import Config, Environment, load_config
from resilience.errors import RefusedError
from resilience.faults.base import needed_capabilities
from resilience.journal import Journal
from resilience.ledger import RUN_LOCK
from resilience.notify import require_connection
from resilience.platforms.base import Platform, get_platform

log = logging.getLogger(__name__)



@dataclass
class Campaign:
    params: CampaignParams
    run_id: str
    config: Config
    service: str | None = None  # one service of a campaign across services; None: the environment's app

    @classmethod
    def from_xcom(cls, params: dict[str, Any], run_id: str, service: str | None = None) -> Campaign:
        config = load_config()
        return cls(parse_campaign_params(params, config), run_id, config, service)

    @property
    def environment(self) -> Environment:
        """The run's environment, as its service sees it (its selector and SLO queries)."""
        environment = self.config.environment(self.params.environment)
        return environment.for_service(self.service) if self.service else environment

    @property
    def ledger_service(self) -> str:
        """The service the ledger's admission counts a fault against."""
        from resilience.chaos.blast_radius import DEFAULT_SERVICE

        return self.service or DEFAULT_SERVICE

    def scope(self, scenario: str) -> str:
        """Where this service's ``scenario`` is journaled."""
        from resilience.journal import target_scope

        return target_scope(self.service, scenario)

    @cached_property
    def platform(self) -> Platform:
        return get_platform(self.environment)

    @cached_property
    def record(self) -> Journal:
        from resilience.journal import Journal

        return Journal.for_conn(self.config.control_db_conn_id, self.run_id)

    @cached_property
    def ledger(self):
        from resilience.ledger import ledger_for

        return ledger_for(self.config.control_db_conn_id)

    def slo_spec(self) -> dict[str, Any]:
        """Where and how the guard reads SLOs (baseline and policy are added per scenario)."""
        slo = self.environment.slo_source()
        return {"prometheus_conn_id": slo.prometheus_conn_id, "queries": dict(slo.queries), "window": slo.window,
                "poll_interval_s": slo.poll_interval_s, "query_timeout_s": slo.query_timeout_s,
                "control_conn_id": self.config.control_db_conn_id}


def start_campaign(raw_params: dict[str, Any], run_id: str, dag_id: str, started_at: datetime, *,
                   every_service: bool = False) -> dict[str, Any]:
    """Validate Params, config, platform and Connections (nothing touched before this passes); open the record.
    ``every_service``: a campaign across services (chaos_services), whose empty ``services`` means all."""
    config = load_config()
    params = parse_campaign_params(raw_params, config, every_service=every_service)
    environment = config.environment(params.environment)
    platform = get_platform(environment)
    catalogue = load_catalogue()
    for scenario in params.scenarios:
        options = {**catalogue[scenario].options, **params.scenario_options.get(scenario, {})}
        platform.require(needed_capabilities(scenario, options), f"scenario {scenario}")
        platform.require(needed_by_checks(catalogue[scenario].checks), f"scenario {scenario}'s runbook checks")
        if missing := missing_window_queries(environment, catalogue[scenario].checks):
            raise ValueError(f"scenario {scenario}: its runbook checks need {', '.join(missing)} (a PromQL query "
                             "over {range}, the fault window; see the lab's for the shape)")
    require_connection(config.control_db_conn_id, "defaults.control_db_conn_id")
    require_connection(environment.slo_source().prometheus_conn_id,
                       f"environments.{environment.name}.slo.prometheus_conn_id")
    log.info("Chaos campaign %s in %s: %s, %d s each%s%s", run_id, environment.name, ", ".join(params.scenarios),
             params.duration_s, " (plan mode: preflight, baselines, planned calls)" if params.dry_run else "",
             f" on {len(params.services)} service(s), at most {environment.blast_radius} fault(s) at once"
             if params.services else "")
    campaign = Campaign(params, run_id, config)
    campaign.record.open(dag_id, "chaos_campaign", environment.name, params.to_dict(), started_at)
    return params.to_dict()


def _firing_alerts(campaign: Campaign) -> tuple[str, ...]:
    from resilience.prometheus import PrometheusHook

    hook = PrometheusHook(campaign.environment.slo_source().prometheus_conn_id)
    return tuple(sorted({labels.get("alertname", "?") for labels, _ in hook.query('ALERTS{alertstate="firing"}')}))


def _rollouts_in_progress(campaign: Campaign) -> str | None:
    """What is rolling out: the app's Deployment, and each targeted service's (a campaign across services)."""
    from resilience.platforms.base import get_platform

    env = campaign.environment
    views = [campaign.platform] + [get_platform(env.for_service(s)) for s in campaign.params.services]
    states = dict.fromkeys(state for view in views if (state := view.workloads.rollout_in_progress()))
    return "; ".join(states) or None


def gather_facts(campaign: Campaign, lock_holder: tuple[str, str] | None) -> PreflightFacts:
    env = campaign.environment
    pods = campaign.platform.workloads.pod_census()
    others = [e for e in campaign.ledger.open_entries() if e.run_id != campaign.run_id]
    return PreflightFacts(
        environment=env.name, is_production=env.is_production, chaos_enabled=env.chaos_enabled,
        allow_production=campaign.params.allow_production,
        pods_ready=pods.ready, pods_total=pods.total, pods_scope=pods.scope,
        deployment_in_progress=_rollouts_in_progress(campaign),
        firing_alerts=_firing_alerts(campaign), lock_holder=lock_holder,
        open_faults=tuple(f"#{e.id} {e.scenario} ({e.state}, run {e.run_id})" for e in others),
    )


def preflight(params: dict[str, Any], run_id: str, dag_id: str) -> dict[str, Any]:
    """Take the chaos/DR lock and run the runbook's safety checks; refuse (and let go) on any failure."""
    campaign = Campaign.from_xcom(params, run_id)
    acquired, holder_run, holder_dag = campaign.ledger.acquire_lock(RUN_LOCK, run_id, dag_id)
    try:
        facts = gather_facts(campaign, None if acquired else (holder_run, holder_dag))
    except Exception:
        if acquired:
            campaign.ledger.release_lock(RUN_LOCK, run_id)
        raise
    checks = preflight_checks(facts)
    for check in checks:
        log.info("%s", check)
    if not all(c.passed for c in checks):
        if acquired:
            campaign.ledger.release_lock(RUN_LOCK, run_id)
        campaign.record.close("refused", {"preflight": [c.to_dict() for c in checks]})
        raise RefusedError(f"preflight refused chaos in {facts.environment}: {summary(checks)}")
    log.info("Preflight passed in %s: %s; lock %s held by this run", facts.environment, summary(checks), RUN_LOCK)
    return {"checks": [c.to_dict() for c in checks]}

