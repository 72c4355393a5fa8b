"""SD-WAN Manager device state: the device list (reachability, status,
system-ip) and an edge's interface oper status, read with `catalystwan`
while the simulator's admin endpoint takes devices and links down."""

from __future__ import annotations

import json
import os
import urllib.error
from pathlib import Path

import pytest
from catalystwan.exceptions import ManagerHTTPError

from test_vmanage import verified_session

FIXTURES = Path(__file__).resolve().parents[3] / "controller/src/observe/fixtures"
EDGE1, EDGE2 = "10.255.0.11", "10.255.0.12"


@pytest.fixture
def sim(start_sim):
    return start_sim("vmanage_sim.py")


def capture(name: str, doc) -> None:
    if os.environ.get("RAMPART_CAPTURE_FIXTURES"):
        (FIXTURES / name).write_text(json.dumps(doc, indent=1) + "\n")


def test_device_list_reachability_and_status(sim):
    s = verified_session(sim)
    devices = s.endpoints.monitoring_device_details.list_all_devices()
    assert [(d.system_ip, d.reachability, d.status) for d in devices] == [
        (EDGE1, "reachable", "normal"), (EDGE2, "reachable", "normal")]
    sim.admin("POST", "/_sim/device", {"system-ip": EDGE2, "reachability": "unreachable", "status": "error"})
    devices = s.endpoints.monitoring_device_details.list_all_devices()
    assert {d.system_ip: (d.reachability, d.status) for d in devices} == {
        EDGE1: ("reachable", "normal"), EDGE2: ("unreachable", "error")}
    capture("sdwan-device.json", s.get("/dataservice/device").json())


def test_interface_oper_status_and_unreachable_device(sim):
    s = verified_session(sim)
    sim.admin("POST", "/_sim/interface", {"system-ip": EDGE1, "ifname": "GigabitEthernet2", "oper": "down"})
    rows = s.get_data(f"/dataservice/device/interface?deviceId={EDGE1}")
    assert {r["ifname"]: r["if-oper-status"] for r in rows} == {
        "GigabitEthernet1": "if-oper-state-ready", "GigabitEthernet2": "if-oper-state-no-pass",
        "Loopback0": "if-oper-state-ready"}
    assert {r["vdevice-name"] for r in rows} == {EDGE1}
    capture("sdwan-device-interface.json", s.get("/dataservice/device/interface",
                                                 params={"deviceId": EDGE1}).json())
    sim.admin("POST", "/_sim/device", {"system-ip": EDGE2, "reachability": "unreachable"})
    with pytest.raises(ManagerHTTPError) as err:
        s.get_data(f"/dataservice/device/interface?deviceId={EDGE2}")
    assert "unreachable" in str(err.value.info.details)
    with pytest.raises(ManagerHTTPError):
        s.get_data("/dataservice/device/interface")


def test_admin_rejects_unknown_devices_and_values(sim):
    for path, body, code in [("/_sim/device", {"system-ip": "10.9.9.9"}, 404),
                             ("/_sim/device", {"system-ip": EDGE1, "reachability": "maybe"}, 400),
                             ("/_sim/interface", {"system-ip": EDGE1, "ifname": "Gi9", "oper": "down"}, 404),
                             ("/_sim/interface", {"system-ip": EDGE1, "ifname": "GigabitEthernet1",
                                                  "oper": "sideways"}, 400)]:
        with pytest.raises(urllib.error.HTTPError) as err:
            sim.admin("POST", path, body)
        assert err.value.code == code, body
