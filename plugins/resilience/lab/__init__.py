"""The local lab: real servers on 127.0.0.1 under one directory (``resilience lab up|down|status|env``).

Modules, one job each:

- ``layout``      lab dir, settings (replicas, load rate), port plan (base+0 control DB, +1/+2 app
                  nodes a/b, +3 Redis, +4 moto, +5 S3 fault proxy, +6 supervisor metrics, +8 DR
                  supervisor metrics, +9 load generator metrics, +10 load balancer (127.0.0.1, and
                  the DR region's on 127.0.0.2), +11..+19 app replicas, +20 Prometheus, +21..+29 DR
                  region replicas, +30/+31 etcd, +32/+33 Patroni REST APIs, +40.. DR sandboxes), regions, paths
- ``state``       ``lab.json``, the contract other code reads: ``load_lab_state()``
- ``control``     primitives the chaos faults and DR DAGs call (kill a replica, stop Redis, S3 faults,
                  crash/start a database node, acknowledged writes lost, memory hogs, the DR region, isolate a
                  region, region health, app releases)
- ``regions`` / ``releases`` / ``dns_zone``   the DR region on demand, entry points, rolling
                  deploys; release histories per region; the Route53 zone on moto and its records
- ``bringup`` / ``teardown`` / ``status``   ``lab_up()``, ``lab_down()``, ``lab_status()``
- ``preflight``   tools, lab dir reachable by the server users, free ports (before anything starts)
- ``postgres``    one cluster: initdb, config, start/stop, databases
- ``patroni_cluster``   the app database as a Patroni cluster (nodes a/b, one etcd member): each
                  node's patroni.yml, start/stop/crash a node; roles change through Patroni's REST API
- ``pg_roles`` / ``pg_replication``   which node leads (Patroni's answer, remembered), replication probes
- ``pgbackrest_setup``   the POSIX repo, stanza ``app``, archive/restore commands, backups, check
- ``prometheus_server``  Prometheus (as ``nobody``) from ``include/prometheus/``, with the alert rules
- ``redis_server``       Redis (AOF everysec)
- ``s3_server`` / ``s3_proxy``   moto (S3) and the fault proxy in front of it
- ``fleet`` / ``supervisor`` / ``lb`` / ``lab_exporter``   the app replicas, the supervisor that
                  restarts them (and probes the components), the load balancer
- ``writer`` / ``loadgen`` / ``workload``   database writer, HTTP load generator (resolves the
                  region through DNS), their start/stop
- ``app`` / ``app_handlers`` / ``app_db`` / ``app_cache`` / ``app_s3`` / ``app_metrics`` /
  ``app_process``   the demo app and running it anywhere
- ``memhog``      stress-ng in a memory-limited cgroup (v1)
- ``osuser``      run a command as the postgres OS user when root
- ``daemons``     start a daemon with a pid file, stop it without hitting a reused PID

Importing this package imports nothing else (the CLI stays fast).
"""
