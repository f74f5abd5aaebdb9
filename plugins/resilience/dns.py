"""Traffic between regions as Route53 weighted records, through the Amazon provider's AWS hook.

One record name (the API's) has two weighted records, ``primary`` and ``dr`` (their
SetIdentifiers). Every change names the zone and the record in the log before it is made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

REGIONS = ("primary", "dr")


@dataclass(frozen=True)
class WeightedRecord:
    """Where each region's answer points (an A record value) and the record's TTL."""

    zone_id: str
    name: str  # fully qualified, with the trailing dot
    targets: dict[str, str]  # region -> IP address
    ttl: int = 30


def weights_change(record: WeightedRecord, weights: dict[str, int]) -> dict[str, Any]:
    """The ``ChangeBatch`` that UPSERTs both weighted records (pure)."""
    if set(weights) != set(REGIONS) or any(not 0 <= w <= 255 for w in weights.values()):
        raise ValueError(f"weights: {weights!r} must give primary and dr a weight in 0..255")
    if sum(weights.values()) == 0:
        raise ValueError("weights: both 0 would answer no region at all")
    return {
        "Comment": f"resilience: {record.name} primary={weights['primary']} dr={weights['dr']}",
        "Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {
                "Name": record.name, "Type": "A", "SetIdentifier": region, "Weight": weights[region],
                "TTL": record.ttl, "ResourceRecords": [{"Value": record.targets[region]}]}}
            for region in REGIONS
        ],
    }


def _route53(aws_conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="route53").get_conn()


class Route53Weights:
    """Read and set the two regions' weights of one record."""

    def __init__(self, aws_conn_id: str, record: WeightedRecord) -> None:
        self.aws_conn_id = aws_conn_id
        self.record = record

    @classmethod
    def lookup(cls, aws_conn_id: str, zone: str, name: str) -> Route53Weights:
        """Find the hosted zone by name and the regions' current targets (the change keeps them)."""
        client = _route53(aws_conn_id)
        zones = [z for z in client.list_hosted_zones_by_name(DNSName=zone)["HostedZones"] if z["Name"] == zone]
        if not zones:
            raise ValueError(f"dr.dns.zone: hosted zone {zone!r} not found through Connection {aws_conn_id!r}")
        zone_id = zones[0]["Id"].split("/")[-1]
        rrsets = client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=name,
                                                  StartRecordType="A")["ResourceRecordSets"]
        targets = {s["SetIdentifier"]: s["ResourceRecords"][0]["Value"] for s in rrsets
                   if s["Name"] == name and s.get("SetIdentifier") in REGIONS and s.get("ResourceRecords")}
        if set(targets) != set(REGIONS):
            raise ValueError(f"dr.dns.record: {name!r} in zone {zone} needs weighted A records "
                             f"{list(REGIONS)} (SetIdentifier); found {sorted(targets)}")
        ttl = int(next(s.get("TTL", 30) for s in rrsets if s["Name"] == name))
        return cls(aws_conn_id, WeightedRecord(zone_id, name, targets, ttl))

    def describe(self) -> str:
        return f"zone {self.record.zone_id} record {self.record.name}"

    def _client(self) -> Any:
        return _route53(self.aws_conn_id)

    def weights(self) -> dict[str, int]:
        """Current weight per region (0 for a region that has no record yet)."""
        found = {region: 0 for region in REGIONS}
        response = self._client().list_resource_record_sets(
            HostedZoneId=self.record.zone_id, StartRecordName=self.record.name, StartRecordType="A")
        for rrset in response["ResourceRecordSets"]:
            if rrset["Name"] == self.record.name and rrset.get("SetIdentifier") in found:
                found[rrset["SetIdentifier"]] = int(rrset.get("Weight", 0))
        return found

    def set_weights(self, primary: int, dr: int) -> dict[str, int]:
        """UPSERT both records; returns the weights read back afterwards."""
        change = weights_change(self.record, {"primary": primary, "dr": dr})
        log.info("Route53 zone %s: setting %s weights primary=%d dr=%d", self.record.zone_id, self.record.name,
                 primary, dr)
        self._client().change_resource_record_sets(HostedZoneId=self.record.zone_id, ChangeBatch=change)
        return self.weights()
