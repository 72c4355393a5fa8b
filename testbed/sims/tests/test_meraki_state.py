"""Meraki device state (uplink and device statuses), read with the official
`meraki` SDK while the simulator's admin endpoint takes links and devices
down."""

from __future__ import annotations

import json
import os
import urllib.error
from pathlib import Path

import pytest

from test_meraki import ORG, dashboard, dashboard_as_meraki_com

FIXTURES = Path(__file__).resolve().parents[3] / "controller/src/observe/fixtures"
SERIAL = "Q2MX-0002-RMPT"
NET = "L_6468999999000002"


@pytest.fixture
def sim(start_sim):
    return start_sim("meraki_sim.py", "--networks", "4")


def capture(name: str, doc) -> None:
    if os.environ.get("RAMPART_CAPTURE_FIXTURES"):
        (FIXTURES / name).write_text(json.dumps(doc, indent=1) + "\n")


def test_uplink_statuses_follow_link_changes(sim):
    d = dashboard(sim)
    before = d.appliance.getOrganizationApplianceUplinkStatuses(ORG)
    assert [u["serial"] for u in before] == [f"Q2MX-{i:04d}-RMPT" for i in range(1, 5)]
    assert {(u["interface"], u["status"]) for u in before[1]["uplinks"]} == {("wan1", "active"), ("wan2", "ready")}
    sim.admin("POST", "/_sim/device", {"serial": SERIAL, "uplinks": {"wan1": "failed", "wan2": "active"}})
    after = d.appliance.getOrganizationApplianceUplinkStatuses(ORG, serials=[SERIAL])
    assert len(after) == 1 and after[0]["networkId"] == NET
    assert {u["interface"]: u["status"] for u in after[0]["uplinks"]} == {"wan1": "failed", "wan2": "active"}
    # a failed uplink has no address, as on the Dashboard
    assert next(u for u in after[0]["uplinks"] if u["interface"] == "wan1")["ip"] is None
    by_net = d.appliance.getOrganizationApplianceUplinkStatuses(ORG, networkIds=[NET, "L_6468999999000003"])
    assert [u["networkId"] for u in by_net] == [NET, "L_6468999999000003"]
    capture("meraki-uplink-statuses.json", d.appliance.getOrganizationApplianceUplinkStatuses(ORG))


def test_uplink_statuses_paginate_like_the_dashboard(sim):
    d = dashboard_as_meraki_com(sim)
    got = d.appliance.getOrganizationApplianceUplinkStatuses(ORG, total_pages="all", perPage=3)
    assert len(got) == 4
    pages = [r for r in sim.admin("GET", "/_sim/requests") if r["path"].endswith("/uplink/statuses")]
    assert len(pages) == 2, pages


def test_device_statuses_online_offline_alerting(sim):
    d = dashboard(sim)
    assert {s["status"] for s in d.organizations.getOrganizationDevicesStatuses(ORG)} == {"online"}
    sim.admin("POST", "/_sim/device", {"serial": SERIAL, "status": "offline"})
    sim.admin("POST", "/_sim/device", {"serial": "Q2MX-0003-RMPT", "status": "alerting"})
    got = d.organizations.getOrganizationDevicesStatuses(ORG)
    assert {s["serial"]: s["status"] for s in got} == {
        "Q2MX-0001-RMPT": "online", SERIAL: "offline", "Q2MX-0003-RMPT": "alerting", "Q2MX-0004-RMPT": "online"}
    assert all(s["productType"] == "appliance" and s["model"] == "MX68" for s in got)
    offline = d.organizations.getOrganizationDevicesStatuses(ORG, statuses=["offline"])
    assert [s["serial"] for s in offline] == [SERIAL]
    assert d.organizations.getOrganizationDevicesStatuses(ORG, productTypes=["wireless"]) == []
    capture("meraki-devices-statuses.json", got)


def test_admin_rejects_unknown_devices_and_states(sim):
    for body, code in [({"serial": "NOPE"}, 404), ({"serial": SERIAL, "status": "sleepy"}, 400),
                       ({"serial": SERIAL, "uplinks": {"wan1": "down"}}, 400),
                       ({"serial": SERIAL, "uplinks": {"wan9": "failed"}}, 404),
                       ({"serial": SERIAL, "colour": "red"}, 400)]:
        with pytest.raises(urllib.error.HTTPError) as err:
            sim.admin("POST", "/_sim/device", body)
        assert err.value.code == code, body
