# The official Airflow image plus this package, pgBackRest and the PostgreSQL server binaries the DR
# drill restores a sandbox with on the worker (README "What the worker image needs").
#
#   docker-compose build                       # as docker-compose.yaml builds it
#   docker build -t resilience-airflow .       # alone
#
# Build arguments:
#   BASE_IMAGE    the image to extend (default the official apache/airflow:3.3.2; any image laid out like it:
#                 user airflow, AIRFLOW_HOME=/opt/airflow, pip installing for that user, /entrypoint)
#   PG_MAJOR      the PostgreSQL major version of the source databases: a sandbox is served by the same
#                 major (environments.yaml: sandbox.pg_bindir is /usr/lib/postgresql/<PG_MAJOR>/bin)
#   LAB_PACKAGES  extra Debian packages; docker-compose.yaml's `lab` profile passes the lab's servers
#                 (redis-server prometheus stress-ng patroni etcd-server stunnel4) for its lab image
#
# Three layers over the base: Debian packages, the repository, the pip install.
ARG BASE_IMAGE=apache/airflow:3.3.2
FROM ${BASE_IMAGE}

ARG PG_MAJOR=15
ARG LAB_PACKAGES=""

USER root
# postgresql-common first, told not to create a default cluster: the image runs sandboxes of its own only.
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends postgresql-common; \
    sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf; \
    grep -qx 'create_main_cluster = false' /etc/postgresql-common/createcluster.conf; \
    apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}" \
        pgbackrest ${LAB_PACKAGES}; \
    test -x "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_ctl"; \
    test -x "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_amcheck"; \
    pgbackrest version; \
    install -d -o airflow -g 0 -m 0775 /var/lib/resilience/sandboxes /opt/airflow/reports; \
    apt-get autoremove -yqq --purge; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*

# RESILIENCE_PG_BINDIR: the lab's servers (lab/postgres.py); the worker's sandboxes take environments.yaml's
# sandbox.pg_bindir, the same directory. The project root is /opt/airflow (dags/, plugins/, include/ below it),
# where resilience.config finds include/ and Airflow its DAGs and plugins by default.
ENV RESILIENCE_PG_BINDIR=/usr/lib/postgresql/${PG_MAJOR}/bin \
    RESILIENCE_ENVIRONMENTS=/opt/airflow/include/config/environments.yaml \
    RESILIENCE_REPORT_DIR=/opt/airflow/reports

# pyproject.toml, README.md, dags/, plugins/, include/ only (.dockerignore)
COPY --chown=airflow:0 . /opt/airflow/

USER airflow
# Editable, as in a checkout: the package runs from /opt/airflow/plugins/resilience, so it finds
# include/config/scenarios.yaml and include/sql/ beside it (a copy in site-packages would not).
# pyproject.toml pins apache-airflow==3.3.2: pip keeps the base's Airflow or fails, never upgrades it.
RUN pip install --no-cache-dir -e /opt/airflow \
    && resilience --help >/dev/null \
    && python -c "import resilience.config as c; assert c.PROJECT_ROOT.as_posix() == '/opt/airflow', c.PROJECT_ROOT"
