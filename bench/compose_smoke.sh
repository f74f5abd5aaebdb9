#!/usr/bin/env bash
# Build the image of docker-compose.yaml and start its default services on this machine, without a registry.
# Not part of `make test` (minutes of CPU, GBs of disk): run it by hand, as root.
#
#   bench/compose_smoke.sh [WORKDIR]     # default /tmp/resilience-compose-smoke; the engine's data is removed at
#                                        # the end unless KEEP=1 (its layer cache makes a re-run quick)
#
# No registry is reachable here (field notes, "Docker engine"), so the official images are replaced by
# stand-ins built from a debootstrapped Debian bookworm, each reduced to what docker-compose.yaml uses of it:
#   apache/airflow:3.3.2  -> python3 venv with apache-airflow[celery,postgres]==3.3.2 + the FAB provider, user
#                            airflow (50000:0), AIRFLOW_HOME=/opt/airflow, an /entrypoint that runs
#                            `airflow <command>` and honours _AIRFLOW_DB_MIGRATE / _AIRFLOW_WWW_USER_CREATE
#   postgres:16           -> Debian's PostgreSQL 15 with an entrypoint honouring POSTGRES_USER/PASSWORD/DB
#   redis:7.2-bookworm    -> Debian's redis-server (7.0)
# The Dockerfile itself is built unchanged (BASE_IMAGE = the stand-in) from the committed tree (git archive
# HEAD), then the stack comes up with docker-compose.yaml unchanged plus an override of the image names and
# the Celery concurrency (2: this machine has 2 CPUs). It passes when every service is healthy, airflow-init
# exited 0, the DAGs import with no error and a chaos_abort run (unpaused at creation, every 2 min)
# succeeds on a Celery worker.
set -euo pipefail

ROOT=${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}  # the checkout whose HEAD is built
WORK=${1:-/tmp/resilience-compose-smoke}
export DOCKER_HOST="unix://$WORK/docker.sock"
DOCKER=/usr/bin/docker  # Debian's docker.io client, the daemon's version
PROJECT=resilience-smoke
STANDIN=resilience-standin
t0=$(date +%s)
say() { printf '[%4ss] %s\n' "$(($(date +%s) - t0))" "$*"; }

compose() { docker-compose -p "$PROJECT" --project-directory "$WORK/src" -f "$WORK/src/docker-compose.yaml" \
                           -f "$WORK/override.yaml" "$@"; }

cleanup() {
  set +e
  if [ -S "$WORK/docker.sock" ]; then
    compose logs --no-color > "$WORK/compose.log" 2>&1
    compose down -v --remove-orphans > /dev/null 2>&1
  fi
  if [ -n "${DOCKERD_PID:-}" ]; then
    kill "$DOCKERD_PID" 2> /dev/null
    while kill -0 "$DOCKERD_PID" 2> /dev/null; do sleep 0.5; done
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    say "logs in $WORK/*.log; the engine's data kept (KEEP=1)"
  else
    say "logs in $WORK/*.log; removing the engine's data"
    rm -rf "$WORK/data" "$WORK/rootfs"
  fi
}

for tool in dockerd debootstrap docker-compose; do
  command -v "$tool" > /dev/null || { echo "$tool missing: apt-get install docker.io debootstrap docker-compose" >&2; exit 2; }
done
mkdir -p "$WORK"/{data,exec,standin}
trap cleanup EXIT

# -- the engine: vfs, no iptables, a socket of its own ---------------------------------------------------------
dockerd --storage-driver=vfs --iptables=false --ip-masq=false --bridge=none --data-root "$WORK/data" \
        --exec-root "$WORK/exec" -H "$DOCKER_HOST" --pidfile "$WORK/dockerd.pid" > "$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 100); do $DOCKER info > /dev/null 2>&1 && break; sleep 0.2; done
$DOCKER info > /dev/null
say "dockerd $($DOCKER version --format '{{.Server.Version}}') up (vfs)"

# -- stand-ins for the registry's images --------------------------------------------------------------------------
[ -d "$WORK/rootfs/usr" ] || debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian \
  > "$WORK/debootstrap.log" 2>&1
# imported once: a new import is a new image id, which would rebuild every layer above it
$DOCKER image inspect "$STANDIN/debian:bookworm" > /dev/null 2>&1 ||
  tar -C "$WORK/rootfs" -c . | $DOCKER import - "$STANDIN/debian:bookworm" > /dev/null
say "debootstrapped base imported"

mkdir -p "$WORK/standin/certs"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/standin/certs/"  # the host's CAs (an egress proxy's too), for pip
cat > "$WORK/standin/airflow-entrypoint" <<'EOF'
#!/bin/bash
set -e
if [[ "${_AIRFLOW_DB_MIGRATE:-}" == "true" ]]; then airflow db migrate; fi
if [[ "${_AIRFLOW_WWW_USER_CREATE:-}" == "true" ]]; then
  airflow users create -r Admin -u "${_AIRFLOW_WWW_USER_USERNAME:-admin}" -p "${_AIRFLOW_WWW_USER_PASSWORD:-admin}" \
    -e admin@example.org -f Airflow -l Admin || true
fi
case "${1:-}" in bash|python|python3) exec "$@" ;; airflow) shift ;; esac
exec airflow "$@"
EOF
cat > "$WORK/standin/postgres-entrypoint" <<'EOF'
#!/bin/bash
set -e
bin=/usr/lib/postgresql/15/bin; data=/var/lib/postgresql/data; as_pg="setpriv --reuid=postgres --regid=postgres --init-groups"
if [ ! -s "$data/PG_VERSION" ]; then
  printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw && chown postgres /tmp/pw
  $as_pg $bin/initdb -D "$data" -U "$POSTGRES_USER" --pwfile=/tmp/pw -A scram-sha-256 --auth-local=trust \
    -E UTF8 --locale=C > /dev/null  # as postgres:16 (minbase has no locales: SQL_ASCII breaks psycopg 3)
  rm /tmp/pw && echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
  $as_pg $bin/pg_ctl -D "$data" -w -o "-c listen_addresses=''" start > /dev/null
  $as_pg $bin/psql -U "$POSTGRES_USER" -d postgres -qc "CREATE DATABASE \"$POSTGRES_DB\""
  $as_pg $bin/pg_ctl -D "$data" -w stop > /dev/null
fi
exec $as_pg $bin/postgres -D "$data" -c listen_addresses='*'
EOF
chmod +x "$WORK"/standin/*-entrypoint
cat > "$WORK/standin/Dockerfile.airflow" <<EOF
FROM $STANDIN/debian:bookworm
ENV AIRFLOW_HOME=/opt/airflow AIRFLOW_VERSION=3.3.2 AIRFLOW_USER_HOME_DIR=/home/airflow \
    PATH=/home/airflow/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/host-ca-certificates.crt
COPY certs/ca-certificates.crt /etc/ssl/certs/host-ca-certificates.crt
COPY airflow-entrypoint /entrypoint
RUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv curl ca-certificates libpq5 procps; \
    useradd -u 50000 -g 0 -m -d /home/airflow airflow; \
    install -d -o airflow -g 0 -m 0775 /opt/airflow /opt/airflow/logs /opt/airflow/dags /opt/airflow/plugins; \
    python3 -m venv /home/airflow/.local; \
    /home/airflow/.local/bin/pip install --no-cache-dir "apache-airflow[celery,postgres]==3.3.2" \
        apache-airflow-providers-fab psycopg2-binary; \
    chown -R airflow:0 /home/airflow; apt-get clean; rm -rf /var/lib/apt/lists/*
USER airflow
WORKDIR /opt/airflow
ENTRYPOINT ["/entrypoint"]
EOF
cat > "$WORK/standin/Dockerfile.postgres" <<EOF
FROM $STANDIN/debian:bookworm
COPY postgres-entrypoint /entrypoint
RUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; \
    apt-get install -y --no-install-recommends postgresql-common; \
    sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf; \
    apt-get install -y --no-install-recommends postgresql-15 util-linux; \
    install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data; \
    apt-get clean; rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/entrypoint"]
EOF
cat > "$WORK/standin/Dockerfile.redis" <<EOF
FROM $STANDIN/debian:bookworm
RUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; \
    apt-get install -y --no-install-recommends redis-server; apt-get clean; rm -rf /var/lib/apt/lists/*
CMD ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0"]
EOF
for name in postgres redis airflow; do
  $DOCKER build -q --network host -f "$WORK/standin/Dockerfile.$name" -t "$STANDIN/$name" "$WORK/standin" \
    > "$WORK/build-standin-$name.log" 2>&1 || { tail -20 "$WORK/build-standin-$name.log"; exit 1; }
  say "stand-in $STANDIN/$name built"
done

# -- the image, from the committed tree ---------------------------------------------------------------------------
rm -rf "$WORK/src" && mkdir -p "$WORK/src" && git -C "$ROOT" archive HEAD | tar -x -C "$WORK/src"
$DOCKER build --network host --build-arg "BASE_IMAGE=$STANDIN/airflow" -t resilience-airflow:smoke "$WORK/src" \
  > "$WORK/build-image.log" 2>&1 || { tail -30 "$WORK/build-image.log"; exit 1; }
say "Dockerfile built on $STANDIN/airflow: $($DOCKER history -q resilience-airflow:smoke | wc -l) history entries, \
$($DOCKER image inspect -f '{{.Size}}' resilience-airflow:smoke | awk '{printf "%.2f GB", $1/1e9}')"

run() { $DOCKER run --rm --network host resilience-airflow:smoke "$@"; }
run bash -c 'set -e; resilience --help > /dev/null; pgbackrest version; "$RESILIENCE_PG_BINDIR/postgres" --version
  python -c "import resilience.config as c; print(\"PROJECT_ROOT\", c.PROJECT_ROOT)"
  initdb_dir=$(mktemp -d) && "$RESILIENCE_PG_BINDIR/initdb" -D "$initdb_dir/pg" > /dev/null && echo "initdb as $(id -un): ok"
  test -w /var/lib/resilience/sandboxes && test -w "$RESILIENCE_REPORT_DIR" && echo "sandbox root and report dir writable"'

# -- the stack ----------------------------------------------------------------------------------------------------
cat > "$WORK/override.yaml" <<EOF
services:
  postgres: {image: $STANDIN/postgres}
  resilience-db: {image: $STANDIN/postgres}
  redis: {image: $STANDIN/redis}
  airflow-worker-1: {environment: {AIRFLOW__CELERY__WORKER_CONCURRENCY: "2", LANG: C.UTF-8}}
  airflow-worker-2: {environment: {AIRFLOW__CELERY__WORKER_CONCURRENCY: "2", LANG: C.UTF-8}}
EOF
# the official image sets LANG=C.UTF-8; the stand-in does not
for s in airflow-init airflow-apiserver airflow-scheduler airflow-dag-processor airflow-triggerer-1 airflow-triggerer-2; do
  echo "  $s: {environment: {LANG: C.UTF-8}}" >> "$WORK/override.yaml"
done
export AIRFLOW_IMAGE_NAME=resilience-airflow:smoke AIRFLOW_UID=50000
# vfs copies the 1.3 GB image for every container: creating five at once takes minutes, not compose's 60 s
export COMPOSE_HTTP_TIMEOUT=900  # (COMPOSE_PARALLEL_LIMIT=3 made 1.29.2 hang before its first create call)
compose config -q
compose up -d --no-build > "$WORK/compose-up.log" 2>&1 || { tail -30 "$WORK/compose-up.log"; exit 1; }
say "docker-compose up returned (it waits for airflow-init and the healthy dependencies)"

services=$(compose config --services | grep -vx -e airflow-cli -e lab -e airflow-worker-lab -e airflow-triggerer-lab)
deadline=$(($(date +%s) + 600))
while :; do
  pending=()
  for s in $services; do
    id=$(compose ps -q "$s")
    state=$($DOCKER inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}} {{.State.ExitCode}}' "$id")
    case "$s:$state" in
      airflow-init:"exited  0") ;;
      airflow-init:exited*) echo "airflow-init failed: $state" >&2; exit 1 ;;
      *:"running healthy "*) ;;
      *) pending+=("$s=$state") ;;
    esac
  done
  [ ${#pending[@]} -eq 0 ] && break
  [ "$(date +%s)" -lt "$deadline" ] || { echo "not healthy after 600 s: ${pending[*]}" >&2; exit 1; }
  sleep 5
done
say "all $(wc -w <<< "$services") services healthy, airflow-init exited 0"

cli() { compose exec -T airflow-scheduler airflow "$@" 2> /dev/null; }
# the CLI prints a graphviz warning on stdout first: the JSON is the last line
errors=$(cli dags list-import-errors -o json | tail -1)
dags=$(cli dags list -o plain | grep -c -E '^(chaos|dr_|emergency|postmortem|slo)' || true)
say "DAGs listed: $dags, import errors: $errors"
if [ "$errors" != "[]" ] || [ "$dags" -ne 8 ]; then echo "expected 8 DAGs and no import error" >&2; exit 1; fi

deadline=$(($(date +%s) + 600))
until cli dags list-runs chaos_abort -o plain | grep -q ' success '; do
  if cli dags list-runs chaos_abort -o plain | grep -q ' failed '; then
    cli dags list-runs chaos_abort -o plain >&2; echo "chaos_abort failed" >&2; exit 1
  fi
  [ "$(date +%s)" -lt "$deadline" ] || { echo "no successful chaos_abort run in 600 s" >&2; exit 1; }
  sleep 5
done
worker=$(compose logs --no-color airflow-worker-1 airflow-worker-2 | grep -m1 -o 'airflow-worker-[12].*chaos_abort' | cut -c1-16 || true)
say "chaos_abort ran and succeeded (Celery: ${worker:-see compose.log})"
say "PASS"
