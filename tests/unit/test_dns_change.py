"""resilience.dns without Route53: the ChangeBatch, reading a listing, the JSON round trip, paging."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from unittest import mock

import pytest

from resilience.dns import (
    AliasTarget,
    RecordValues,
    Route53Weights,
    WeightedRecord,
    same_name,
    weighted_targets,
    weights_change,
)

ELB_ZONE = "Z35SXDOTRQ7X7K"  # us-east-1 ALB/CLB canonical hosted zone
NAME = "api.ofm.test."


def record(primary, dr):
    return WeightedRecord("Z1", NAME, {"primary": primary, "dr": dr})


A = record(RecordValues("A", ("10.0.0.1", "10.0.0.2"), 30), RecordValues("A", ("10.1.0.1",), 30))
ALIAS = record(AliasTarget("A", ELB_ZONE, "dualstack.p-1.us-east-1.elb.amazonaws.com.", True),
               AliasTarget("A", ELB_ZONE, "dualstack.d-1.us-east-1.elb.amazonaws.com.", False))
AAAA_ALIAS = record(AliasTarget("AAAA", ELB_ZONE, "dualstack.p-1.us-east-1.elb.amazonaws.com.", False),
                    AliasTarget("AAAA", ELB_ZONE, "dualstack.d-1.us-east-1.elb.amazonaws.com.", False))
CNAME = record(RecordValues("CNAME", ("p.example.com",), 60, health_check_id="hc-p"),
               RecordValues("CNAME", ("d.example.com",), 60))


def upsert(region, weight, **fields):
    return {"Action": "UPSERT", "ResourceRecordSet": {"Name": NAME, "SetIdentifier": region, "Weight": weight,
                                                      **fields}}


@pytest.mark.parametrize(
    ("rec", "changes"),
    [(A, [upsert("primary", 10, Type="A", TTL=30, ResourceRecords=[{"Value": "10.0.0.1"}, {"Value": "10.0.0.2"}]),
          upsert("dr", 90, Type="A", TTL=30, ResourceRecords=[{"Value": "10.1.0.1"}])]),
     (ALIAS, [upsert("primary", 10, Type="A", AliasTarget={"HostedZoneId": ELB_ZONE, "DNSName": "dualstack.p-1.us-east-1.elb.amazonaws.com.", "EvaluateTargetHealth": True}),
              upsert("dr", 90, Type="A", AliasTarget={"HostedZoneId": ELB_ZONE, "DNSName": "dualstack.d-1.us-east-1.elb.amazonaws.com.", "EvaluateTargetHealth": False})]),
     (AAAA_ALIAS, [upsert("primary", 10, Type="AAAA", AliasTarget={"HostedZoneId": ELB_ZONE, "DNSName": "dualstack.p-1.us-east-1.elb.amazonaws.com.", "EvaluateTargetHealth": False}),
                   upsert("dr", 90, Type="AAAA", AliasTarget={"HostedZoneId": ELB_ZONE, "DNSName": "dualstack.d-1.us-east-1.elb.amazonaws.com.", "EvaluateTargetHealth": False})]),
     (CNAME, [upsert("primary", 10, Type="CNAME", TTL=60, ResourceRecords=[{"Value": "p.example.com"}], HealthCheckId="hc-p"),
              upsert("dr", 90, Type="CNAME", TTL=60, ResourceRecords=[{"Value": "d.example.com"}])])],
    ids=["A", "A-alias", "AAAA-alias", "CNAME-health-check"],
)
def test_the_change_keeps_each_record_as_found_but_its_weight(rec, changes):
    assert weights_change(rec, {"primary": 10, "dr": 90}) == {
        "Comment": "resilience: api.ofm.test. primary=10 dr=90", "Changes": changes}


@pytest.mark.parametrize(
    ("weights", "message"),
    [({"primary": 0, "dr": 0}, "both 0 would answer no region"),
     ({"primary": 256, "dr": 0}, r"weights: \{'primary': 256, 'dr': 0\} must give primary and dr a weight in 0\.\.255"),
     ({"primary": -1, "dr": 1}, "in 0..255"),
     ({"primary": 10}, "must give primary and dr"),
     ({"primary": 10, "dr": 0, "canary": 5}, "must give primary and dr")],
)
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        weights_change(ALIAS, weights)


@pytest.mark.parametrize(("weights", "expected"), [({"primary": 255, "dr": 0}, [255, 0]), ({"primary": 0, "dr": 1}, [0, 1])])
def test_weights_at_the_bounds_are_accepted(weights, expected):
    assert [c["ResourceRecordSet"]["Weight"] for c in weights_change(CNAME, weights)["Changes"]] == expected


@pytest.mark.parametrize("rec", [A, ALIAS, AAAA_ALIAS, CNAME], ids=["A", "A-alias", "AAAA-alias", "CNAME"])
def test_the_record_round_trips_through_json(rec):
    assert WeightedRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    assert WeightedRecord.from_dict(asdict(rec)) == rec  # what a caller using dataclasses.asdict passes


def test_the_a_only_shape_of_earlier_releases_still_reads():
    legacy = {"zone_id": "Z1", "name": NAME, "targets": {"primary": "127.0.0.1", "dr": "127.0.0.2"}, "ttl": 1}
    assert WeightedRecord.from_dict(legacy) == record(RecordValues("A", ("127.0.0.1",), 1),
                                                      RecordValues("A", ("127.0.0.2",), 1))


@pytest.mark.parametrize(("rec", "ttl"), [(A, 30), (CNAME, 60), (ALIAS, 60)])
def test_ttl_is_what_resolvers_may_cache(rec, ttl):
    assert rec.ttl == ttl


@pytest.mark.parametrize(
    ("build", "message"),
    [(lambda: record(RecordValues("A", ("10.0.0.1",), 30), RecordValues("CNAME", ("d.example.com",), 30)),
      r"targets: \{'primary': 'A', 'dr': 'CNAME'\} must be one record type"),
     (lambda: WeightedRecord("Z1", NAME, {"primary": RecordValues("A", ("10.0.0.1",), 30)}),
      r"targets: regions \['primary'\] must be exactly \['dr', 'primary'\]"),
     (lambda: RecordValues("CNAME", ("a.example.com", "b.example.com"), 30), "must be one value for CNAME"),
     (lambda: RecordValues("TXT", ("x",), 30), r"type: 'TXT' is not one of \['A', 'AAAA', 'CNAME'\]"),
     (lambda: AliasTarget("A", "", "lb.example.com", False), "hosted_zone_id '' and dns_name 'lb.example.com' must"),
     (lambda: WeightedRecord.from_dict({**ALIAS.to_dict(), "ttl": 30}), r"record: keys \['name', 'targets', 'ttl', 'zone_id'\]")],
)
def test_bad_records_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def rrset(region, type_="A", name=NAME, weight=1, **fields):
    fields = fields or {"TTL": 30, "ResourceRecords": [{"Value": "10.0.0.1"}]}
    return {"Name": name, "Type": type_, "SetIdentifier": region, **({"Weight": weight} if weight is not None else {}),
            **fields}


ELB = {"AliasTarget": {"HostedZoneId": ELB_ZONE, "DNSName": "lb.elb.amazonaws.com.", "EvaluateTargetHealth": True}}


@pytest.mark.parametrize(
    ("listing", "expected"),
    [([rrset("primary", **ELB), rrset("dr", **ELB)],
      {"primary": AliasTarget("A", ELB_ZONE, "lb.elb.amazonaws.com.", True),
       "dr": AliasTarget("A", ELB_ZONE, "lb.elb.amazonaws.com.", True)}),
     # other names, types and set identifiers around it are not ours; names compare without case or trailing dot
     ([rrset("primary", "CNAME", name="API.ofm.test", TTL=5, ResourceRecords=[{"Value": "p.example.com"}]),
       rrset("dr", "CNAME", TTL=5, ResourceRecords=[{"Value": "d.example.com"}]),
       rrset("canary", "CNAME"), rrset("primary", name="www.ofm.test.")],
      {"primary": RecordValues("CNAME", ("p.example.com",), 5), "dr": RecordValues("CNAME", ("d.example.com",), 5)}),
    ],
    ids=["alias", "cname-among-others"],
)
def test_weighted_targets_read_from_a_listing(listing, expected):
    assert weighted_targets(listing, NAME, "ofm.test.") == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [("api.ofm.test.", "API.Ofm.Test", True), ("\\052.ofm.test.", "*.ofm.test.", True),  # Route53 escapes '*'
     ("api.ofm.test.", "api.ofm.test.x.", False), ("api.ofm.test.", "ap.ofm.test.", False)],
)
def test_same_name(a, b, same):
    assert same_name(a, b) is same


@pytest.mark.parametrize(
    ("listing", "found"),
    [([rrset("primary", **ELB), rrset("dr", "CNAME")], "found primary=A alias, dr=CNAME"),
     ([rrset("primary", **ELB)], "found primary=A alias, dr=none"),
     ([], "found primary=none, dr=none"),
     ([rrset("primary", **ELB), rrset("primary", "AAAA", **ELB), rrset("dr", **ELB), rrset("dr", "AAAA", **ELB)],
      "found primary=A alias+AAAA alias, dr=A alias+AAAA alias"),
     ([rrset("primary", weight=None, Failover="PRIMARY"), rrset("dr", weight=None, Failover="SECONDARY")],
      "found primary=A (not weighted), dr=A (not weighted)"),
     ([rrset("primary", "TXT"), rrset("dr", "TXT")], "found primary=TXT, dr=TXT")],
    ids=["types-differ", "dr-missing", "nothing", "dual-stack", "failover-not-weighted", "unsupported-type"],
)
def test_weighted_targets_refuse_naming_record_zone_and_what_was_found(listing, found):
    with pytest.raises(ValueError, match=re.escape(
            "dr.dns.record: 'api.ofm.test.' in zone ofm.test. needs one weighted record per region ['primary', 'dr'] "
            f"(SetIdentifier), both of one type among ['A', 'AAAA', 'CNAME']; {found}")):
        weighted_targets(listing, NAME, "ofm.test.")


class PagedRoute53:
    """list_resource_record_sets in pages of two, ordered by name as Route53 is; records each call."""

    def __init__(self, record_sets):
        self.record_sets, self.calls = record_sets, []

    def list_resource_record_sets(self, HostedZoneId, **start):  # noqa: N803 (boto's argument name)
        self.calls.append(start)
        keys = [(s["Name"], s["Type"], s.get("SetIdentifier", "")) for s in self.record_sets]
        begin = (start["StartRecordName"], start.get("StartRecordType", ""), start.get("StartRecordIdentifier", ""))
        rest = [s for s, key in zip(self.record_sets, keys, strict=True) if key >= begin]
        page = {"ResourceRecordSets": rest[:2], "IsTruncated": len(rest) > 2}
        if len(rest) > 2:
            page.update(NextRecordName=rest[2]["Name"], NextRecordType=rest[2]["Type"],
                        NextRecordIdentifier=rest[2]["SetIdentifier"])
        return page


def test_weights_page_on_while_the_listing_is_still_at_the_name():
    listing = [rrset("a-canary", "CNAME", weight=0), rrset("b-more", "CNAME", weight=0),
               rrset("dr", "CNAME", weight=70), rrset("primary", "CNAME", weight=30),
               rrset("primary", "CNAME", name="www.ofm.test."), rrset("dr", "CNAME", name="www.ofm.test."),
               rrset("x", "CNAME", name="zzz.ofm.test.")]
    client = PagedRoute53(listing)
    with mock.patch("resilience.dns._route53", lambda conn_id: client):
        assert Route53Weights("aws", CNAME).weights() == {"primary": 30, "dr": 70}
    # the second page ends where www starts: no third call
    assert client.calls == [{"StartRecordName": NAME, "StartRecordType": "CNAME"},
                            {"StartRecordName": NAME, "StartRecordType": "CNAME", "StartRecordIdentifier": "dr"}]
