"""Route53 weighted records through the Amazon provider's hook, against the lab's moto server.

Each test makes its own zone; the records are created with a boto3 client of our own (as an EKS
ingress controller or Terraform would), then found, moved and read back through the Connection.
"""

from __future__ import annotations

import json
import re
import uuid

import boto3
import pytest

from resilience.dns import AliasTarget, RecordValues, Route53Weights, WeightedRecord

pytestmark = pytest.mark.integration

CONN = "resilience_lab_aws"
ELB_ZONE = "Z35SXDOTRQ7X7K"  # us-east-1 ALB/CLB canonical hosted zone


@pytest.fixture
def zone(lab):
    """A fresh hosted zone: (our own client, zone id, zone name)."""
    aws = json.loads(lab["connections"][CONN])
    client = boto3.client("route53", endpoint_url=aws["extra"]["endpoint_url"], region_name="us-east-1",
                          aws_access_key_id=aws["login"], aws_secret_access_key=aws["password"])
    created = client.create_hosted_zone(Name=f"ofm-{uuid.uuid4().hex[:6]}.test.", CallerReference=uuid.uuid4().hex)
    return client, created["HostedZone"]["Id"].split("/")[-1], created["HostedZone"]["Name"]


def put(client, zone_id, *record_sets):
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": s} for s in record_sets]})


def listed(client, zone_id, name):
    """The record sets of ``name`` with a SetIdentifier, by SetIdentifier, as Route53 lists them."""
    sets = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {s["SetIdentifier"]: s for s in sets if s["Name"] == name and s.get("SetIdentifier")}


def elb_alias(region, evaluate):
    return {"AliasTarget": {"HostedZoneId": ELB_ZONE, "EvaluateTargetHealth": evaluate,
                            "DNSName": f"dualstack.k8s-app-{region}-0123456789.us-east-1.elb.amazonaws.com."}}


def alias_target(record_type, region, evaluate):
    return AliasTarget(record_type, ELB_ZONE, f"dualstack.k8s-app-{region}-0123456789.us-east-1.elb.amazonaws.com.",
                       evaluate)


# kind -> (Type, per-region record fields, the targets lookup must find)
KINDS = {
    "A-alias": ("A", {"primary": elb_alias("primary", True), "dr": elb_alias("dr", False)},
                {"primary": alias_target("A", "primary", True), "dr": alias_target("A", "dr", False)}),
    "AAAA-alias": ("AAAA", {"primary": elb_alias("primary", False), "dr": elb_alias("dr", True)},
                   {"primary": alias_target("AAAA", "primary", False), "dr": alias_target("AAAA", "dr", True)}),
    "CNAME": ("CNAME", {"primary": {"TTL": 60, "ResourceRecords": [{"Value": "app.primary.example.com"}]},
                        "dr": {"TTL": 60, "ResourceRecords": [{"Value": "app.dr.example.com"}]}},
              {"primary": RecordValues("CNAME", ("app.primary.example.com",), 60),
               "dr": RecordValues("CNAME", ("app.dr.example.com",), 60)}),
    "A-two-values": ("A", {"primary": {"TTL": 5, "ResourceRecords": [{"Value": "127.0.0.1"}, {"Value": "127.0.0.3"}]},
                           "dr": {"TTL": 5, "ResourceRecords": [{"Value": "127.0.0.2"}]}},
                     {"primary": RecordValues("A", ("127.0.0.1", "127.0.0.3"), 5),
                      "dr": RecordValues("A", ("127.0.0.2",), 5)}),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_weights_move_and_each_region_keeps_its_target_exactly(zone, kind):
    client, zone_id, zone_name = zone
    record_type, fields, targets = KINDS[kind]
    name = f"api.{zone_name}"
    put(client, zone_id, *({"Name": name, "Type": record_type, "SetIdentifier": region, "Weight": weight,
                            **fields[region]} for region, weight in (("primary", 100), ("dr", 0))))
    before = listed(client, zone_id, name)

    dns = Route53Weights.lookup(CONN, zone_name, name.upper().rstrip("."))  # names compare without case or dot
    assert dns.record == WeightedRecord(zone_id, name, targets)
    assert dns.weights() == {"primary": 100, "dr": 0}
    # as a deferred trigger has it: through JSON and back
    dns = Route53Weights(CONN, WeightedRecord.from_dict(json.loads(json.dumps(dns.record.to_dict()))))
    assert dns.set_weights(primary=10, dr=90) == {"primary": 10, "dr": 90}

    after = listed(client, zone_id, name)
    assert after == {region: {**s, "Weight": {"primary": 10, "dr": 90}[region]} for region, s in before.items()}
    if kind.endswith("alias"):  # Route53 refuses a TTL on an alias record; the UPSERT sent none
        assert not any("TTL" in s or "ResourceRecords" in s for s in after.values())


def test_a_health_check_on_a_region_survives_the_change(zone):
    client, zone_id, zone_name = zone
    check = client.create_health_check(CallerReference=uuid.uuid4().hex, HealthCheckConfig={
        "IPAddress": "127.0.0.1", "Port": 80, "Type": "HTTP", "ResourcePath": "/health"})["HealthCheck"]["Id"]
    name = f"api.{zone_name}"
    put(client, zone_id,
        {"Name": name, "Type": "CNAME", "SetIdentifier": "primary", "Weight": 0, "TTL": 30, "HealthCheckId": check,
         "ResourceRecords": [{"Value": "app.primary.example.com"}]},
        {"Name": name, "Type": "CNAME", "SetIdentifier": "dr", "Weight": 100, "TTL": 30,
         "ResourceRecords": [{"Value": "app.dr.example.com"}]})
    dns = Route53Weights.lookup(CONN, zone_name, name)
    assert dns.set_weights(primary=100, dr=0) == {"primary": 100, "dr": 0}
    assert listed(client, zone_id, name)["primary"]["HealthCheckId"] == check


def test_set_and_read_weights_of_records_not_created_yet(zone):
    client, zone_id, zone_name = zone
    rec = WeightedRecord(zone_id, f"api.{zone_name}", {"primary": RecordValues("A", ("127.0.0.1",), 30),
                                                       "dr": RecordValues("A", ("127.0.0.2",), 30)})
    dns = Route53Weights(CONN, rec)
    assert dns.weights() == {"primary": 0, "dr": 0}
    assert dns.set_weights(primary=10, dr=90) == {"primary": 10, "dr": 90}
    assert dns.set_weights(primary=100, dr=0) == {"primary": 100, "dr": 0}
    weighted = {r: (s["Weight"], s["TTL"], s["ResourceRecords"]) for r, s in listed(client, zone_id, rec.name).items()}
    assert weighted == {"primary": (100, 30, [{"Value": "127.0.0.1"}]), "dr": (0, 30, [{"Value": "127.0.0.2"}])}


@pytest.mark.parametrize(
    ("records", "found"),
    [([("primary", "A", elb_alias("primary", True)),
       ("dr", "CNAME", {"TTL": 60, "ResourceRecords": [{"Value": "app.dr.example.com"}]})],
      "found primary=A alias, dr=CNAME"),
     ([("primary", "A", elb_alias("primary", True))], "found primary=A alias, dr=none"),
     ([(r, t, elb_alias(r, False)) for r in ("primary", "dr") for t in ("A", "AAAA")],  # dual-stack: one type only
      "found primary=A alias+AAAA alias, dr=A alias+AAAA alias")],
    ids=["types-differ", "dr-missing", "dual-stack"],
)
def test_lookup_refuses_naming_the_record_the_zone_and_what_it_found(zone, records, found):
    client, zone_id, zone_name = zone
    name = f"api.{zone_name}"
    put(client, zone_id, *({"Name": name, "Type": t, "SetIdentifier": r, "Weight": 50, **fields}
                           for r, t, fields in records))
    with pytest.raises(ValueError, match=re.escape(f"dr.dns.record: {name!r} in zone {zone_name} needs one weighted "
                                                   "record per region ['primary', 'dr']")) as refused:
        Route53Weights.lookup(CONN, zone_name, name)
    assert str(refused.value).endswith(found)
