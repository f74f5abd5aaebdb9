"""Route53 weighted records through the Amazon provider's hook, against the lab's moto server."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from resilience.dns import Route53Weights, WeightedRecord, weights_change

pytestmark = pytest.mark.integration


@pytest.fixture
def record(lab):
    aws = json.loads(lab["connections"]["resilience_lab_aws"])
    client = boto3.client("route53", endpoint_url=aws["extra"]["endpoint_url"], region_name="us-east-1",
                          aws_access_key_id=aws["login"], aws_secret_access_key=aws["password"])
    zone = client.create_hosted_zone(Name=f"ofm-{uuid.uuid4().hex[:6]}.test.", CallerReference=uuid.uuid4().hex)
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    name = f"api.{zone['HostedZone']['Name']}"
    return client, WeightedRecord(zone_id, name, {"primary": "127.0.0.1", "dr": "127.0.0.2"})


def test_set_and_read_weights_through_the_provider_hook(record):
    client, rec = record
    dns = Route53Weights("resilience_lab_aws", rec)
    assert dns.weights() == {"primary": 0, "dr": 0}
    assert dns.set_weights(primary=10, dr=90) == {"primary": 10, "dr": 90}
    assert dns.set_weights(primary=100, dr=0) == {"primary": 100, "dr": 0}
    # read back with a client of our own: two weighted A records, as the change said
    sets = client.list_resource_record_sets(HostedZoneId=rec.zone_id)["ResourceRecordSets"]
    weighted = {s["SetIdentifier"]: (s["Weight"], s["ResourceRecords"][0]["Value"]) for s in sets
                if s.get("SetIdentifier")}
    assert weighted == {"primary": (100, "127.0.0.1"), "dr": (0, "127.0.0.2")}


@pytest.mark.parametrize(
    ("weights", "message"),
    [({"primary": 0, "dr": 0}, "both 0"), ({"primary": 300, "dr": 0}, "in 0..255"), ({"primary": 10}, "primary and dr")],
)
def test_bad_weights_are_refused_before_any_change(weights, message):
    rec = WeightedRecord("Z1", "api.ofm.test.", {"primary": "127.0.0.1", "dr": "127.0.0.2"})
    with pytest.raises(ValueError, match=message):
        weights_change(rec, weights)
