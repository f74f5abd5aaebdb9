"""Fixtures the unit tests share."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fakes.slack import SlackWebhookServer


@pytest.fixture
def slack() -> Iterator[SlackWebhookServer]:
    """A local Slack webhook server as the ``resilience_slack`` Connection while the test runs."""
    with SlackWebhookServer() as server:
        os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"] = server.connection_json()
        yield server
        del os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"]
