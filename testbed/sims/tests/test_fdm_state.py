"""FDM device state: the hit-count API of an access policy and interface
link state, read along the documented REST flow (the client of test_fdm.py)
while the simulator's admin endpoint stands in for traffic and cables."""

from __future__ import annotations

import json
import os
import urllib.error
from pathlib import Path

import pytest

from test_fdm import Fdm

FIXTURES = Path(__file__).resolve().parents[3] / "controller/src/observe/fixtures"


@pytest.fixture
def sim(start_sim):
    return start_sim("fdm_sim.py", "--deploy-queued-ms", "50", "--deploy-ms", "50")


@pytest.fixture
def fdm(sim):
    c = Fdm(sim)
    assert c.login().status_code == 200
    return c


def capture(name: str, doc) -> None:
    if os.environ.get("RAMPART_CAPTURE_FIXTURES"):
        (FIXTURES / name).write_text(json.dumps(doc, indent=1) + "\n")


def deployed_rules(fdm, sim):
    pid = fdm.policy_id()
    web = fdm.host("web-1", "10.0.0.10")
    a = fdm.rule(pid, "RPF-acme-web-1a2b3c4d-10", dst=web)
    b = fdm.rule(pid, "RPF-acme-web-1a2b3c4d-20", action="DENY")
    job, _ = fdm.deploy_and_wait()
    assert job["state"] == "DEPLOYED"
    return pid, a, b


def hitcounts(fdm, pid, flt=None):
    params = {"filter": flt} if flt else {}
    return fdm.ok(fdm.get(f"/policy/accesspolicies/{pid}/operational/hitcounts", params=params))


def test_hit_counts_by_rule_with_filters_and_reset(fdm, sim):
    pid, a, b = deployed_rules(fdm, sim)
    # zero-hit rules are left out unless asked for
    assert hitcounts(fdm, pid)["items"] == []
    sim.admin("POST", "/_sim/hits", {"rule": a["id"], "hits": 12})
    sim.admin("POST", "/_sim/hits", {"rule": a["id"], "hits": 3})
    got = hitcounts(fdm, pid, "fetchZeroHitCount:true")
    by_name = {i["rule"]["name"]: i for i in got["items"]}
    assert by_name["RPF-acme-web-1a2b3c4d-10"]["hitCount"] == 15
    assert by_name["RPF-acme-web-1a2b3c4d-20"]["hitCount"] == 0
    assert by_name["RPF-acme-web-1a2b3c4d-20"]["firstHitTimeStamp"] is None
    hit = by_name["RPF-acme-web-1a2b3c4d-10"]
    assert hit["rule"] == {"id": a["id"], "name": a["name"], "ruleId": a["ruleId"], "type": "accessruleinfo"}
    assert hit["firstHitTimeStamp"] <= hit["lastHitTimeStamp"] and hit["type"] == "hitcount"
    capture("fdm-hitcounts.json", got)
    only_b = hitcounts(fdm, pid, f"ids:{{{b['id']}}};fetchZeroHitCount:true")["items"]
    assert [i["rule"]["id"] for i in only_b] == [b["id"]]
    # the documented refresh (PUT) answers with the same counters
    put = fdm.s.put(f"{fdm.base}/policy/accesspolicies/{pid}/operational/hitcounts",
                    params={"filter": "fetchZeroHitCount:true"})
    assert put.status_code == 200 and {i["hitCount"] for i in put.json()["items"]} == {15, 0}
    sim.admin("POST", "/_sim/hits", {"reset": True})
    after = hitcounts(fdm, pid, "fetchZeroHitCount:true")
    assert {i["hitCount"] for i in after["items"]} == {0}
    capture("fdm-hitcounts-reset.json", after)


def test_hit_counts_reject_bad_filters_and_undeployed_rules(fdm, sim):
    pid = fdm.policy_id()
    bad = fdm.get(f"/policy/accesspolicies/{pid}/operational/hitcounts", params={"filter": "name:x"})
    assert bad.status_code == 400 and "Unsupported filter key 'name'" in bad.text
    staged = fdm.rule(pid, "RPF-staged-only")
    with pytest.raises(urllib.error.HTTPError) as err:
        sim.admin("POST", "/_sim/hits", {"rule": staged["id"], "hits": 1})
    assert err.value.code == 404
    nope = fdm.get("/policy/accesspolicies/00000000-0000-0000-0000-000000000000/operational/hitcounts")
    assert nope.status_code == 404


def test_interface_link_state(fdm, sim):
    sim.admin("POST", "/_sim/interface", {"hardwareName": "GigabitEthernet0/1", "linkState": "DOWN"})
    got = fdm.ok(fdm.get("/devices/default/interfaces", params={"limit": 25}))
    states = {i["hardwareName"]: (i["name"], i["linkState"], i["enabled"]) for i in got["items"]}
    assert states == {"GigabitEthernet0/0": ("outside", "UP", True), "GigabitEthernet0/1": ("inside", "DOWN", True),
                      "GigabitEthernet0/2": ("dmz", "UP", True), "Management0/0": ("diagnostic", "UP", True)}
    capture("fdm-interfaces.json", got)
