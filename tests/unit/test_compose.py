"""docker-compose.yaml and the Dockerfile name only what exists.

``docker-compose config`` (Debian's docker-compose, installed by ``make deps``) validates and resolves the
file; the tests then read the resolved services: the official topology (CeleryExecutor, two triggerers,
two workers, an init job), every command a real ``airflow`` or ``resilience`` command line (each parsed by
the CLI's own argparse parser), every environment name one Airflow's configuration or this package's code
reads, every Connection id one environments.yaml names, every path one the repository holds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_ROOT = "/opt/airflow"  # the repository's place in the image (COPY, pip install -e, AIRFLOW_HOME)
OFFICIAL_IMAGE = "apache/airflow:3.3.2"

# Names the official image's /entrypoint reads (docs: docker-stack/entrypoint), not Airflow's configuration.
ENTRYPOINT_ENV = {"_AIRFLOW_DB_MIGRATE", "_AIRFLOW_WWW_USER_CREATE", "_AIRFLOW_WWW_USER_USERNAME",
                  "_AIRFLOW_WWW_USER_PASSWORD", "DUMB_INIT_SETSID", "CONNECTION_CHECK_MAX_COUNT"}
POSTGRES_IMAGE_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
# Class paths the official image provides but this venv does not install (apache-airflow-providers-fab).
BASE_IMAGE_CLASSES = {"airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"}
# Debian packages of the Makefile's deps that every image has (the Dockerfile's own list), or that are tools
# of this machine, not of the lab (docker-compose): the rest is the lab image's LAB_PACKAGES.
IMAGE_PACKAGES = {"postgresql", "postgresql-contrib", "pgbackrest"}
HOST_ONLY_PACKAGES = {"docker-compose"}


# -- the resolved compose file ---------------------------------------------------------------------------------

@cache
def compose_config() -> dict[str, Any]:
    """``docker-compose config`` of the file, with no variable set (every default in force)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: `make deps` installs Debian's docker-compose package, "
                    "which validates docker-compose.yaml")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    result = subprocess.run([binary, "--profile", "lab", "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
                             "config"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    assert "not set" not in result.stderr and "WARNING" not in result.stderr, (
        f"docker-compose config warns (a variable without a default?):\n{result.stderr}")
    return yaml.safe_load(result.stdout)


def services() -> dict[str, dict[str, Any]]:
    return compose_config()["services"]


def airflow_services() -> dict[str, dict[str, Any]]:
    """The services that run the Airflow image (ours or the lab's)."""
    return {name: s for name, s in services().items() if "AIRFLOW__CORE__EXECUTOR" in s.get("environment", {})}


def argv_of(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else list(value)


def environments_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "include" / "config" / "environments.yaml").read_text())


def config_conn_ids() -> set[str]:
    """Every Connection id environments.yaml names: ``conn_id`` and ``*_conn_id`` keys at any depth, and the
    escalation's Slack channel Connections."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and (key == "conn_id" or key.endswith("_conn_id")):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    raw = environments_yaml()
    walk(raw)
    found.update(raw["defaults"]["escalation"]["slack_channels"].values())
    return found


def lab_state_conn_ids() -> set[str]:
    """The Connections `resilience lab env` exports (lab.json's ``connections``)."""
    from resilience.lab.layout import LabLayout
    from resilience.lab.state import Roles, build_state

    state = build_state(LabLayout(Path("/nonexistent-lab")), "pw", Path("/usr/lib/postgresql/15/bin"), "postgres",
                        roles=Roles())
    return set(state["connections"])


@cache
def code_env_names() -> set[str]:
    """Every ``RESILIENCE_*`` name the package's source spells out (what its code can read)."""
    names: set[str] = set()
    for path in (ROOT / "plugins" / "resilience").rglob("*.py"):
        names.update(re.findall(r"[\"'](RESILIENCE_[A-Z0-9_]+)[\"']", path.read_text()))
    return names


# -- commands --------------------------------------------------------------------------------------------------

@cache
def airflow_parser() -> argparse.ArgumentParser:
    from airflow.cli.cli_parser import get_parser

    return get_parser()


@cache
def resilience_parser() -> argparse.ArgumentParser:
    from resilience.cli import build_parser

    return build_parser()


def parse_error(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """None when ``parser`` accepts ``argv``, else argparse's complaint."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        return stderr.getvalue().strip() or f"exit {exc.code}"
    return None


SUBSTITUTION_RE = re.compile(r"\$\(([^()]*)\)")
OPERATORS = set("|;&()")


def shell_commands(script: str) -> list[tuple[str, list[str]]]:
    """``(program, argv)`` of every ``airflow ...`` / ``resilience ...`` command in a shell script: in
    pipelines and lists, ``$(...)``, ``exec``, ``/entrypoint airflow ...`` and ``trap '...'``."""
    found: list[tuple[str, list[str]]] = []
    for line in script.splitlines():
        inner = SUBSTITUTION_RE.findall(line)
        for text in [*inner, SUBSTITUTION_RE.sub("SUBSTITUTED", line)]:
            lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            segment: list[str] = []
            for token in [*lexer, ";"]:
                if token and set(token) <= OPERATORS:
                    found += segment_command(segment)
                    segment = []
                else:
                    segment.append(token)
    return found


def segment_command(words: list[str]) -> list[tuple[str, list[str]]]:
    while words[:1] in (["exec"], ["/entrypoint"]):
        words = words[1:]
    if words[:1] == ["trap"] and len(words) > 1:
        return shell_commands(words[1])
    return [(words[0], words[1:])] if words[:1] in (["airflow"], ["resilience"]) else []


def service_command_lines(name: str, service: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """What each service runs: a shell script's commands (entrypoint bash), the official /entrypoint's
    ``airflow <command>`` otherwise, and its healthcheck's commands."""
    command = argv_of(service.get("command"))
    entrypoint = argv_of(service.get("entrypoint"))
    lines: list[tuple[str, list[str]]] = []
    if entrypoint in (["/bin/bash"], ["bash"]) or command[:1] in (["bash"], ["/bin/bash"]):
        script = command[command.index("-c") + 1]
        lines += shell_commands(script.replace("$$", "$"))
    elif entrypoint:
        pytest.fail(f"{name}: entrypoint {entrypoint} is neither the image's /entrypoint nor bash")
    elif command and "AIRFLOW__CORE__EXECUTOR" in service.get("environment", {}):
        # the official /entrypoint runs `airflow <command>` unless the command starts with airflow/bash/python
        lines.append(("airflow", command[1:] if command[0] == "airflow" else command))
    test = argv_of((service.get("healthcheck") or {}).get("test"))
    if test[:1] == ["CMD-SHELL"]:
        lines += shell_commands(test[1].replace("$$", "$"))
    elif test[:1] == ["CMD"] and test[1] in ("airflow", "resilience"):
        lines.append((test[1], test[2:]))
    return lines


def all_command_lines() -> list[tuple[str, str, list[str]]]:
    return [(name, program, argv) for name, service in services().items()
            for program, argv in service_command_lines(name, service)]


def test_every_airflow_and_resilience_command_parses():
    """Each command line is accepted by the real CLI's parser (a misspelt subcommand or flag fails here)."""
    parsers = {"airflow": airflow_parser(), "resilience": resilience_parser()}
    lines = all_command_lines()
    errors = [f"{name}: {program} {' '.join(argv)}: {error}" for name, program, argv in lines
              if argv and (error := parse_error(parsers[program], argv))]
    assert not errors, "\n".join(errors)
    ran = {(program, " ".join(a for a in argv if not a.startswith(("-", "$", '"')))) for _, program, argv in lines}
    assert {("airflow", "api-server"), ("airflow", "scheduler"), ("airflow", "dag-processor"),
            ("airflow", "triggerer"), ("airflow", "celery worker"), ("airflow", "version"),
            ("resilience", "db migrate"), ("resilience", "lab up"), ("resilience", "lab env"),
            ("resilience", "lab status"), ("resilience", "lab down")} <= ran, sorted(ran)


def test_parse_error_catches_a_wrong_command():
    """The check above can fail: a misspelt subcommand and an unknown flag are refused."""
    assert parse_error(airflow_parser(), ["dag-processer"])
    assert parse_error(resilience_parser(), ["lab", "start"])
    assert parse_error(resilience_parser(), ["db", "migrate", "--force"])
    assert shell_commands('eval "$(resilience lab env | grep -v x)"\nexec /entrypoint airflow celery worker\n'
                          "trap 'resilience lab down; exit 0' TERM\necho \"resilience's\"") == [
        ("resilience", ["lab", "env"]), ("airflow", ["celery", "worker"]), ("resilience", ["lab", "down"])]


def test_resilience_is_a_console_script_of_the_package():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("resilience") == "resilience.cli:main"
    assert any(program == "resilience" for _, program, _ in all_command_lines())


def test_celery_healthcheck_app_exists():
    """The workers' healthcheck pings ``celery --app <module>.app``; the first alternative must import."""
    import importlib

    for name, service in services().items():
        test = " ".join(argv_of((service.get("healthcheck") or {}).get("test")))
        for module in re.findall(r"celery --app ([\w.]+)\.app\b", test)[:1]:
            assert hasattr(importlib.import_module(module), "app"), f"{name}: {module}.app"


# -- the topology -----------------------------------------------------------------------------------------------

def test_official_topology_with_two_triggerers_and_two_workers():
    all_services = services()
    default = {n: s for n, s in all_services.items() if not s.get("profiles")}
    commands = {n: " ".join(argv_of(s.get("command"))) for n, s in default.items()}
    assert {"postgres", "redis", "resilience-db", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-init"} <= set(default), sorted(default)
    assert sorted(n for n, c in commands.items() if c == "triggerer") == ["airflow-triggerer-1", "airflow-triggerer-2"]
    assert sorted(n for n, c in commands.items() if c == "celery worker") == ["airflow-worker-1", "airflow-worker-2"]
    assert all_services["postgres"]["image"].startswith("postgres:")
    assert all_services["redis"]["image"].startswith("redis:")
    for name, service in airflow_services().items():
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in \
            env["AIRFLOW__CELERY__BROKER_URL"], name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        if name != "airflow-init":
            assert {"redis", "postgres", "resilience-db"} <= set(service["depends_on"]), name
        if name not in ("airflow-init", "airflow-cli"):
            assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name
            assert service["healthcheck"]["test"], name


def test_image_is_built_from_the_dockerfile_on_the_official_image():
    for name, service in airflow_services().items():
        build = service["build"]
        assert Path(build["context"]) == ROOT, name
        assert build["args"]["BASE_IMAGE"] == OFFICIAL_IMAGE, name
    ports = [p for s in services().values() for p in s.get("ports", [])]
    published = [int(p["published"]) for p in ports]
    assert published and all(13000 <= p < 14000 for p in published), published


def test_scheduler_healthcheck_port_is_airflows():
    from airflow.configuration import conf

    port = conf.configuration_description["scheduler"]["options"]["scheduler_health_check_server_port"]["default"]
    assert f"localhost:{port}/health" in " ".join(services()["airflow-scheduler"]["healthcheck"]["test"])


# -- environment names -------------------------------------------------------------------------------------------

def airflow_option_known(name: str) -> bool:
    from airflow.configuration import conf

    _, section, key = name.split("__", 2)
    return key.lower() in conf.configuration_description.get(section.lower(), {}).get("options", {})


def test_every_environment_name_is_read_by_airflow_the_image_or_the_package():
    unknown = []
    for name, service in services().items():
        for var in service.get("environment", {}):
            if var.startswith("AIRFLOW__"):
                ok = airflow_option_known(var)
            elif var.startswith("AIRFLOW_CONN_"):
                ok = True  # test_connections
            elif var.startswith("RESILIENCE_"):
                ok = var in code_env_names()
            elif var in POSTGRES_IMAGE_ENV:
                ok = service.get("image", "").startswith("postgres:")
            else:
                ok = var in ENTRYPOINT_ENV
            if not ok:
                unknown.append(f"{name}: {var}")
    assert not unknown, unknown


def test_environment_name_checks_can_fail():
    assert not airflow_option_known("AIRFLOW__CORE__EXECUTER")
    assert "RESILIENCE_LAB_DIR" in code_env_names() and "RESILIENCE_LABDIR" not in code_env_names()


def test_class_paths_in_the_environment_import():
    import importlib

    for name, service in airflow_services().items():
        value = service["environment"]["AIRFLOW__CORE__AUTH_MANAGER"]
        if value in BASE_IMAGE_CLASSES:
            continue
        module, _, cls = value.rpartition(".")
        assert hasattr(importlib.import_module(module), cls), f"{name}: {value}"


def test_connections_are_the_ones_environments_yaml_names():
    """Every non-lab Connection of environments.yaml is passed to every Airflow service (empty when unset,
    which Airflow treats as absent); the lab's come from `resilience lab env` in the lab profile."""
    ids = config_conn_ids()
    lab_ids = {i for i in ids if i.startswith("resilience_lab_")}
    expected = {f"AIRFLOW_CONN_{i.upper()}" for i in ids - lab_ids}
    assert "resilience_control_db" in ids and expected
    for name, service in airflow_services().items():
        env = service["environment"]
        assert {v for v in env if v.startswith("AIRFLOW_CONN_")} == expected, name
        assert env["AIRFLOW_CONN_RESILIENCE_CONTROL_DB"].startswith("postgresql://"), name
        assert "@resilience-db:5432/" in env["AIRFLOW_CONN_RESILIENCE_CONTROL_DB"], name
        assert all(env[v] == "" for v in expected - {"AIRFLOW_CONN_RESILIENCE_CONTROL_DB"}), name
    assert lab_ids <= lab_state_conn_ids(), lab_ids - lab_state_conn_ids()


def test_empty_connection_variable_is_absent_to_airflow(monkeypatch):
    """Why the pass-through `${AIRFLOW_CONN_X:-}` is harmless: an empty value is no Connection."""
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend

    monkeypatch.setenv("AIRFLOW_CONN_RESILIENCE_SLACK", "")
    assert EnvironmentVariablesBackend().get_connection("resilience_slack") is None


# -- paths and the lab profile ------------------------------------------------------------------------------------

def in_repo(image_path: str) -> Path:
    assert image_path.startswith(IMAGE_ROOT + "/"), image_path
    return ROOT / image_path.removeprefix(IMAGE_ROOT + "/")


def test_paths_exist_in_the_repository():
    from airflow.configuration import conf

    for name, service in airflow_services().items():
        env = service["environment"]
        assert in_repo(env["RESILIENCE_ENVIRONMENTS"]).is_file(), name
        assert env["RESILIENCE_REPORT_DIR"] == f"{IMAGE_ROOT}/reports", name
        targets = {str(v).split(":")[1] for v in service.get("volumes", [])}
        assert f"{IMAGE_ROOT}/logs" in targets and env["RESILIENCE_REPORT_DIR"] in targets, name
    # AIRFLOW_HOME=/opt/airflow in the image: Airflow's default folders are the repository's
    options = conf.configuration_description["core"]["options"]
    assert options["dags_folder"]["default"] == "{AIRFLOW_HOME}/dags" and any((ROOT / "dags").glob("*.py"))
    assert options["plugins_folder"]["default"] == "{AIRFLOW_HOME}/plugins"
    assert (ROOT / "plugins" / "resilience_plugin.py").is_file()


def test_lab_profile_shares_the_labs_namespaces_and_state():
    all_services = services()
    lab = all_services["lab"]
    lab_dir = lab["environment"]["RESILIENCE_LAB_DIR"]
    assert f"lab-state:{lab_dir}:rw" in lab["volumes"]
    attached = {n: s for n, s in all_services.items() if s.get("profiles") == ["lab"] and n != "lab"}
    kinds = sorted(" ".join(argv) for n, s in attached.items() for program, argv in service_command_lines(n, s)
                   if program == "airflow" and argv[:1] in (["celery"], ["triggerer"]))
    assert kinds == ["celery worker", "triggerer"], kinds
    for name, service in attached.items():
        assert service["network_mode"] == "service:lab" and service["pid"] == "service:lab", name
        assert service["environment"]["RESILIENCE_LAB_DIR"] == lab_dir, name
        assert f"lab-state:{lab_dir}:rw" in service["volumes"], name
        assert service["image"] == lab["image"] and service["user"] == "0:0", name
        assert service["depends_on"]["lab"] == {"condition": "service_healthy"}, name


def makefile_deb_packages() -> set[str]:
    match = re.search(r"^DEB_PKGS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile: no DEB_PKGS"
    return set(match.group(1).split())


def test_lab_image_has_the_labs_debian_packages():
    assert "docker-compose" in makefile_deb_packages()
    expected = makefile_deb_packages() - IMAGE_PACKAGES - HOST_ONLY_PACKAGES
    for name, service in services().items():
        if service.get("profiles") == ["lab"]:
            assert set(service["build"]["args"]["LAB_PACKAGES"].split()) == expected, name


# -- the Dockerfile ------------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                         if not line.lstrip().startswith("#")))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for line in text.splitlines() if (parts := line.strip().split(None, 1))]


def dockerfile_args() -> dict[str, str]:
    return dict(a.split("=", 1) if "=" in a else (a, "") for i, a in dockerfile_instructions() if i == "ARG")


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    defaults = dockerfile_args()
    return {k: re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], v) for k, v in env.items()}


def test_dockerfile_extends_the_official_image_in_few_layers():
    instructions = dockerfile_instructions()
    assert dockerfile_args()["BASE_IMAGE"] == OFFICIAL_IMAGE
    assert [a for i, a in instructions if i == "FROM"] == ["${BASE_IMAGE}"]
    layers = [i for i, _ in instructions if i in ("RUN", "COPY", "ADD")]
    assert layers == ["RUN", "COPY", "RUN"], layers
    copy = next(a for i, a in instructions if i == "COPY")
    assert copy.split()[-2:] == [".", f"{IMAGE_ROOT}/"]
    pip = next(a for i, a in instructions if i == "RUN" and "pip install" in a)
    assert f"pip install --no-cache-dir -e {IMAGE_ROOT}" in pip and "resilience --help" in pip


def test_dockerfile_env_is_read_by_the_package_and_matches_environments_yaml():
    env = dockerfile_env()
    assert set(env) <= code_env_names(), set(env) - code_env_names()
    assert in_repo(env["RESILIENCE_ENVIRONMENTS"]).is_file()
    run = " ".join(a for i, a in dockerfile_instructions() if i == "RUN")
    sandboxes = [e["sandbox"] for e in environments_yaml()["environments"].values() if "root" in e.get("sandbox", {})]
    assert sandboxes, "no environment restores sandboxes on the worker"
    for sandbox in sandboxes:
        # the worker's sandboxes are served by the image's PostgreSQL, under a root the image creates for airflow
        assert sandbox["pg_bindir"] == env["RESILIENCE_PG_BINDIR"]
        assert re.search(rf"install -d -o airflow [^;]*{re.escape(sandbox['root'])}\b", run), sandbox["root"]
    assert re.search(r"install -d -o airflow [^;]*" + re.escape(env["RESILIENCE_REPORT_DIR"]), run)
    major = dockerfile_args()["PG_MAJOR"]
    assert '"postgresql-${PG_MAJOR}"' in run and "pgbackrest" in run and major == "15"


def test_dockerignore_keeps_what_pip_and_airflow_need():
    """The image's /opt/airflow is the project root: resilience.config finds include/ two levels above
    its own file, as in this checkout."""
    from resilience import config

    assert config.PROJECT_ROOT == ROOT
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    kept = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"], "dags", "include",
              *project["tool"]["setuptools"]["packages"]["find"]["where"]}
    assert kept == needed
    assert all((ROOT / k).exists() for k in kept)
