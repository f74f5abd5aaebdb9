"""TLS in front of the lab's moto S3 server: one ``stunnel4`` daemon, one service per region endpoint.

pgBackRest cannot use moto's own HTTPS (moto does not close TLS cleanly and pgBackRest's PUTs
fail), so moto stays on plain HTTP and stunnel terminates TLS with the lab CA's server
certificate. Each region gets its own endpoint, as a real two-region setup would: the primary
region on 127.0.0.1 and the DR region on 127.0.0.2, both at port base + :data:`S3_TLS_PORT_OFFSET`
(the lab's convention: regions differ by address, not port), both forwarding to the same moto.
Buckets are per region (``resilience-backups-<aws region>``) and created with boto3, since
pgBackRest does not create buckets and moto forgets everything when it stops.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resilience.lab.daemons import is_alive, log_tail, running_pid, start_daemon, stop_daemon, wait_for
from resilience.lab.errors import LabError, PreflightError
from resilience.lab.lab_ca import SERVER_DNS_NAMES, CaFiles
from resilience.lab.layout import DR_HOST, HOST, S3_ACCESS_KEY, S3_SECRET_KEY, LabLayout

log = logging.getLogger(__name__)

STUNNEL = "s3-tls"  # pid/log file name under the lab's run dir
TITLE = "S3 TLS terminator (stunnel)"
S3_TLS_PORT_OFFSET = 7  # free in layout.PORT_OFFSETS (between supervisor 6 and dr_supervisor 8)
BUCKET_PREFIX = "resilience-backups-"
REGION_AWS = {"primary": "us-east-1", "dr": "us-west-2"}
REGION_ACCEPT_HOST = {"primary": HOST, "dr": DR_HOST}


@dataclass(frozen=True)
class RegionEndpoint:
    """One region's S3 endpoint: where stunnel accepts TLS, and the region's backup bucket."""

    lab_region: str  # "primary" / "dr"
    aws_region: str  # us-east-1 / us-west-2
    host: str  # address stunnel listens on (127.0.0.1 / 127.0.0.2)
    port: int

    @property
    def bucket(self) -> str:
        return bucket_name(self.aws_region)

    @property
    def service(self) -> str:
        """The stunnel service name."""
        return f"s3-{self.lab_region}"

    @property
    def url(self) -> str:
        """The HTTPS endpoint (by address; the certificate names it too)."""
        return f"https://{self.host}:{self.port}"


def bucket_name(aws_region: str) -> str:
    return f"{BUCKET_PREFIX}{aws_region}"


def tls_port(layout: LabLayout) -> int:
    return layout.port_base + S3_TLS_PORT_OFFSET


def region_endpoint(layout: LabLayout, lab_region: str) -> RegionEndpoint:
    return RegionEndpoint(lab_region, REGION_AWS[lab_region], REGION_ACCEPT_HOST[lab_region], tls_port(layout))


def region_endpoints(layout: LabLayout) -> list[RegionEndpoint]:
    """The primary region's and the DR region's endpoints, in that order (pgBackRest repo1, repo2)."""
    return [region_endpoint(layout, region) for region in REGION_AWS]


def conf_file(layout: LabLayout) -> Path:
    return layout.run_dir / f"{STUNNEL}.conf"


def render_stunnel_conf(endpoints: Sequence[RegionEndpoint], upstream_port: int, ca: CaFiles,
                        upstream_host: str = HOST) -> str:
    """stunnel.conf: foreground (so the pid file's PID is stunnel itself), log to stderr, one service
    per endpoint, all forwarding to ``upstream_host:upstream_port`` (moto, plain HTTP)."""
    lines = [
        "; Written by resilience.lab (s3_tls).",
        "foreground = yes",
        "pid =",
        "syslog = no",
        "debug = notice",
        f"cert = {ca.server_cert}",
        f"key = {ca.server_key}",
        "",
    ]
    for endpoint in endpoints:
        lines += [f"[{endpoint.service}]", f"accept = {endpoint.host}:{endpoint.port}",
                  f"connect = {upstream_host}:{upstream_port}", ""]
    return "\n".join(lines)


def stunnel_argv(layout: LabLayout) -> list[str]:
    binary = shutil.which("stunnel4") or shutil.which("stunnel")
    if binary is None:
        raise PreflightError("stunnel4 not found: apt-get install -y stunnel4")
    return [binary, str(conf_file(layout))]


def tls_ready(endpoint: RegionEndpoint, ca_file: Path, timeout_s: float = 1.0) -> bool:
    """True when a verified TLS handshake with ``endpoint`` succeeds (certificate name ``localhost``)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=SERVER_DNS_NAMES[0]):
            return True
    except OSError:  # refused, reset, ssl.SSLError (a subclass)
        return False


def start(layout: LabLayout, endpoints: Sequence[RegionEndpoint], ca: CaFiles, upstream_port: int | None = None,
          timeout_s: float = 10.0) -> int:
    """Start (or keep) stunnel serving ``endpoints``; wait until each one completes a TLS handshake.

    Idempotent: a running stunnel with the same configuration is kept; a changed configuration
    (other endpoints, another upstream) restarts it. Returns stunnel's PID.
    """
    upstream = layout.port("moto") if upstream_port is None else upstream_port
    text = render_stunnel_conf(endpoints, upstream, ca)
    conf = conf_file(layout)
    argv = stunnel_argv(layout)
    pid_file, log_file = layout.pid_file(STUNNEL), layout.log_file(STUNNEL)
    old = conf.read_text() if conf.exists() else None
    pid = running_pid(pid_file)
    if pid is not None and old != text:
        log.info("%s runs another configuration: restarting it", TITLE)
        stop_daemon(pid_file, timeout_s=5, name=TITLE)
        pid = None
    if old != text:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(text)
    if pid is None:
        log.info("Starting %s on %s", TITLE, ", ".join(f"{e.host}:{e.port}" for e in endpoints))
        pid = start_daemon(argv, pid_file, log_file)
    else:
        log.info("%s already up on %s (pid %d)", TITLE, ", ".join(f"{e.host}:{e.port}" for e in endpoints), pid)
    started = pid
    if not wait_for(lambda: not is_alive(started) or all(tls_ready(e, ca.ca_cert) for e in endpoints), timeout_s) \
            or not is_alive(started):
        stop_daemon(pid_file, timeout_s=5, name=TITLE)
        raise LabError(f"{TITLE} did not accept TLS on {', '.join(e.url for e in endpoints)} within "
                       f"{timeout_s:.0f} s\n--- {log_file}:\n{log_tail(log_file)}")
    return pid


def stop(layout: LabLayout) -> bool:
    """Stop stunnel; True if it was running."""
    return stop_daemon(layout.pid_file(STUNNEL), timeout_s=5, name=TITLE)


def ensure_buckets(endpoint_url: str, endpoints: Sequence[RegionEndpoint], *, key: str = S3_ACCESS_KEY,
                   secret: str = S3_SECRET_KEY, verify: Path | bool = True) -> list[str]:
    """Create each endpoint's bucket in its AWS region with boto3 (an existing bucket is fine).

    ``endpoint_url`` is moto's plain-HTTP URL or a TLS endpoint (then ``verify`` is the CA file).
    Returns the bucket names.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    created = []
    for endpoint in endpoints:
        client = boto3.client("s3", endpoint_url=endpoint_url, region_name=endpoint.aws_region,
                              aws_access_key_id=key, aws_secret_access_key=secret,
                              verify=str(verify) if isinstance(verify, Path) else verify,
                              config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
        kwargs: dict[str, object] = {"Bucket": endpoint.bucket}
        if endpoint.aws_region != "us-east-1":  # us-east-1 takes no LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": endpoint.aws_region}
        try:
            client.create_bucket(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise LabError(f"creating bucket {endpoint.bucket} ({endpoint.aws_region}) on {endpoint_url} "
                               f"failed: {exc}") from exc
        log.info("S3 bucket %s (%s) ready on %s", endpoint.bucket, endpoint.aws_region, endpoint_url)
        created.append(endpoint.bucket)
    return created


def serve_regions(layout: LabLayout, ca: CaFiles, lab_regions: Sequence[str] = tuple(REGION_AWS)) -> int:
    """Serve only ``lab_regions``' endpoints (the others refuse connections, as a lost region's S3 would);
    the default serves every region again. Restarts stunnel when that changes what it serves (the
    endpoints it keeps drop their open connections too); returns its PID."""
    unknown = sorted(set(lab_regions) - set(REGION_AWS))
    if unknown or not lab_regions:
        raise LabError(f"lab_regions: {list(lab_regions)} must be a non-empty subset of {list(REGION_AWS)}")
    endpoints = [region_endpoint(layout, region) for region in REGION_AWS if region in lab_regions]
    log.info("%s serves the S3 endpoints of: %s", TITLE, ", ".join(e.lab_region for e in endpoints))
    return start(layout, endpoints, ca)
