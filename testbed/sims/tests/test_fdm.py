"""The FDM simulator, driven with `requests` along the documented FDM flow
(there is no official FDM Python SDK)."""

from __future__ import annotations

import time

import pytest
import requests

USER, PASSWORD = "admin", "Admin123"


class Fdm:
    """A minimal FDM client following the documented token flow."""

    def __init__(self, sim, version="v6"):
        self.base = f"{sim.url}/api/fdm/{version}"
        self.s = requests.Session()
        self.s.verify = sim.cert
        # REQUESTS_CA_BUNDLE (set on CI machines) would silently override the session's CA file
        self.s.trust_env = False
        self.token = None

    def login(self, username=USER, password=PASSWORD):
        r = self.s.post(f"{self.base}/fdm/token", json={"grant_type": "password", "username": username,
                                                          "password": password})
        if r.status_code == 200:
            self.token = r.json()
            self.s.headers["Authorization"] = f"Bearer {self.token['access_token']}"
        return r

    def refresh(self):
        r = self.s.post(f"{self.base}/fdm/token", json={"grant_type": "refresh_token",
                                                          "refresh_token": self.token["refresh_token"]})
        r.raise_for_status()
        self.token = r.json()
        self.s.headers["Authorization"] = f"Bearer {self.token['access_token']}"

    def get(self, path, **kw):
        return self.s.get(self.base + path, **kw)

    def post(self, path, doc, **kw):
        return self.s.post(self.base + path, json=doc, **kw)

    def put(self, path, doc):
        return self.s.put(self.base + path, json=doc)

    def delete(self, path):
        return self.s.delete(self.base + path)

    def ok(self, r, status=200):
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    def host(self, name, ip):
        return self.ok(self.post("/object/networks", {"name": name, "subType": "HOST", "value": ip,
                                                      "type": "networkobject"}))

    def policy_id(self):
        return self.ok(self.get("/policy/accesspolicies"))["items"][0]["id"]

    def rule(self, pid, name, action="PERMIT", dst=None, at=None):
        doc = {"name": name, "ruleAction": action, "eventLogAction": "LOG_FLOW_END", "type": "accessrule",
               "destinationNetworks": [{"id": dst["id"], "type": dst["type"]}] if dst else []}
        params = {"at": at} if at is not None else None
        return self.ok(self.post(f"/policy/accesspolicies/{pid}/accessrules", doc, params=params))

    def deploy_and_wait(self, timeout=5):
        job = self.ok(self.post("/operational/deploy", None))
        seen = [job["state"]]
        deadline = time.monotonic() + timeout
        while job["state"] not in ("DEPLOYED", "DEPLOY_FAILED"):
            assert time.monotonic() < deadline, seen
            time.sleep(0.03)
            job = self.ok(self.get(f"/operational/deploy/{job['id']}"))
            if job["state"] != seen[-1]:
                seen.append(job["state"])
        return job, seen


@pytest.fixture
def sim(start_sim):
    return start_sim("fdm_sim.py", "--deploy-queued-ms", "100", "--deploy-ms", "200")


@pytest.fixture
def fdm(sim):
    c = Fdm(sim)
    assert c.login().status_code == 200
    return c


def test_token_grants_and_auth_failures(start_sim):
    sim = start_sim("fdm_sim.py", "--token-ttl", "1")
    c = Fdm(sim, version="latest")
    bad = c.login(password="nope")
    assert bad.status_code == 400
    assert bad.json()["error"]["messages"][0]["code"] == "invalidCredentials"
    assert c.get("/object/networks").status_code == 401
    tok = c.ok(c.login())
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 1 and tok["refresh_token"]
    assert c.get("/object/networks").status_code == 200
    time.sleep(1.1)
    expired = c.get("/object/networks")
    assert expired.status_code == 401
    assert expired.json()["error"]["messages"][0]["code"] == "invalidToken"
    c.refresh()
    assert c.get("/object/networks").status_code == 200


def test_network_objects_crud_validation_and_versions(fdm):
    web = fdm.host("web-1", "10.0.0.10")
    assert web["type"] == "networkobject" and web["subType"] == "HOST" and len(web["version"]) == 13
    bad = fdm.post("/object/networks", {"name": "bad", "subType": "NETWORK", "value": "10.0.0.1/24",
                                        "type": "networkobject"})
    assert bad.status_code == 422
    err = bad.json()["error"]
    assert err["severity"] == "ERROR" and err["messages"][0]["location"] == "value"
    assert "10.0.0.1/24" in err["messages"][0]["description"]
    dup = fdm.post("/object/networks", {"name": "web-1", "subType": "HOST", "value": "10.0.0.11",
                                        "type": "networkobject"})
    assert dup.status_code == 422 and dup.json()["error"]["messages"][0]["code"] == "duplicateName"
    stale = dict(web, value="10.0.0.12", version="aaaaaaaaaaaaa")
    r = fdm.put(f"/object/networks/{web['id']}", stale)
    assert r.status_code == 422
    assert r.json()["error"]["messages"][0]["code"] == "versionMismatch"
    updated = fdm.ok(fdm.put(f"/object/networks/{web['id']}", dict(web, value="10.0.0.12")))
    assert updated["value"] == "10.0.0.12" and updated["version"] != web["version"]
    ports = fdm.ok(fdm.post("/object/tcpports", {"name": "https", "port": "443", "type": "tcpportobject"}))
    assert ports["port"] == "443"
    assert fdm.post("/object/udpports", {"name": "x", "port": "70000", "type": "udpportobject"}).status_code == 422
    page = fdm.ok(fdm.get("/object/networks", params={"limit": 1}))
    assert page["paging"]["count"] == 2 and len(page["items"]) == 1 and page["paging"]["next"]
    assert fdm.delete(f"/object/networks/{web['id']}").status_code == 204
    assert fdm.get(f"/object/networks/{web['id']}").status_code == 404


def test_access_rules_order_and_stale_version(fdm):
    pid = fdm.policy_id()
    dst = fdm.host("srv", "10.1.0.5")
    a = fdm.rule(pid, "a", dst=dst)
    b = fdm.rule(pid, "b", action="DENY")
    fdm.rule(pid, "first", at=0)
    names = [r["name"] for r in fdm.ok(fdm.get(f"/policy/accesspolicies/{pid}/accessrules"))["items"]]
    assert names == ["first", "a", "b"]
    assert a["destinationNetworks"][0]["name"] == "srv"
    r = fdm.put(f"/policy/accesspolicies/{pid}/accessrules/{b['id']}", dict(b, ruleAction="PERMIT",
                                                                           version="stale"))
    assert r.status_code == 422 and r.json()["error"]["messages"][0]["code"] == "versionMismatch"
    bad = fdm.put(f"/policy/accesspolicies/{pid}/accessrules/{b['id']}", dict(b, ruleAction="ALLOW"))
    assert bad.status_code == 422 and bad.json()["error"]["messages"][0]["location"] == "ruleAction"
    ok = fdm.ok(fdm.put(f"/policy/accesspolicies/{pid}/accessrules/{b['id']}", dict(b, ruleAction="PERMIT")))
    assert ok["version"] != b["version"] and ok["ruleId"] == b["ruleId"]
    missing = fdm.post(f"/policy/accesspolicies/{pid}/accessrules",
                       {"name": "x", "ruleAction": "PERMIT", "type": "accessrule",
                        "sourceNetworks": [{"id": "00000000-0000-0000-0000-000000000000", "type": "networkobject"}]})
    assert missing.status_code == 422 and missing.json()["error"]["messages"][0]["location"] == "sourceNetworks"
    inuse = fdm.delete(f"/object/networks/{dst['id']}")
    assert inuse.status_code == 422 and "in use" in inuse.json()["error"]["messages"][0]["description"]


def test_staged_changes_deploy_job_and_running_config(sim, fdm):
    pid = fdm.policy_id()
    dst = fdm.host("db", "10.2.0.5")
    fdm.rule(pid, "allow-db", dst=dst)
    pending = fdm.ok(fdm.get("/operational/pendingchanges"))["items"]
    assert {(p["entityName"], p["changeType"]) for p in pending} == {("db", "ADDED"), ("allow-db", "ADDED")}
    state = sim.state()
    assert state["deployed"]["accessrules"][pid] == [] and len(state["staged"]["accessrules"][pid]) == 1
    job, seen = fdm.deploy_and_wait()
    assert seen[0] == "QUEUED" and seen[-1] == "DEPLOYED" and "DEPLOYING" in seen
    assert fdm.ok(fdm.get("/operational/pendingchanges"))["items"] == []
    state = sim.state()
    assert state["deployed"] == state["staged"]
    assert fdm.ok(fdm.get("/operational/deploy"))["items"][0]["id"] == job["id"]


def test_deploy_failure_keeps_running_config(sim, fdm):
    pid = fdm.policy_id()
    fdm.rule(pid, "r1")
    sim.faults(deploy_fail=1)
    job, seen = fdm.deploy_and_wait()
    assert job["state"] == "DEPLOY_FAILED"
    assert "r1" in job["deploymentStatusMessages"][0]["statusMessage"]
    state = sim.state()
    assert state["deployed"]["accessrules"][pid] == []
    assert len(fdm.ok(fdm.get("/operational/pendingchanges"))["items"]) == 1
    job, _ = fdm.deploy_and_wait()
    assert job["state"] == "DEPLOYED"
    assert sim.state()["deployed"]["accessrules"][pid][0]["name"] == "r1"


def test_object_nat_rules_and_injected_faults(sim, fdm):
    nat_pid = fdm.ok(fdm.get("/policy/objectnatpolicies"))["items"][0]["id"]
    real = fdm.host("real", "10.3.0.5")
    mapped = fdm.host("mapped", "203.0.113.5")
    rule = fdm.ok(fdm.post(f"/policy/objectnatpolicies/{nat_pid}/objectnatrules",
                           {"name": "web-nat", "natType": "STATIC", "type": "objectnatrule",
                            "originalNetwork": {"id": real["id"], "type": "networkobject"},
                            "translatedNetwork": {"id": mapped["id"], "type": "networkobject"}}))
    assert rule["translatedNetwork"]["name"] == "mapped"
    sim.faults(fail_next=1, status=503)
    r = fdm.get("/object/networks")
    assert r.status_code == 503 and r.json()["error"]["severity"] == "ERROR"
    assert fdm.get("/object/networks").status_code == 200
    sim.faults(drop_next=1)
    with pytest.raises(requests.ConnectionError):
        fdm.get("/object/networks")
    sim.faults(delay_ms=300, delay_next=1)
    t0 = time.monotonic()
    assert fdm.get("/object/networks").status_code == 200
    assert time.monotonic() - t0 >= 0.3
    sim.faults(rate_limit={"rps": 2, "retry_after": 3})
    limited = [r for r in (fdm.get("/object/networks") for _ in range(6)) if r.status_code == 429]
    assert limited and limited[0].headers["Retry-After"] == "3"
    assert limited[0].json()["error"]["messages"][0]["code"] == "tooManyRequests"
    sim.faults(rate_limit=None)
    assert fdm.get("/object/networks").status_code == 200
    sim.faults(expire_tokens=True)
    assert fdm.get("/object/networks").status_code == 401


def test_object_nat_interface_pat_and_port_translation(fdm):
    nat_pid = fdm.ok(fdm.get("/policy/objectnatpolicies"))["items"][0]["id"]
    rules = f"/policy/objectnatpolicies/{nat_pid}/objectnatrules"
    ifaces = {i["name"]: i for i in fdm.ok(fdm.get("/devices/default/interfaces"))["items"]}
    assert ifaces["outside"]["hardwareName"] == "GigabitEthernet0/0"
    out_ref = {"id": ifaces["outside"]["id"], "type": "physicalinterface"}
    lan = fdm.ok(fdm.post("/object/networks", {"name": "lan", "subType": "NETWORK", "value": "10.4.0.0/16",
                                               "type": "networkobject"}))
    lan_ref = {"id": lan["id"], "type": "networkobject"}
    pat = {"name": "pat", "natType": "DYNAMIC", "type": "objectnatrule", "originalNetwork": lan_ref,
           "interfaceInTranslatedNetwork": True}
    r = fdm.post(rules, pat)
    assert r.status_code == 422 and r.json()["error"]["messages"][0]["location"] == "destinationInterface"
    r = fdm.post(rules, {**pat, "interfaceInTranslatedNetwork": False})
    assert r.status_code == 422 and "translatedNetwork" in r.text
    rule = fdm.ok(fdm.post(rules, {**pat, "destinationInterface": out_ref}))
    assert rule["destinationInterface"]["name"] == "outside" and rule["interfaceInTranslatedNetwork"] is True
    # one object NAT rule per object
    r = fdm.post(rules, {**pat, "name": "pat2", "destinationInterface": out_ref})
    assert r.status_code == 422 and r.json()["error"]["messages"][0]["code"] == "duplicateNat"
    real = fdm.host("srv", "10.4.0.9")
    mapped = fdm.host("pub", "203.0.113.9")
    p443 = fdm.ok(fdm.post("/object/tcpports", {"name": "t443", "port": "443", "type": "tcpportobject"}))
    p53 = fdm.ok(fdm.post("/object/udpports", {"name": "u53", "port": "53", "type": "udpportobject"}))
    static = {"name": "pf", "natType": "STATIC", "type": "objectnatrule",
              "originalNetwork": {"id": real["id"], "type": "networkobject"},
              "translatedNetwork": {"id": mapped["id"], "type": "networkobject"},
              "originalPort": {"id": p443["id"], "type": "tcpportobject"}}
    r = fdm.post(rules, static)
    assert r.status_code == 422 and r.json()["error"]["messages"][0]["location"] == "translatedPort"
    r = fdm.post(rules, {**static, "translatedPort": {"id": p53["id"], "type": "udpportobject"}})
    assert r.status_code == 422 and "same protocol" in r.text
    rule = fdm.ok(fdm.post(rules, {**static, "translatedPort": {"id": p443["id"], "type": "tcpportobject"}}))
    assert rule["originalPort"]["name"] == "t443"
