"""The SD-WAN Manager simulator, driven by the official `catalystwan` SDK."""

from __future__ import annotations

import json
import time
import warnings

import pytest
import requests
from catalystwan.api.task_status_api import Task
from catalystwan.api.template_api import DeviceTemplate, FeatureTemplate
from catalystwan.api.templates.models.cisco_banner_model import CiscoBannerModel
from catalystwan.exceptions import ManagerHTTPError
from catalystwan.session import (ManagerSession, ManagerSessionState, create_base_url,
                                 create_manager_session)
from catalystwan.vmanage_auth import UnauthorizedAccessError, create_vmanage_auth

USER, PASSWORD = "admin", "Admin123#"


@pytest.fixture(autouse=True)
def quiet_insecure():
    # create_manager_session() does not verify TLS (catalystwan's default)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        yield


def verified_session(sim, username=USER, password=PASSWORD) -> ManagerSession:
    """Like create_manager_session, but verifying the simulator's certificate."""
    auth = create_vmanage_auth(username, password, verify=sim.cert)
    session = ManagerSession(base_url=create_base_url(sim.host, sim.port), auth=auth, verify=sim.cert)
    session.state = ManagerSessionState.LOGIN
    return session


@pytest.fixture
def sim(start_sim):
    return start_sim("vmanage_sim.py", "--action-ms", "150")


def logins(sim) -> int:
    return sum(1 for r in sim.admin("GET", "/_sim/requests") if r["path"] == "/j_security_check")


def wait_action(session, action_id: str, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        status = session.get(f"/dataservice/device/action/status/{action_id}").json()
        seen.append(status["summary"]["status"])
        if status["summary"]["status"] == "done":
            status["seen"] = seen
            return status
        assert time.monotonic() < deadline, seen
        time.sleep(0.03)


def test_login_server_info_and_bad_credentials(sim):
    s = create_manager_session(url=sim.host, port=sim.port, username=USER, password=PASSWORD)
    assert s.server_name == "vmanage-sim"
    assert s.platform_version == "20.12.3"
    assert str(s.session_type) == "SessionType.SINGLE_TENANT"
    assert s.about().application_server == "vmanage-sim"
    s.close()
    with pytest.raises(UnauthorizedAccessError):
        create_manager_session(url=sim.host, port=sim.port, username=USER, password="wrong")


def test_feature_and_device_templates_with_verified_tls(sim):
    s = verified_session(sim)
    assert list(s.api.templates.get(FeatureTemplate)) == []
    banner = CiscoBannerModel(template_name="rampart-banner", template_description="managed by rampart",
                              device_models=["vedge-C8000V"], login_banner="authorised use only",
                              motd_banner="hello")
    tid = s.api.templates.create(banner)
    listed = s.api.templates.get(FeatureTemplate)
    assert [(t.id, t.name, t.template_type) for t in listed] == [(tid, "rampart-banner", "cisco_banner")]
    stored = sim.state()["featureTemplates"][tid]["templateDefinition"]
    assert stored["login"]["vipValue"] == "authorised use only" and stored["login"]["vipType"] == "constant"
    with pytest.raises(ManagerHTTPError) as exc:
        s.api.templates.create(banner)
    assert exc.value.info.message == "Template with name 'rampart-banner' already exists"
    assert exc.value.response.status_code == 400
    dt = DeviceTemplate(template_name="edge-dt", template_description="edge", general_templates=["rampart-banner"],
                        device_type="vedge-C8000V")
    created = json.loads(s.api.templates.create(dt))
    devices = s.api.templates.get(DeviceTemplate)
    assert [(d.id, d.name) for d in devices] == [(created["templateId"], "edge-dt")]
    # a feature template used by a device template cannot go
    with pytest.raises(ManagerHTTPError) as exc:
        s.api.templates.delete(FeatureTemplate, "rampart-banner")
    assert exc.value.info.code == "TMPL0008"
    s.close()


def test_attach_and_action_status_polling(sim):
    s = create_manager_session(url=sim.host, port=sim.port, username=USER, password=PASSWORD)
    ft = s.post("/dataservice/template/feature", json={
        "templateName": "b", "templateDescription": "", "templateType": "cisco_banner",
        "deviceType": ["vedge-C8000V"], "templateMinVersion": "15.0.0", "templateDefinition": {}}).json()
    dt = s.post("/dataservice/template/device/feature/", json={
        "templateName": "dt", "templateDescription": "", "deviceType": "vedge-C8000V", "configType": "template",
        "generalTemplates": [{"templateId": ft["templateId"], "templateType": "cisco_banner"}]}).json()
    device = s.get("/dataservice/system/device/vedges").json()["data"][0]
    body = {"deviceTemplateList": [{"templateId": dt["templateId"], "isEdited": False, "isMasterEdited": False,
                                    "device": [{"csv-status": "complete", "csv-deviceId": device["uuid"],
                                                "csv-deviceIP": device["system-ip"],
                                                "csv-host-name": device["host-name"]}]}]}
    action = s.post("/dataservice/template/device/config/attachfeature", json=body).json()
    assert action["id"].startswith("push_feature_template_configuration-")
    # catalystwan's own task poller parses the action status and sees it succeed
    result = Task(s, action["id"]).wait_for_completed(timeout_seconds=5, interval_seconds=0.05)
    assert result.result is True and result.sub_tasks_data[0].status_id == "success"
    status = wait_action(s, action["id"])
    assert status["data"][0]["statusId"] == "success" and status["data"][0]["validity"] == "valid"
    templates = s.get("/dataservice/template/device").json()["data"]
    assert templates[0]["devicesAttached"] == 1
    assert sim.state()["devices"][0]["templateId"] == dt["templateId"]
    # an injected failure reports per device and changes nothing
    sim.faults(action_fail=1)
    body["deviceTemplateList"][0]["device"][0]["csv-deviceId"] = "no-such-device"
    with pytest.raises(ManagerHTTPError) as exc:
        s.post("/dataservice/template/device/config/attachfeature", json=body)
    assert exc.value.info.message == "Invalid device" and "no-such-device" in exc.value.info.details
    second = sim.state()["devices"][1]
    body["deviceTemplateList"][0]["device"][0].update({"csv-deviceId": second["uuid"],
                                                       "csv-deviceIP": second["system-ip"],
                                                       "csv-host-name": second["host-name"]})
    action = s.post("/dataservice/template/device/config/attachfeature", json=body).json()
    assert wait_action(s, action["id"])["seen"][0] == "in_progress"
    failed = Task(s, action["id"]).wait_for_completed(timeout_seconds=5, interval_seconds=0.05)
    assert failed.result is False
    status = wait_action(s, action["id"])
    assert status["data"][0]["statusId"] == "failure"
    assert sim.state()["devices"][1]["templateId"] is None
    s.close()


def test_catalystwan_high_level_attach(start_sim):
    # --action-ms 0: the action is done before the answer, so catalystwan's fixed
    # 5 s polling interval never has to elapse
    sim = start_sim("vmanage_sim.py", "--action-ms", "0")
    s = verified_session(sim)
    devices = s.api.devices.get()
    assert sorted(d.hostname for d in devices) == ["edge1", "edge2"]
    s.api.templates.create(CiscoBannerModel(template_name="banner", template_description="", login_banner="hi",
                                            device_models=["vedge-C8000V"]))
    s.api.templates.create(DeviceTemplate(template_name="edge", template_description="", device_type="vedge-C8000V",
                                          general_templates=["banner"]))
    edge1 = devices.filter(hostname="edge1").single_or_default()
    assert s.api.templates.attach("edge", edge1) is True
    state = sim.state()
    assert state["devices"][0]["template"] == "edge"
    assert [t["devicesAttached"] for t in state["deviceTemplates"].values()] == [1]
    s.close()


def test_session_expiry_relogin_and_xsrf(start_sim):
    sim = start_sim("vmanage_sim.py", "--session-ttl", "1")
    s = create_manager_session(url=sim.host, port=sim.port, username=USER, password=PASSWORD)
    first = logins(sim)  # 1, or 2 if the login itself outlived the 1 s session on a busy machine
    time.sleep(1.1)
    assert list(s.api.templates.get(FeatureTemplate)) == []
    assert logins(sim) == first + 1
    sim.faults(expire_sessions=True)
    s.api.templates.get(DeviceTemplate)
    assert logins(sim) == first + 2
    s.close()
    # raw client: a mutating call without the XSRF token is refused
    raw = requests.Session()
    raw.trust_env = False
    raw.verify = sim.cert
    r = raw.post(f"{sim.url}/j_security_check", data={"j_username": USER, "j_password": PASSWORD})
    assert r.status_code == 200 and r.text == "" and "JSESSIONID" in raw.cookies
    r = raw.post(f"{sim.url}/dataservice/template/policy/vsmart", json={"policyName": "x"})
    assert r.status_code == 403 and r.json()["error"]["message"] == "Forbidden"
    token = raw.get(f"{sim.url}/dataservice/client/token").text
    r = raw.post(f"{sim.url}/dataservice/template/policy/vsmart", json={"policyName": "x"},
                 headers={"X-XSRF-TOKEN": token})
    assert r.status_code == 200 and "policyId" in r.json()
    # an expired or unknown session gets the login page, as the real server does
    raw.cookies.set("JSESSIONID", "bogus")
    r = raw.get(f"{sim.url}/dataservice/template/feature")
    assert r.status_code == 200 and "<html>" in r.text and "Expires=Thu, 01 Jan 1970" in r.headers["Set-Cookie"]


def test_centralized_policy_activation(sim):
    s = verified_session(sim)
    d = s.post("/dataservice/template/policy/definition/data", json={
        "name": "block-telnet", "type": "data", "description": "rampart", "defaultAction": {"type": "accept"},
        "sequences": [{"sequenceId": 1, "sequenceName": "telnet", "baseAction": "drop", "sequenceType": "data",
                       "match": {"entries": [{"field": "destinationPort", "value": "23"}]}, "actions": []}]}).json()
    with pytest.raises(ManagerHTTPError) as exc:
        s.post("/dataservice/template/policy/definition/data", json={
            "name": "bad", "type": "data", "sequences": [{"sequenceId": 1, "baseAction": "reject"}]})
    assert "reject" in exc.value.info.message
    p = s.post("/dataservice/template/policy/vsmart", json={
        "policyName": "central", "policyDescription": "rampart", "policyType": "feature",
        "policyDefinition": {"assembly": [{"definitionId": d["definitionId"], "type": "data",
                                           "entries": [{"direction": "service", "siteLists": [],
                                                        "vpnLists": []}]}]}}).json()
    action = s.post(f"/dataservice/template/policy/vsmart/activate/{p['policyId']}", json={}).json()
    assert action["id"].startswith("activate_vsmart_policy-")
    assert wait_action(s, action["id"])["data"][0]["statusId"] == "success"
    policies = s.get("/dataservice/template/policy/vsmart").json()["data"]
    assert policies[0]["isPolicyActivated"] is True
    with pytest.raises(ManagerHTTPError):
        s.delete(f"/dataservice/template/policy/definition/data/{d['definitionId']}")
    s.close()


def test_rate_limit_429_with_retry_after(start_sim):
    sim = start_sim("vmanage_sim.py", "--rate-limit", "5")
    raw = requests.Session()
    raw.trust_env = False
    raw.verify = sim.cert
    raw.post(f"{sim.url}/j_security_check", data={"j_username": USER, "j_password": PASSWORD})
    codes = [raw.get(f"{sim.url}/dataservice/device") for _ in range(20)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["error"]["message"] == "Too many requests"
    # injected faults come before the rate limit, like an upstream failure would
    sim.faults(fail_next=1, status=500, message="database unavailable")
    r = raw.get(f"{sim.url}/dataservice/device")
    assert r.status_code == 500 and r.json()["error"]["message"] == "database unavailable"
