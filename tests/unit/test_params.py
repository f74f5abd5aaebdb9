"""Drill Params: every bad input names its field; good input round-trips through XCom."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from resilience.config import load_config
from resilience.dr.drill.params import parse_drill_params

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
GOOD = {"environment": "lab", "dr_environment": "lab", "full_drill": False, "rto_target": 30, "rpo_target": 15,
        "pitr_target": None, "no_cleanup": False}


def parse(**changes):
    return parse_drill_params({**GOOD, **changes}, load_config(), NOW)


def test_defaults_parse():
    p = parse()
    assert (p.environment, p.rto_target_min, p.rpo_target_min, p.pitr_target) == ("lab", 30.0, 15.0, None)


def test_round_trip_through_xcom_dict():
    p = parse(pitr_target="2026-11-28T10:30:00Z")
    assert parse_drill_params(p.to_dict(), load_config(), NOW) == p


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rto_target": -5}, r"params\.rto_target: -5 must be > 0 and <= 1440 minutes"),
        ({"rto_target": 0}, r"params\.rto_target: 0 must be > 0"),
        ({"rpo_target": 100000}, r"params\.rpo_target: 100000 must be > 0 and <= 1440"),
        ({"rto_target": "30"}, r"params\.rto_target: '30' is not a number of minutes"),
        ({"rto_target": True}, r"params\.rto_target: True is not a number"),
        ({"rpo_target": float("nan")}, r"params\.rpo_target: nan is not a number"),
        ({"environment": "prod"}, r"params\.environment: 'prod' is not one of \['dr-sandbox', 'lab'"),
        ({"dr_environment": "production"}, r"params\.dr_environment: 'production' does not allow restore sandboxes"),
        ({"pitr_target": "yesterday"}, r"params\.pitr_target: 'yesterday' is not an ISO 8601 date-time"),
        ({"pitr_target": "2026-11-28T12:00:00Z"}, r"params\.pitr_target: 2026-11-28T12:00:00\+00:00 is not in the past"),
        ({"pitr_target": "2027-01-01T00:00:00+00:00"}, r"params\.pitr_target: .* is not in the past"),
        ({"pitr_target": 1234}, r"params\.pitr_target: 1234 must be an ISO 8601 date-time string"),
        ({"no_cleanup": "yes"}, r"params\.no_cleanup: 'yes' must be true or false"),
    ],
)
def test_bad_params_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        parse(**changes)


def test_pitr_target_without_offset_is_utc():
    assert parse(pitr_target="2026-11-28 10:30:00").pitr_target == datetime(2026, 11, 28, 10, 30, tzinfo=UTC)


def test_pitr_target_exactly_now_is_refused_one_microsecond_before_is_not():
    with pytest.raises(ValueError, match="not in the past"):
        parse(pitr_target=NOW.isoformat())
    assert parse(pitr_target="2026-11-28T11:59:59.999999+00:00").pitr_target < NOW
