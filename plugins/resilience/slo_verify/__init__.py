"""The runbook's ``verify-slo``: the "Key Metrics" over a window, from Prometheus, with the error budget left.

``decision`` holds the pure judgements (bounds, throughput against the previous window, the error budget),
``settings`` the ``slo_verify`` section of environments.yaml, ``measure`` the Prometheus reads, ``report``
the JSON + HTML report and ``steps`` the task bodies of the ``slo_verify`` DAG.
"""
