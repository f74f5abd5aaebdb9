"""``<lab_dir>/lab.json``: the contract other code (tests, Makefile, platforms, DAGs) reads.

Written at the end of a successful ``resilience lab up``. It holds every endpoint and DSN,
passwords included (it is the local lab; the file is mode 0600).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from resilience.lab.dns_zone import dns_state
from resilience.lab.layout import (
    APP_DBNAME,
    CONTROL_DBNAME,
    HOST,
    NODES,
    PG_SUPERUSER,
    REGION_HOSTS,
    REGIONS,
    S3_ACCESS_KEY,
    S3_BUCKET,
    S3_REGION,
    S3_SECRET_KEY,
    STANZA,
    ClusterPaths,
    LabLayout,
    default_lab_dir,
)
from resilience.lab.pg_roles import Roles, read_roles


class LabNotUpError(FileNotFoundError):
    """lab.json is missing: the lab was never brought up (or was purged)."""


def pg_uri(password: str, port: int | str, dbname: str, host: str = HOST, **params: str) -> str:
    """``postgresql://postgres:PW@host:port/dbname[?params]``; ``port`` may be ``"p1,p2"`` hosts."""
    hosts = ",".join(f"{host}:{p}" for p in str(port).split(","))
    query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    return f"postgresql://{PG_SUPERUSER}:{quote(password, safe='')}@{hosts}/{dbname}" + (f"?{query}" if query else "")


def app_read_write_dsn(layout: LabLayout, password: str) -> str:
    """Multi-host DSN of the app database that always lands on the writable node (whichever it is)."""
    ports = ",".join(str(layout.node(n).port) for n in NODES)
    return pg_uri(password, ports, APP_DBNAME, target_session_attrs="read-write", connect_timeout="2")


def app_db_connection(layout: LabLayout, password: str) -> str:
    """The app database's Airflow Connection (JSON): every node, ``target_session_attrs=read-write``, so
    it reaches whichever node Patroni made the leader (the provider's hook passes extras to libpq and
    they override host/port)."""
    nodes = [layout.node(n) for n in NODES]
    return json.dumps({"conn_type": "postgres", "host": HOST, "port": nodes[0].port, "login": PG_SUPERUSER,
                       "password": password, "schema": APP_DBNAME,
                       "extra": {"host": ",".join(HOST for _ in nodes), "port": ",".join(str(n.port) for n in nodes),
                                 "target_session_attrs": "read-write"}})


def _node(cluster: ClusterPaths, name: str) -> dict[str, Any]:
    return {"node": name, "host": HOST, "port": cluster.port, "data_dir": str(cluster.data_dir),
            "socket_dir": str(cluster.socket_dir), "log_file": str(cluster.log_file)}


def _daemon(layout: LabLayout, name: str) -> dict[str, str]:
    return {"pid_file": str(layout.pid_file(name)), "log_file": str(layout.log_file(name))}


def s3_state(layout: LabLayout) -> dict[str, Any]:
    proxy = layout.url("s3_proxy")
    return {"endpoint": proxy, "moto_endpoint": layout.url("moto"), "bucket": S3_BUCKET, "region": S3_REGION,
            "access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY, "fault_api": f"{proxy}/__fault__",
            "metrics_url": f"{proxy}/__metrics__", "proxy": _daemon(layout, "s3-proxy"),
            "moto": _daemon(layout, "moto")}


def pgbackrest_state(layout: LabLayout) -> dict[str, Any]:
    """pgBackRest's config and its S3 repositories: repo1 in the primary region, repo2 in the DR region,
    each behind its region's TLS endpoint (stunnel, lab CA) in front of moto."""
    from resilience.lab.pgbackrest_s3 import REPO_PATH
    from resilience.lab.pgbackrest_setup import ca_dir
    from resilience.lab.s3_tls import STUNNEL, region_endpoints

    ca_file = str(ca_dir(layout) / "ca.crt")
    repos = [{"repo": index, "region": e.lab_region, "type": "s3", "bucket": e.bucket, "aws_region": e.aws_region,
              "endpoint": e.url, "path": REPO_PATH, "ca_file": ca_file}
             for index, e in enumerate(region_endpoints(layout), start=1)]
    return {"config": str(layout.pgbackrest_conf), "stanza": STANZA, "repos": repos,
            "dr_repo": next(r["repo"] for r in repos if r["region"] == "dr"),
            "log_path": str(layout.pgbackrest_dir / "log"), "ca_file": ca_file,
            "s3_tls": _daemon(layout, STUNNEL)}


def redis_url(layout: LabLayout) -> str:
    return f"redis://{HOST}:{layout.port('redis')}/0"


def aws_connection(layout: LabLayout, component: str = "s3_proxy") -> str:
    """An Airflow ``aws`` Connection as JSON (``AIRFLOW_CONN_*`` accepts it): the S3 endpoint the app
    uses (behind the fault proxy), or moto itself for the control plane (Route53 must not see S3 faults)."""
    return json.dumps({"conn_type": "aws", "login": S3_ACCESS_KEY, "password": S3_SECRET_KEY,
                       "extra": {"endpoint_url": layout.url(component), "region_name": S3_REGION}})


def _app(layout: LabLayout) -> dict[str, Any]:
    replicas = [{"name": n, "port": layout.replica_port(n), "url": f"http://{HOST}:{layout.replica_port(n)}"}
                for n in layout.replica_names]
    return {"url": layout.url("lb"), "port": layout.port("lb"), **_daemon(layout, "lb"), "replicas": replicas}


def region_state(layout: LabLayout, region: str) -> dict[str, Any]:
    """One region's entry point, supervisor, replicas and release history file. The DR region's
    replicas are the ones it runs (or would start with); ``control.dr_region_status`` is the live view."""
    lb, supervisor = layout.region_daemon(region, "lb"), layout.region_daemon(region, "supervisor")
    url = layout.region_url(region)
    replicas = [{"name": n, "port": layout.replica_port(n), "url": f"http://{HOST}:{layout.replica_port(n)}"}
                for n in layout.region_replica_names(region)]
    return {"url": url, "host": REGION_HOSTS[region], "port": layout.port("lb"), "on_demand": region != "primary",
            "lb": {"metrics_url": f"{url}/metrics", **_daemon(layout, lb)},
            "supervisor": {"metrics_url": f"http://{HOST}:{layout.region_supervisor_port(region)}/metrics",
                           "state_file": str(layout.region_supervisor_state_file(region)),
                           **_daemon(layout, supervisor)},
            "replicas": replicas,
            "s3_endpoint": layout.url("s3_proxy" if region == "primary" else "moto"),
            "releases_file": str(layout.releases_file(region))}


def build_state(layout: LabLayout, password: str, pg_bindir: Path, os_user: str,
                roles: Roles | None = None) -> dict[str, Any]:
    """The lab.json document for ``layout`` (pure apart from reading the roles, DNS and DR region files)."""
    roles = roles or read_roles(layout)
    control, primary, replica = layout.control, layout.node(roles.primary), layout.node(roles.replica)
    prometheus_url = layout.url("prometheus")
    return {
        "lab_dir": str(layout.lab_dir),
        "port_base": layout.port_base,
        "os_user": os_user,
        "pg_bindir": str(pg_bindir),
        "control_db": {"host": HOST, "port": control.port, "user": PG_SUPERUSER, "password": password,
                       "dbname": CONTROL_DBNAME, "data_dir": str(control.data_dir),
                       "socket_dir": str(control.socket_dir), "log_file": str(control.log_file)},
        "app_db": {"user": PG_SUPERUSER, "password": password, "dbname": APP_DBNAME,
                   "primary": _node(primary, roles.primary), "replica": _node(replica, roles.replica),
                   "roles": {"primary": roles.primary, "replica": roles.replica,
                             "needs_rebuild": roles.needs_rebuild},
                   "nodes": {n: _node(layout.node(n), n) for n in NODES},
                   "patroni": {"scope": "app", "urls": layout.patroni_urls, "etcd_url": layout.url("etcd")},
                   "writer_journal": str(layout.run_dir / "writer-acked.log"),
                   "read_write_dsn": app_read_write_dsn(layout, password)},
        "pgbackrest": pgbackrest_state(layout),
        "redis": {"host": HOST, "port": layout.port("redis"), "url": redis_url(layout),
                  "data_dir": str(layout.redis_dir), **_daemon(layout, "redis")},
        "s3": s3_state(layout),
        "lb": {"url": layout.url("lb"), "metrics_url": f"{layout.url('lb')}/metrics", **_daemon(layout, "lb")},
        "app": _app(layout),
        "supervisor": {"metrics_url": f"{layout.url('supervisor')}/metrics",
                       "state_file": str(layout.supervisor_state_file), **_daemon(layout, "supervisor")},
        "loadgen": {"rate_per_s": layout.load_rate, "metrics_url": f"{layout.url('loadgen')}/metrics",
                    **_daemon(layout, "loadgen")},
        "dns": dns_state(layout),
        "regions": {region: region_state(layout, region) for region in REGIONS},
        "writer": _daemon(layout, "writer"),
        "prometheus": {"url": prometheus_url, "port": layout.port("prometheus"),
                       "config": str(layout.prometheus_dir / "prometheus.yml"),
                       "rules_file": str(layout.prometheus_dir / "alerts.yml")},
        "run_dir": str(layout.run_dir),
        "sandbox_root": str(layout.sandbox_root),
        "sandbox_port_min": layout.sandbox_port_min,
        "connections": {
            "resilience_control_db": pg_uri(password, control.port, CONTROL_DBNAME),
            "resilience_lab_app_db": app_db_connection(layout, password),
            "resilience_lab_prometheus": prometheus_url,
            "resilience_lab_patroni": json.dumps({"conn_type": "http",
                                                  "extra": {"endpoints": layout.patroni_urls}}),
            "resilience_lab_s3": aws_connection(layout),
            "resilience_lab_aws": aws_connection(layout, "moto"),
            "resilience_lab_redis": redis_url(layout),
        },
    }


def write_lab_state(layout: LabLayout, state: dict[str, Any]) -> Path:
    """Write lab.json atomically, mode 0600 (it holds passwords)."""
    tmp = layout.lab_file.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2)
        handle.write("\n")
    tmp.replace(layout.lab_file)
    return layout.lab_file


def refresh_lab_state(layout: LabLayout) -> dict[str, Any] | None:
    """Rewrite an existing lab.json after a role change (a lab that is not up keeps having none)."""
    if not layout.lab_file.exists():
        return None
    from resilience.lab.osuser import PG_OS_USER, effective_user
    from resilience.lab.password import read_password
    from resilience.lab.postgres import pg_bindir

    state = build_state(layout, read_password(layout.password_file), pg_bindir(), effective_user(PG_OS_USER))
    write_lab_state(layout, state)
    return state


def layout_of(state: dict[str, Any]) -> LabLayout:
    """The layout a lab.json document describes (for code that only has the document)."""
    return LabLayout(Path(state["lab_dir"]), int(state["port_base"]), len(state["app"]["replicas"]),
                     float(state["loadgen"]["rate_per_s"]))


def load_lab_state(lab_dir: Path | None = None) -> dict[str, Any]:
    """Read ``<lab_dir>/lab.json`` (default lab dir: ``$RESILIENCE_LAB_DIR`` or ``<project>/.lab``).

    ``app_db.primary`` / ``replica`` / ``roles`` are as of the last write (``lab up``); Patroni moves
    them on its own, so a reader that names a node passes the document through
    :func:`with_current_roles` (one REST call), and no other reader pays for it.
    Raises LabNotUpError (a FileNotFoundError) when the lab has not been brought up.
    """
    path = Path(lab_dir or default_lab_dir()).absolute() / "lab.json"
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabNotUpError(f"lab is not up: run `resilience lab up` (no {path})") from None
    return state


def with_current_roles(state: dict[str, Any]) -> dict[str, Any]:
    """``app_db.primary`` / ``replica`` / ``roles`` as Patroni says now: it changes them on its own."""
    layout = layout_of(state)
    roles = read_roles(layout)
    state["app_db"].update(primary=_node(layout.node(roles.primary), roles.primary),
                           replica=_node(layout.node(roles.replica), roles.replica),
                           roles={"primary": roles.primary, "replica": roles.replica,
                                  "needs_rebuild": roles.needs_rebuild})
    return state


def airflow_env_lines(state: dict[str, Any]) -> list[str]:
    """``export AIRFLOW_CONN_<ID>='<uri>'`` for every entry of ``connections``."""
    lines = []
    for conn_id, uri in state["connections"].items():
        quoted = "'" + str(uri).replace("'", "'\\''") + "'"
        lines.append(f"export AIRFLOW_CONN_{conn_id.upper()}={quoted}")
    return lines
