"""``resilience`` command line: ``lab up|down|status|env`` drives the local lab, ``airflow up|down|run``
Airflow standalone against it, ``sandbox list|drop`` the DR drill's kept sandboxes, ``incident list|done``
the declared incidents' post-mortem follow-ups.

Subcommand groups register themselves in :func:`build_parser`; the logic lives in their packages.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from resilience.lab.errors import LabError, PreflightError
from resilience.lab.layout import (
    DEFAULT_PORT_BASE,
    ENV_LAB_DIR,
    ENV_LOAD_RATE,
    ENV_PORT_BASE,
    ENV_REPLICAS,
    MAX_REPLICAS,
    LabLayout,
    resolve_layout,
)

EXIT_ERROR = 2
EXIT_NOT_UP = 3


def _lab_layout(args: argparse.Namespace) -> LabLayout:
    return resolve_layout(args.lab_dir, args.port_base, getattr(args, "replicas", None),
                          getattr(args, "load_rate", None))


def cmd_lab_up(args: argparse.Namespace) -> int:
    from resilience.lab.bringup import lab_up
    from resilience.lab.status import format_table, lab_status

    layout = _lab_layout(args)
    try:
        lab_up(layout)
    except PreflightError:
        raise
    except LabError as exc:
        raise LabError(f"{exc}\n(components started before the failure keep running: "
                       f"`resilience lab down --lab-dir {layout.lab_dir}` stops them)") from exc
    _migrate_lab_control_db(layout)
    print(format_table(lab_status(layout, with_backups=False)))
    return 0


def _migrate_lab_control_db(layout: LabLayout) -> None:
    """The lab's control database gets the product's schema at once (the lab itself knows nothing of it)."""
    import psycopg

    from resilience.control_schema import migrate
    from resilience.lab.state import load_lab_state

    dsn = load_lab_state(layout.lab_dir)["connections"]["resilience_control_db"]
    migrate(lambda: psycopg.connect(dsn))


def cmd_lab_down(args: argparse.Namespace) -> int:
    from resilience.lab.teardown import lab_down

    lab_down(_lab_layout(args), purge=args.purge)
    return 0


def cmd_lab_status(args: argparse.Namespace) -> int:
    from resilience.lab.status import format_table, lab_status

    doc = lab_status(_lab_layout(args))
    print(json.dumps(doc, indent=2) if args.json else format_table(doc))
    return 0 if doc["all_up"] else EXIT_NOT_UP


def cmd_lab_env(args: argparse.Namespace) -> int:
    from resilience.lab.state import airflow_env_lines, load_lab_state

    print("\n".join(airflow_env_lines(load_lab_state(_lab_layout(args).lab_dir))))
    return 0


def cmd_lab_region(args: argparse.Namespace) -> int:
    """Game-day controls: make a region's entry point go dark (isolate) or come back (restore)."""
    from resilience.lab import control
    from resilience.lab.state import load_lab_state

    state = load_lab_state(_lab_layout(args).lab_dir)
    if args.action == "isolate":
        control.isolate_region(state, args.region)
    elif args.action == "restore":
        control.restore_region(state, args.region)
    print(json.dumps({args.region: control.region_health(load_lab_state(_lab_layout(args).lab_dir), args.region),
                      "dns_weights": _dns_weights(state)}))
    return 0


def _dns_weights(state: dict) -> dict[str, int]:
    from resilience.lab.dns_zone import read_weighted, route53_client

    dns = state["dns"]
    answers = read_weighted(route53_client(dns["aws_endpoint"]), dns["zone_id"], dns["record"])
    return {region: weight for region, (_, weight) in answers.items()}


def add_lab_commands(subparsers: argparse._SubParsersAction) -> None:
    lab = subparsers.add_parser("lab", help="the local lab: real servers on 127.0.0.1")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lab-dir", help=f"lab state directory (env {ENV_LAB_DIR}; default <project>/.lab)")
    common.add_argument("--port-base", type=int,
                        help=f"first port of the lab (env {ENV_PORT_BASE}; default {DEFAULT_PORT_BASE})")
    sub = lab.add_subparsers(dest="lab_command", required=True)
    up = sub.add_parser("up", parents=[common], help="start every lab component (idempotent)")
    up.add_argument("--replicas", type=int,
                    help=f"app replicas behind the load balancer, 1..{MAX_REPLICAS} (env {ENV_REPLICAS}; default 3)")
    up.add_argument("--load-rate", type=float,
                    help=f"load generator requests per second (env {ENV_LOAD_RATE}; default 20)")
    up.set_defaults(func=cmd_lab_up)
    down = sub.add_parser("down", parents=[common], help="stop every lab component (idempotent)")
    down.add_argument("--purge", action="store_true", help="also delete the lab dir")
    down.set_defaults(func=cmd_lab_down)
    status = sub.add_parser("status", parents=[common],
                            help="what runs where (exit 3 when not everything is up)")
    status.add_argument("--json", action="store_true", help="every endpoint and DSN, passwords included")
    status.set_defaults(func=cmd_lab_status)
    sub.add_parser("env", parents=[common], help="print `export AIRFLOW_CONN_...` lines for eval").set_defaults(
        func=cmd_lab_env)
    region = sub.add_parser("region", parents=[common],
                            help="a region's health; isolate (its entry point goes dark) or restore it")
    region.add_argument("action", choices=["status", "isolate", "restore"])
    region.add_argument("region", choices=["primary", "dr"])
    region.set_defaults(func=cmd_lab_region)


def cmd_airflow_up(args: argparse.Namespace) -> int:
    from resilience import airflow_local
    from resilience.lab.state import load_lab_state

    sa = airflow_local.Standalone.from_env()
    schedules = not args.no_schedules
    if args.executor == "celery":
        from resilience import airflow_celery

        airflow_celery.up(airflow_celery.CeleryTopology(sa), load_lab_state(_lab_layout(args).lab_dir),
                          schedules=schedules)
    else:
        airflow_local.up(sa, load_lab_state(_lab_layout(args).lab_dir), schedules=schedules)
    with airflow_local.client(sa) as api:
        dags = airflow_local.wait_parsed(api, airflow_local.dag_files())
    print(f"Airflow UI: {sa.base_url}  user: {airflow_local.USER}  password: in {sa.passwords_file}")
    if args.executor == "celery":
        print(f"CeleryExecutor: api-server, scheduler, dag-processor, 2 triggerers, 2 workers; logs in "
              f"{sa.home / 'components'}")
    print(f"Resilience page: {sa.base_url}/resilience/ (behind the same login)")
    print("DAGs:")
    print("\n".join(airflow_local.pause_report(dags, schedules)))
    return 0


def cmd_airflow_down(args: argparse.Namespace) -> int:
    from resilience import airflow_celery, airflow_local

    # every Airflow process of the home, whichever executor started it, then the Celery broker if there is one
    airflow_celery.down(airflow_celery.CeleryTopology(airflow_local.Standalone.from_env()))
    return 0


def cmd_airflow_run(args: argparse.Namespace) -> int:
    from resilience import airflow_local

    conf = json.loads(args.conf)
    if not isinstance(conf, dict):
        raise ValueError(f"--conf: {args.conf!r} is not a JSON object")
    run = airflow_local.run_dag(airflow_local.Standalone.from_env(), args.dag_id, conf, timeout_s=args.timeout)
    print(f"{args.dag_id} run {run['dag_run_id']}: {run['state'].upper()}")
    report = run["xcom"].get("write_report")
    if isinstance(report, dict):
        score = f" (resilience score {report['score']})" if "score" in report else ""
        print(f"verdict: {report.get('status', 'unknown').upper()}{score}")
        print(f"report:  {report.get('report_html')}")
        print(f"json:    {report.get('report_json')}")
    return 0 if run["state"] == "success" else 1


def add_airflow_commands(subparsers: argparse._SubParsersAction) -> None:
    airflow = subparsers.add_parser("airflow", help="Airflow standalone on 127.0.0.1 against the lab")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lab-dir", help=f"lab state directory (env {ENV_LAB_DIR}; default <project>/.lab)")
    common.add_argument("--port-base", type=int, help=f"first port of the lab (env {ENV_PORT_BASE})")
    sub = airflow.add_subparsers(dest="airflow_command", required=True)
    up = sub.add_parser("up", parents=[common],
                        help="start airflow standalone (idempotent); say where the login is, which DAGs run")
    up.add_argument("--no-schedules", action="store_true",
                    help="run triggered runs only (no scheduled intervals when a DAG is unpaused)")
    up.add_argument("--executor", choices=("standalone", "celery"), default="standalone",
                    help="standalone (LocalExecutor, one process tree; default) or celery: the production "
                         "topology (PostgreSQL metadata, Redis broker, api-server, scheduler, dag-processor, "
                         "2 triggerers, 2 Celery workers, each its own process and log)")
    up.set_defaults(func=cmd_airflow_up)
    sub.add_parser("down", help="stop Airflow (standalone or Celery), its task processes and broker").set_defaults(
        func=cmd_airflow_down)
    run = sub.add_parser("run", help="trigger a DAG through the REST API and follow it to the end")
    run.add_argument("dag_id")
    run.add_argument("--conf", default="{}", help="run configuration (Params) as a JSON object")
    run.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default 3600)")
    run.set_defaults(func=cmd_airflow_run)


def _platform(environment: str):
    from resilience.config import load_config
    from resilience.platforms.base import get_platform

    return get_platform(load_config().environment(environment, "--environment"))


def cmd_sandbox_list(args: argparse.Namespace) -> int:
    import datetime as dt

    boxes = _platform(args.environment).sandboxes.list_sandboxes()
    if not boxes:
        print(f"no sandboxes in {args.environment}")
    for box, created in boxes:
        when = dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="seconds")
        print(f"{box.name}  created {when}  {box.dsn('postgres')}  app {box.app_url or '-'}")
    return 0


def cmd_sandbox_drop(args: argparse.Namespace) -> int:
    platform = _platform(args.environment)
    boxes = {box.name: box for box, _ in platform.sandboxes.list_sandboxes()}
    if args.name not in boxes:
        raise ValueError(f"sandbox {args.name!r} does not exist in {args.environment} (have: {sorted(boxes)})")
    platform.sandboxes.drop_sandbox(boxes[args.name])
    return 0


def add_sandbox_commands(subparsers: argparse._SubParsersAction) -> None:
    sandbox = subparsers.add_parser("sandbox", help="DR drill sandboxes (kept with no_cleanup)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--environment", default="lab", help="environment holding the sandboxes (default lab)")
    sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    sub.add_parser("list", parents=[common], help="list sandboxes with their DSN").set_defaults(
        func=cmd_sandbox_list)
    drop = sub.add_parser("drop", parents=[common], help="stop and delete one sandbox")
    drop.add_argument("name")
    drop.set_defaults(func=cmd_sandbox_drop)


def _incidents():
    from resilience.config import load_config
    from resilience.incidents.store import IncidentStore

    return IncidentStore.for_conn(load_config().control_db_conn_id)


def cmd_incident_list(args: argparse.Namespace) -> int:
    """Open incidents (or all) with their post-mortem items: due date, done or not."""
    store = _incidents()
    incidents = store.incidents(include_closed=args.all)
    if not incidents:
        print("no incident with open post-mortem items" if not args.all else "no incident recorded")
    for incident in incidents:
        print(f"{incident.id}  {incident.severity}  {incident.declared_at:%Y-%m-%d %H:%M} UTC  {incident.environment}"
              f"  {incident.slack_channel}  {incident.name} ({incident.dag_id} {incident.run_id})")
        if incident.report_path:
            print(f"    report: {incident.report_path}")
        for item in store.items(incident.id):
            mark = f"[x] done {item.done_at:%Y-%m-%d %H:%M}" + (f" by {item.done_by}" if item.done_by else "") \
                if item.done_at else "[ ]"
            print(f"    {mark}  {item.item}  ({item.stage}, due {item.due_at:%Y-%m-%d %H:%M} UTC)")
    return 0


def cmd_incident_done(args: argparse.Namespace) -> int:
    """Mark one post-mortem item of an incident done: its reminders stop."""
    import getpass

    if _incidents().mark_done(args.incident_id, args.item, args.by or getpass.getuser()):
        print(f"{args.incident_id}: {args.item} marked done")
    else:
        print(f"{args.incident_id}: {args.item} was already done")
    return 0


def add_incident_commands(subparsers: argparse._SubParsersAction) -> None:
    from resilience.incidents.followups import ITEMS

    incident = subparsers.add_parser("incident", help="declared incidents and their post-mortem follow-ups "
                                                      "(control DB; eval \"$(resilience lab env)\" for the lab's)")
    sub = incident.add_subparsers(dest="incident_command", required=True)
    listing = sub.add_parser("list", help="incidents with post-mortem items open, and their items")
    listing.add_argument("--all", action="store_true", help="closed incidents too")
    listing.set_defaults(func=cmd_incident_list)
    done = sub.add_parser("done", help="mark a post-mortem item done (its reminders stop)")
    done.add_argument("incident_id")
    done.add_argument("item", choices=list(ITEMS))
    done.add_argument("--by", help="who did it (default: your user name)")
    done.set_defaults(func=cmd_incident_done)


def cmd_db_migrate(args: argparse.Namespace) -> int:
    """Bring the control database (``defaults.control_db_conn_id``, or ``--conn-id``) to this package's schema."""
    from resilience.config import load_config
    from resilience.control_schema import migrate
    from resilience.controldb import postgres_connect

    conn_id = args.conn_id or load_config().control_db_conn_id
    before, after = migrate(postgres_connect(conn_id))
    print(f"{conn_id}: schema version {before} -> {after}" if before != after else
          f"{conn_id}: schema already at version {after}")
    return 0


def add_db_commands(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="the control database (ledger, locks, run records, incidents)")
    sub = db.add_subparsers(dest="db_command", required=True)
    migrate = sub.add_parser("migrate", help="apply the schema migrations it lacks (a deployment step; idempotent)")
    migrate.add_argument("--conn-id", help="an Airflow Postgres Connection (default: defaults.control_db_conn_id)")
    migrate.set_defaults(func=cmd_db_migrate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resilience", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_lab_commands(subparsers)
    add_airflow_commands(subparsers)
    add_sandbox_commands(subparsers)
    add_incident_commands(subparsers)
    add_db_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (LabError, ValueError, FileNotFoundError, RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
