"""The manual DR DAGs' Params: every bad value refused with the field named, before any side effect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from resilience.config import load_config
from resilience.dr.activation_params import parse_activation_params
from resilience.dr.datasync import foreign_key_order
from resilience.dr.failback_params import parse_failback_params
from resilience.dr.rollback_params import DEFAULT_PITR_AGO, parse_rollback_params

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"environment": "staging"}, r"params\.environment: 'staging' has no dr section"),
        ({"environment": "nowhere"}, r"params\.environment: 'nowhere' is not one of"),
        ({"environment": "lab", "primary_accessible": "maybe"}, r"params\.primary_accessible: 'maybe' is not one of"),
        ({"environment": "lab", "dr_replicas": 0}, r"params\.dr_replicas: 0 must be an integer in 1\.\.8"),
        ({"environment": "lab", "pitr_target": "2099-01-01T00:00:00Z"}, r"params\.pitr_target: .* is not in the past"),
        ({"environment": "lab", "rto_target": -1}, r"params\.rto_target: -1 must be > 0"),
    ],
)
def test_activation_params_refused(params, message):
    with pytest.raises(ValueError, match=message):
        parse_activation_params(params, load_config(), NOW)


def test_activation_params_defaults():
    parsed = parse_activation_params({"environment": "lab"}, load_config(), NOW)
    assert (parsed.primary_accessible, parsed.data_loss_acceptable, parsed.time_critical) == ("auto",) * 3
    assert parsed.to_dict()["rto_target"] == 30 and parsed.dr_replicas == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"environment": "lab", "steps": [10, 50, 40, 100]}, r"params\.steps: .* must rise strictly"),
        ({"environment": "lab", "steps": [10, 50]}, r"params\.steps: .* must end at 100"),
        ({"environment": "lab", "stable_hours": 0}, r"params\.stable_hours: 0 must be > 0"),
        ({"environment": "lab", "threshold": 0}, r"params\.threshold: 0 must be an integer in 1\.\.20"),
        ({"environment": "lab", "conflict_policy": "newest"}, r"params\.conflict_policy: 'newest' is not one of"),
        ({"environment": "lab", "interval_s": 7200}, r"params\.interval_s: 7200 must be > 0 and <= 3600"),
    ],
)
def test_failback_params_refused(params, message):
    with pytest.raises(ValueError, match=message):
        parse_failback_params(params, load_config())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"environment": "lab"}, r"choose at least one of application, database, traffic"),
        ({"environment": "lab", "traffic": True, "traffic_to": "moon"}, r"params\.traffic_to: 'moon' is not one of"),
        ({"environment": "lab", "application": "yes"}, r"params\.application: 'yes' must be true or false"),
        ({"environment": "lab", "database": True, "pitr_target": "tomorrow"}, r"params\.pitr_target: 'tomorrow' is not"),
    ],
)
def test_rollback_params_refused(params, message):
    with pytest.raises(ValueError, match=message):
        parse_rollback_params(params, load_config(), NOW)


def test_rollback_database_defaults_to_thirty_minutes_ago():
    parsed = parse_rollback_params({"environment": "lab", "database": True}, load_config(), NOW)
    assert parsed.pitr_target == NOW - DEFAULT_PITR_AGO == NOW - timedelta(minutes=30)


def test_foreign_key_order_puts_referenced_tables_first():
    refs = [("public.posts", "public.accounts"), ("public.uploads", "public.posts"),
            ("public.uploads", "public.accounts"), ("public.accounts", "public.accounts")]
    order = foreign_key_order(["public.uploads", "public.posts", "public.accounts", "public.webhook_events"], refs)
    assert order.index("public.accounts") < order.index("public.posts") < order.index("public.uploads")
    assert set(order) == {"public.uploads", "public.posts", "public.accounts", "public.webhook_events"}


@pytest.mark.parametrize(("extra", "expected"), [
    ({}, None),
    ({"break_lock": False, "break_lock_reason": "ignored without break_lock"}, None),
    ({"break_lock": True, "break_lock_reason": "  primary down, INC-42  "}, "primary down, INC-42"),
])
def test_break_lock_carries_its_reason(extra, expected):
    assert parse_activation_params({"environment": "lab", **extra}, load_config(), NOW).break_lock_reason == expected


@pytest.mark.parametrize(("extra", "field"), [
    ({"break_lock": True}, "params.break_lock_reason"),
    ({"break_lock": True, "break_lock_reason": "because"}, "params.break_lock_reason"),
    ({"break_lock": "yes", "break_lock_reason": "primary down, INC-42"}, "params.break_lock"),
])
def test_break_lock_without_a_real_reason_is_refused(extra, field):
    with pytest.raises(ValueError, match=field):
        parse_activation_params({"environment": "lab", **extra}, load_config(), NOW)
