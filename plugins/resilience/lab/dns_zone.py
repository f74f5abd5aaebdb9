"""The lab's DNS: a Route53 hosted zone on moto holding the API's two weighted A records.

Zone ``resilience.lab.``, record ``api.resilience.lab.``: SetIdentifier ``primary`` (127.0.0.1)
and ``dr`` (127.0.0.2), TTL 1 s, created with weights 100 / 0. moto serves the Route53 API, not
the DNS protocol: a client "resolves" by reading the records (``list_resource_record_sets``) every
TTL, as the load generator does, and picks a region per request in proportion to the weights.

``lab up`` creates what is missing and never touches weights that exist: running it again must
not undo a cutover. moto keeps state in memory only, so after a moto restart ``up`` creates the
zone again (with another id: ``run/dns.json`` and lab.json follow).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from resilience.lab.layout import (
    DNS_RECORD,
    DNS_TTL_S,
    DNS_ZONE,
    REGION_HOSTS,
    REGIONS,
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    LabLayout,
)

log = logging.getLogger(__name__)

INITIAL_WEIGHTS = {"primary": 100, "dr": 0}
HOSTED_ZONE_PREFIX = "/hostedzone/"


def same_name(a: str, b: str) -> bool:
    """DNS names compare case-insensitively, with or without the trailing dot."""
    return a.rstrip(".").lower() == b.rstrip(".").lower()


def parse_weighted(rrsets: Iterable[Mapping[str, Any]], record: str) -> dict[str, tuple[str, int]]:
    """``{set_identifier: (address, weight)}`` of the weighted A records named ``record`` (pure)."""
    found: dict[str, tuple[str, int]] = {}
    for rrset in rrsets:
        identifier, values = rrset.get("SetIdentifier"), rrset.get("ResourceRecords") or []
        if rrset.get("Type") != "A" or not same_name(str(rrset.get("Name", "")), record) or not identifier \
                or not values or "Weight" not in rrset:
            continue
        found[str(identifier)] = (str(values[0]["Value"]), int(rrset["Weight"]))
    return found


def record_changes(regions: Iterable[str], record: str = DNS_RECORD, ttl_s: int = DNS_TTL_S,
                   weights: Mapping[str, int] = INITIAL_WEIGHTS) -> dict[str, Any]:
    """The ``ChangeBatch`` that creates (UPSERTs) the weighted records of ``regions`` (pure)."""
    return {"Comment": f"resilience lab: {record} for {', '.join(regions)}", "Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": record, "Type": "A", "SetIdentifier": region, "Weight": int(weights[region]), "TTL": ttl_s,
            "ResourceRecords": [{"Value": REGION_HOSTS[region]}]}}
        for region in regions]}


def route53_client(endpoint: str, timeout_s: float = 2.0, attempts: int = 1,
                   credentials: tuple[str, str] | None = (S3_ACCESS_KEY, S3_SECRET_KEY)) -> Any:
    """A boto3 Route53 client on moto with short timeouts. ``credentials=None``: the keys come from the
    environment (``$AWS_ACCESS_KEY_ID`` ...), as for a daemon that must not carry them in argv."""
    import boto3
    from botocore.config import Config

    keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]} if credentials else {}
    return boto3.client("route53", endpoint_url=endpoint, region_name=S3_REGION, **keys,
                        config=Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                                      retries={"max_attempts": attempts, "mode": "standard"}))


def find_zone_id(client: Any, zone_name: str = DNS_ZONE) -> str | None:
    """The id (without ``/hostedzone/``) of the zone named ``zone_name``, or None."""
    zones = client.list_hosted_zones_by_name(DNSName=zone_name)["HostedZones"]
    ids = sorted(z["Id"] for z in zones if same_name(z["Name"], zone_name))
    return ids[0].removeprefix(HOSTED_ZONE_PREFIX) if ids else None


def read_weighted(client: Any, zone_id: str, record: str = DNS_RECORD) -> dict[str, tuple[str, int]]:
    """The record's weighted answers as Route53 holds them now."""
    response = client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=record, StartRecordType="A")
    return parse_weighted(response["ResourceRecordSets"], record)


def recorded_zone_id(layout: LabLayout) -> str | None:
    """The zone id ``lab up`` last saw (``run/dns.json``), None before the first ``up``."""
    try:
        return str(json.loads(layout.dns_file.read_text())["zone_id"])
    except (FileNotFoundError, ValueError, KeyError):
        return None


def dns_state(layout: LabLayout) -> dict[str, Any]:
    """The lab.json ``dns`` block (pure apart from reading ``run/dns.json``)."""
    return {"zone_name": DNS_ZONE, "zone_id": recorded_zone_id(layout), "record": DNS_RECORD,
            "targets": {region: REGION_HOSTS[region] for region in REGIONS}, "port": layout.port("lb"),
            "aws_endpoint": layout.url("moto"), "ttl_s": DNS_TTL_S}


def ensure_zone(layout: LabLayout) -> dict[str, Any]:
    """Create the zone and the missing weighted records on moto (existing weights are kept); return
    the ``dns`` block. moto must be up (its first Route53 call loads the backend: slow on a busy machine)."""
    client = route53_client(layout.url("moto"), timeout_s=10.0, attempts=3)
    zone_id = find_zone_id(client)
    if zone_id is None:
        created = client.create_hosted_zone(Name=DNS_ZONE, CallerReference=f"resilience-lab-{time.time_ns()}")
        zone_id = created["HostedZone"]["Id"].removeprefix(HOSTED_ZONE_PREFIX)
        log.info("Created Route53 hosted zone %s (id %s) on %s", DNS_ZONE, zone_id, layout.url("moto"))
    existing = read_weighted(client, zone_id)
    missing = [region for region in REGIONS if region not in existing]
    if missing:
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=record_changes(missing))
        log.info("Created weighted A records %s for %s in zone %s (%s)", DNS_RECORD, ", ".join(missing), zone_id,
                 ", ".join(f"{r}={INITIAL_WEIGHTS[r]} -> {REGION_HOSTS[r]}" for r in missing))
    else:
        log.info("DNS record %s exists in zone %s (weights %s): left as it is", DNS_RECORD, zone_id,
                 ", ".join(f"{r}={existing[r][1]}" for r in REGIONS))
    tmp = layout.dns_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"zone_id": zone_id, "zone_name": DNS_ZONE}) + "\n")
    tmp.replace(layout.dns_file)
    return dns_state(layout)


def set_weights(layout: LabLayout, weights: Mapping[str, int]) -> dict[str, int]:
    """UPSERT the regions' weights (what a cutover does; the lab's own tools and tests use it); return
    the weights read back."""
    zone_id = recorded_zone_id(layout)
    if zone_id is None:
        raise ValueError(f"no DNS zone recorded in {layout.dns_file}: run `resilience lab up`")
    for region, weight in weights.items():
        if region not in REGIONS or isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 255:
            raise ValueError(f"weights: {region}={weight!r} is not a region ({', '.join(REGIONS)}) "
                             f"with a weight in 0..255")
    client = route53_client(layout.url("moto"))
    log.info("Setting %s weights in zone %s: %s", DNS_RECORD, zone_id,
             ", ".join(f"{r}={w}" for r, w in weights.items()))
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=record_changes(list(weights),
                                                                                        weights=weights))
    return {region: weight for region, (_, weight) in read_weighted(client, zone_id).items()}
