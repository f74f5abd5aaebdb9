"""dr_activation's inputs: the decision tree's answers (yes / no / auto) and the targets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from resilience.config import Config, Environment
from resilience.dr.drill.params import DEFAULT_RPO_TARGET_MIN, DEFAULT_RTO_TARGET_MIN
from resilience.incidents.severity import SEVERITY_CHOICES
from resilience.param_values import flag, parse_pitr_target, target_minutes

ANSWERS = ("auto", "yes", "no")
QUESTIONS = ("primary_accessible", "data_loss_acceptable", "time_critical")
MAX_DR_REPLICAS = 8
DEFAULT_INCIDENT = "Service Disruption - Investigating"


@dataclass(frozen=True)
class ActivationParams:
    environment: str
    primary_accessible: str
    data_loss_acceptable: str
    time_critical: str
    pitr_target: datetime | None
    rto_target_min: float
    rpo_target_min: float
    dr_replicas: int
    incident_name: str
    severity: str = "auto"  # P0-P3, or auto: P0 for a full DR (complete outage), P1 for a regional failover
    break_lock_reason: str | None = None  # set: take the chaos/DR lock from a live holder (audited)
    dry_run: bool = False  # plan mode: validate, decide, list the calls; make none

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["pitr_target"] = self.pitr_target.isoformat() if self.pitr_target else None
        doc["rto_target"], doc["rpo_target"] = doc.pop("rto_target_min"), doc.pop("rpo_target_min")
        return doc


def dr_environment_of(config: Config, name: str, field: str = "params.environment") -> Environment:
    """The environment ``name``, refused unless its ``dr`` section says how it fails over."""
    environment = config.environment(name, field)
    if environment.dr is None:
        allowed = sorted(n for n, e in config.environments.items() if e.dr)
        raise ValueError(f"{field}: {name!r} has no dr section in environments.yaml (DNS, DR region); "
                         f"use one of {allowed}")
    return environment


def _answer(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name, "auto")
    if value not in ANSWERS:
        raise ValueError(f"params.{name}: {value!r} is not one of {list(ANSWERS)}")
    return str(value)


def parse_activation_params(params: Mapping[str, Any], config: Config, now: datetime) -> ActivationParams:
    environment = dr_environment_of(config, str(params.get("environment", "")))
    replicas = params.get("dr_replicas", 2)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= MAX_DR_REPLICAS:
        raise ValueError(f"params.dr_replicas: {replicas!r} must be an integer in 1..{MAX_DR_REPLICAS}")
    name = params.get("incident_name") or DEFAULT_INCIDENT
    if not isinstance(name, str) or len(name) > 200:
        raise ValueError(f"params.incident_name: {name!r} must be a string of at most 200 characters")
    break_reason = _break_lock_reason(params)
    severity = params.get("severity", "auto")
    if severity not in SEVERITY_CHOICES:
        raise ValueError(f"params.severity: {severity!r} is not one of {list(SEVERITY_CHOICES)}")
    return ActivationParams(
        environment=environment.name,
        **{q: _answer(params, q) for q in QUESTIONS},
        pitr_target=parse_pitr_target(params.get("pitr_target"), now),
        rto_target_min=target_minutes(params, "rto_target", DEFAULT_RTO_TARGET_MIN),
        rpo_target_min=target_minutes(params, "rpo_target", DEFAULT_RPO_TARGET_MIN),
        dr_replicas=replicas,
        incident_name=name,
        severity=str(severity),
        break_lock_reason=break_reason,
        dry_run=dry_run_flag(params),
    )


def dry_run_flag(params: Mapping[str, Any]) -> bool:
    """``dry_run`` (plan mode) of any DR DAG's Params: a boolean, false when absent."""
    return flag(params, "dry_run")


DRY_RUN_DESCRIPTION = (
    "Plan mode: validate everything as a real run does{also}, then write into the log and the report every call "
    "the run would make on its path (objects, counts and the requests each would send) and make none: every "
    "acting task is skipped and no lock is taken; the report and Slack summary still come. Review a production "
    "run this way before allowing it.")


def dry_run_param(also: str = "", section: str | None = None) -> Any:
    """The ``dry_run`` Param every DR DAG's form has (``also``: what this DAG's validation adds)."""
    from airflow.sdk import Param

    extra: dict[str, Any] = {"section": section} if section else {}
    return Param(False, type="boolean", title="Dry run (plan)", description=DRY_RUN_DESCRIPTION.format(also=also),
                 **extra)


MIN_BREAK_REASON_CHARS = 10


def _break_lock_reason(params: Mapping[str, Any]) -> str | None:
    """The reason when ``break_lock`` is set (required, so the audit trail says why); None otherwise."""
    wanted = params.get("break_lock", False)
    if not isinstance(wanted, bool):
        raise ValueError(f"params.break_lock: {wanted!r} must be true or false")
    reason = params.get("break_lock_reason") or ""
    if not isinstance(reason, str):
        raise ValueError(f"params.break_lock_reason: {reason!r} must be a string")
    if not wanted:
        return None
    if len(reason.strip()) < MIN_BREAK_REASON_CHARS:
        raise ValueError(f"params.break_lock_reason: {reason!r} must say why in at least {MIN_BREAK_REASON_CHARS} "
                         "characters when break_lock is set (it is audited)")
    return reason.strip()


def activation_params() -> dict[str, Any]:
    """The trigger form: one section for the decision tree, one for targets and the DR region."""
    from airflow.sdk import Param

    from resilience.config import DR_ENVIRONMENT_NAMES

    def answer(title: str, description: str) -> Any:
        return Param("auto", type="string", enum=list(ANSWERS), title=title, section="Decision tree",
                     description=description + " auto: detected (the evidence is logged and reported).")

    return {
        "environment": Param("lab", type="string", enum=list(DR_ENVIRONMENT_NAMES), title="Environment",
                             description="The environment whose primary region is failing (it needs a dr "
                                         "section in environments.yaml: DNS record, DR region)."),
        "primary_accessible": answer(
            "Is the primary region accessible?",
            "yes: regional failover (promote the replica, no DNS change). no: full DR activation."),
        "data_loss_acceptable": answer(
            "Is data loss acceptable?",
            "yes: restore from the latest backup. no: recover with the archived WAL (PITR)."
            " Detected: yes when the newest backup is younger than the RPO target."),
        "time_critical": answer(
            "Is time critical?",
            "yes: fast restore (may lose recent data). no: complete PITR restoration."
            " Detected: yes when the estimated restore exceeds the DR-environment phase budget."),
        "pitr_target": Param(None, type=["null", "string"], format="date-time", title="Recovery point",
                             section="Decision tree",
                             description="For complete PITR: the RFC 3339 moment to recover to (e.g. just before "
                                         "the incident). Empty: replay the whole WAL archive."),
        "rto_target": Param(DEFAULT_RTO_TARGET_MIN, type="number", exclusiveMinimum=0, maximum=24 * 60,
                            title="RTO target (minutes)", section="Targets",
                            description="Phase budgets scale to it (runbook: 5/15/25/30 of 30 min); a Deadline "
                                        "Alert fires at 30 min."),
        "rpo_target": Param(DEFAULT_RPO_TARGET_MIN, type="number", exclusiveMinimum=0, maximum=24 * 60,
                            title="RPO target (minutes)", section="Targets",
                            description="Largest acceptable data loss; used to detect 'data loss acceptable'."),
        "dr_replicas": Param(2, type="integer", minimum=1, maximum=MAX_DR_REPLICAS, title="DR app replicas",
                             section="Targets", description="How many app replicas to deploy in the DR region."),
        "incident_name": Param(DEFAULT_INCIDENT, type="string", maxLength=200, title="Statuspage incident name",
                               section="Targets", description="The incident declared on Statuspage and Slack."),
        "severity": Param("auto", type="string", enum=list(SEVERITY_CHOICES), title="Incident severity",
                          section="Targets",
                          values_display={"auto": "auto: P0 for a full DR activation, P1 for a regional failover",
                                          "P0": "P0 complete service outage (pages the on-call)",
                                          "P1": "P1 major functionality impacted", "P2": "P2 minor functionality "
                                          "impacted", "P3": "P3 cosmetic/documentation"},
                          description="The runbook's severity level of the declared incident: it picks the Slack "
                                      "channels and, for P0, pages through PagerDuty (defaults.escalation)."),
        "break_lock": Param(False, type="boolean", title="Break the chaos/DR lock", section="Lock",
                            description="Take the chaos/DR lock even though a live run holds it (its chaos faults "
                                        "are reverted first). A lock whose run has ended is taken over without this. "
                                        "Audited with the reason below."),
        "break_lock_reason": Param("", type="string", maxLength=500, title="Why break the lock", section="Lock",
                                   description="Required with break_lock (at least 10 characters): kept in the "
                                               "lock's audit trail and the report."),
        "dry_run": dry_run_param(" (and answer the decision tree, reading only)", "Plan"),
    }
