"""The local lab: real servers on 127.0.0.1 under one directory (``resilience lab up|down|status|env``).

Modules, one job each:

- ``layout``      lab dir, port plan (base+0 control DB, +1 app primary, +2 replica, +10 demo app,
                  +20 Prometheus, +30.. DR sandboxes) and every path under the lab dir (pure)
- ``state``       ``lab.json``, the contract other code reads: ``load_lab_state()``
- ``bringup`` / ``teardown`` / ``status``   ``lab_up()``, ``lab_down()``, ``lab_status()``
- ``preflight``   tools, lab dir reachable by the server users, free ports (before anything starts)
- ``postgres``    one cluster: initdb, config, start/stop, databases, replica clone
- ``pgbackrest_setup``   the POSIX repo, stanza ``app``, archive_command, first full backup
- ``prometheus_server``  Prometheus (as ``nobody``) from ``include/prometheus/lab/``
- ``writer`` / ``workload``   the continuous writer daemon and its start/stop
- ``app`` / ``app_db`` / ``app_metrics`` / ``app_process``   the demo app and running it anywhere
- ``osuser``      run a command as the postgres OS user when root
- ``daemons``     start a daemon with a pid file, stop it without hitting a reused PID

Importing this package imports nothing else (the CLI stays fast).
"""
