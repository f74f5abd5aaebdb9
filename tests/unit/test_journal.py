"""The closing verdict every DAG shares: the Airflow run fails unless its report passed; a plan run passes."""

from __future__ import annotations

import pytest

from resilience.errors import ChecksFailedError
from resilience.journal import final_verdict

REPORT = "/reports/dr_monthly_drill/manual__1.html"


@pytest.mark.parametrize(("status", "passing", "outcome"), [
    ("passed", "passed", "passed"),
    ("planned", "passed", "planned"),  # a plan run changed nothing: it passes
    ("completed", "completed", "completed"),  # a chaos campaign's own word for it
    ("failed", "passed", r"^DR drill failed; see manual__1\.html \(/reports/dr_monthly_drill/manual__1\.html\)$"),
    ("aborted", "completed", r"^DR drill aborted; see manual__1\.html"),
    ("passed", "completed", r"^DR drill passed; see"),  # not the DAG's passing word: not passed
])
def test_the_run_fails_unless_its_report_passed(status, passing, outcome):
    written = {"status": status, "report_html": REPORT}
    if outcome == status:
        assert final_verdict(written, "DR drill", passing) == status
    else:
        with pytest.raises(ChecksFailedError, match=outcome):
            final_verdict(written, "DR drill", passing)


def test_no_report_is_a_failed_run_that_says_where_to_look():
    with pytest.raises(ChecksFailedError, match=r"^the DR drill did not complete: no report was written \(see the "
                                                r"failed task\)$"):
        final_verdict(None, "DR drill")
