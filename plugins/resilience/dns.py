"""Traffic between regions as Route53 weighted records, through the Amazon provider's AWS hook.

One record name (the API's) has two weighted records, ``primary`` and ``dr`` (their
SetIdentifiers), of one type: ``A``/``AAAA``/``CNAME`` with values and a TTL, or ``A``/``AAAA``
alias records that point at a load balancer (what an EKS ingress or service gets). A change
rewrites each region's record exactly as it was found, only its ``Weight`` differs. Every change
names the zone and the record in the log before it is made.

Alias semantics, from the Route53 API reference
(https://docs.aws.amazon.com/Route53/latest/APIReference/API_ResourceRecordSet.html and
https://docs.aws.amazon.com/Route53/latest/APIReference/API_AliasTarget.html): an alias record
has an ``AliasTarget`` (``HostedZoneId``, ``DNSName``, ``EvaluateTargetHealth``) and neither
``TTL`` nor ``ResourceRecords``; Route53 answers with the target's own TTL (60 s, fixed, for an
ELB load balancer). ``EvaluateTargetHealth`` true makes Route53 skip a weighted alias record
whose load balancer has no healthy targets, so it is the owner's choice and is kept as found.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

REGIONS = ("primary", "dr")
RECORD_TYPES = ("A", "AAAA", "CNAME")
ELB_ALIAS_TTL_S = 60  # what resolvers cache for an alias to a load balancer (the record has no TTL)


@dataclass(frozen=True)
class RecordValues:
    """A region's record with its own answer: ``ResourceRecords`` and a ``TTL``."""

    type: str
    values: tuple[str, ...]
    ttl_s: int
    health_check_id: str | None = None

    def __post_init__(self) -> None:
        _check_type(self.type)
        if not self.values or (self.type == "CNAME" and len(self.values) != 1):
            raise ValueError(f"values: {self.values!r} must be one value for CNAME, one or more for A/AAAA")
        if self.ttl_s < 0:
            raise ValueError(f"ttl_s: {self.ttl_s!r} must be >= 0")

    def record_set_fields(self) -> dict[str, Any]:
        return {"TTL": self.ttl_s, "ResourceRecords": [{"Value": v} for v in self.values]}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "values": list(self.values)}


@dataclass(frozen=True)
class AliasTarget:
    """A region's alias record: Route53 answers for ``dns_name`` (a load balancer, usually); no TTL."""

    type: str
    hosted_zone_id: str  # the target's zone (the load balancer's canonical zone), not ours
    dns_name: str
    evaluate_target_health: bool
    health_check_id: str | None = None

    def __post_init__(self) -> None:
        _check_type(self.type)
        if not self.hosted_zone_id or not self.dns_name:
            raise ValueError(f"alias target: hosted_zone_id {self.hosted_zone_id!r} and dns_name {self.dns_name!r} "
                             "must both be set")

    def record_set_fields(self) -> dict[str, Any]:
        return {"AliasTarget": {"HostedZoneId": self.hosted_zone_id, "DNSName": self.dns_name,
                                "EvaluateTargetHealth": self.evaluate_target_health}}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RegionTarget = RecordValues | AliasTarget


def _check_type(record_type: str) -> None:
    if record_type not in RECORD_TYPES:
        raise ValueError(f"type: {record_type!r} is not one of {list(RECORD_TYPES)}")


def region_target_from_dict(raw: Mapping[str, Any]) -> RegionTarget:
    """The inverse of ``to_dict()`` (an alias target is the one with a ``dns_name``)."""
    if "dns_name" in raw:
        return AliasTarget(**raw)
    return RecordValues(**{**raw, "values": tuple(raw["values"])})


@dataclass(frozen=True)
class WeightedRecord:
    """The two regions' weighted records of one name in one zone, each target as Route53 has it."""

    zone_id: str
    name: str  # fully qualified, with the trailing dot, as Route53 spells it
    targets: dict[str, RegionTarget]  # region -> its record's answer

    def __post_init__(self) -> None:
        if set(self.targets) != set(REGIONS):
            raise ValueError(f"targets: regions {sorted(self.targets)} must be exactly {sorted(REGIONS)}")
        types = {region: t.type for region, t in self.targets.items()}
        if len(set(types.values())) != 1:
            raise ValueError(f"targets: {types} must be one record type (a weighted group is one name and type)")

    @property
    def type(self) -> str:
        return self.targets["primary"].type

    @property
    def ttl(self) -> int:
        """Seconds a resolver may keep a region's answer after a change (the longest of the two)."""
        return max(t.ttl_s if isinstance(t, RecordValues) else ELB_ALIAS_TTL_S for t in self.targets.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (trigger kwargs, XCom); :meth:`from_dict` reads it back."""
        return {"zone_id": self.zone_id, "name": self.name,
                "targets": {region: t.to_dict() for region, t in self.targets.items()}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WeightedRecord:
        """Reads :meth:`to_dict` (or ``asdict``) output, and the A-only shape of earlier releases
        (``targets`` region -> IP, one ``ttl``), which a deferred trigger may still carry."""
        keys = set(raw)
        targets = raw.get("targets") or {}
        if keys <= {"zone_id", "name", "targets", "ttl"} and all(isinstance(t, str) for t in targets.values()):
            ttl_s = int(raw.get("ttl", 30))
            return cls(raw["zone_id"], raw["name"],
                       {region: RecordValues("A", (ip,), ttl_s) for region, ip in targets.items()})
        if keys != {"zone_id", "name", "targets"}:
            raise ValueError(f"record: keys {sorted(keys)} must be ['name', 'targets', 'zone_id']")
        return cls(raw["zone_id"], raw["name"],
                   {region: region_target_from_dict(t) for region, t in targets.items()})


def weights_change(record: WeightedRecord, weights: dict[str, int]) -> dict[str, Any]:
    """The ``ChangeBatch`` that UPSERTs both weighted records, each as found but for its weight (pure)."""
    if set(weights) != set(REGIONS) or any(not 0 <= w <= 255 for w in weights.values()):
        raise ValueError(f"weights: {weights!r} must give primary and dr a weight in 0..255")
    if sum(weights.values()) == 0:
        raise ValueError("weights: both 0 would answer no region at all")
    return {
        "Comment": f"resilience: {record.name} primary={weights['primary']} dr={weights['dr']}",
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": _record_set(record, region, weights[region])}
                    for region in REGIONS],
    }


def _record_set(record: WeightedRecord, region: str, weight: int) -> dict[str, Any]:
    target = record.targets[region]
    record_set = {"Name": record.name, "Type": target.type, "SetIdentifier": region, "Weight": weight,
                  **target.record_set_fields()}
    if target.health_check_id:  # an UPSERT without it would drop the region's health check
        record_set["HealthCheckId"] = target.health_check_id
    return record_set


def same_name(a: str, b: str) -> bool:
    """DNS names compare case-insensitively, with or without the trailing dot; Route53 returns
    characters outside a-z0-9- as octal escapes (``*`` is ``\\052``)."""
    return _canonical(a) == _canonical(b)


def _canonical(name: str) -> str:
    unescaped = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), name)
    return unescaped.lower().rstrip(".") + "."


def region_target(record_set: Mapping[str, Any]) -> RegionTarget:
    """One ``ResourceRecordSet`` of ``list_resource_record_sets`` as a region's target."""
    health_check_id = record_set.get("HealthCheckId")
    alias = record_set.get("AliasTarget")
    if alias:
        return AliasTarget(record_set["Type"], alias["HostedZoneId"], alias["DNSName"],
                           bool(alias["EvaluateTargetHealth"]), health_check_id)
    return RecordValues(record_set["Type"], tuple(r["Value"] for r in record_set.get("ResourceRecords", [])),
                        int(record_set["TTL"]), health_check_id)


def weighted_targets(record_sets: Iterable[Mapping[str, Any]], name: str, zone: str) -> dict[str, RegionTarget]:
    """Each region's target among a listing's record sets, or a refusal saying what was found (pure).

    Exactly one weighted record per region, both of one type among A/AAAA/CNAME: a dual-stack name
    (A and AAAA per region) is refused rather than half moved."""
    found: dict[str, list[Mapping[str, Any]]] = {region: [] for region in REGIONS}
    for record_set in record_sets:
        if same_name(record_set["Name"], name) and record_set.get("SetIdentifier") in found:
            found[record_set["SetIdentifier"]].append(record_set)
    sets = [s[0] for s in found.values() if len(s) == 1]
    if (len(sets) != len(REGIONS) or len({s["Type"] for s in sets}) != 1 or sets[0]["Type"] not in RECORD_TYPES
            or any("Weight" not in s for s in sets)):
        seen = ", ".join(f"{region}={'+'.join(map(_describe, sets_)) or 'none'}" for region, sets_ in found.items())
        raise ValueError(f"dr.dns.record: {name!r} in zone {zone} needs one weighted record per region "
                         f"{list(REGIONS)} (SetIdentifier), both of one type among {list(RECORD_TYPES)}; "
                         f"found {seen}")
    return {region: region_target(s[0]) for region, s in found.items()}


def _describe(record_set: Mapping[str, Any]) -> str:
    alias = " alias" if record_set.get("AliasTarget") else ""
    weighted = "" if "Weight" in record_set else " (not weighted)"
    return f"{record_set['Type']}{alias}{weighted}"


def _route53(aws_conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="route53").get_conn()


def _record_sets_of(client: Any, zone_id: str, name: str, record_type: str | None = None) -> list[Mapping[str, Any]]:
    """The zone's record sets from ``name`` (and ``record_type``) on, page by page while still at ``name``.

    The listing is ordered by name then type and starts *at* the given name and type, so a start
    type (``A``) must not be given when the record may be a CNAME or AAAA: hence None for a lookup."""
    start: dict[str, str] = {"StartRecordName": _canonical(name)}
    if record_type:
        start["StartRecordType"] = record_type
    record_sets: list[Mapping[str, Any]] = []
    while True:
        page = client.list_resource_record_sets(HostedZoneId=zone_id, **start)
        record_sets.extend(page["ResourceRecordSets"])
        if not page.get("IsTruncated") or not same_name(page["NextRecordName"], name):
            return record_sets
        start = {"StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"]}
        if page.get("NextRecordIdentifier"):
            start["StartRecordIdentifier"] = page["NextRecordIdentifier"]


class Route53Weights:
    """Read and set the two regions' weights of one record."""

    def __init__(self, aws_conn_id: str, record: WeightedRecord) -> None:
        self.aws_conn_id = aws_conn_id
        self.record = record

    @classmethod
    def lookup(cls, aws_conn_id: str, zone: str, name: str) -> Route53Weights:
        """Find the hosted zone by name and the regions' current targets (the change keeps them)."""
        client = _route53(aws_conn_id)
        zones = [z for z in client.list_hosted_zones_by_name(DNSName=zone)["HostedZones"] if same_name(z["Name"], zone)]
        if not zones:
            raise ValueError(f"dr.dns.zone: hosted zone {zone!r} not found through Connection {aws_conn_id!r}")
        zone_id = zones[0]["Id"].split("/")[-1]
        record_sets = _record_sets_of(client, zone_id, name)
        targets = weighted_targets(record_sets, name, zone)
        found_name = next(s["Name"] for s in record_sets if same_name(s["Name"], name))
        return cls(aws_conn_id, WeightedRecord(zone_id, found_name, targets))

    def describe(self) -> str:
        alias = " alias" if any(isinstance(t, AliasTarget) for t in self.record.targets.values()) else ""
        return f"zone {self.record.zone_id} record {self.record.name} ({self.record.type}{alias})"

    def _client(self) -> Any:
        return _route53(self.aws_conn_id)

    def weights(self) -> dict[str, int]:
        """Current weight per region (0 for a region that has no record yet)."""
        found = {region: 0 for region in REGIONS}
        for record_set in _record_sets_of(self._client(), self.record.zone_id, self.record.name, self.record.type):
            if (same_name(record_set["Name"], self.record.name) and record_set["Type"] == self.record.type
                    and record_set.get("SetIdentifier") in found):
                found[record_set["SetIdentifier"]] = int(record_set.get("Weight", 0))
        return found

    def set_weights(self, primary: int, dr: int) -> dict[str, int]:
        """UPSERT both records; returns the weights read back afterwards."""
        change = weights_change(self.record, {"primary": primary, "dr": dr})
        log.info("Route53 zone %s: setting %s %s weights primary=%d dr=%d", self.record.zone_id, self.record.type,
                 self.record.name, primary, dr)
        self._client().change_resource_record_sets(HostedZoneId=self.record.zone_id, ChangeBatch=change)
        return self.weights()
