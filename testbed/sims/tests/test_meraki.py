"""The Meraki simulator, driven by the official `meraki` Python SDK."""

from __future__ import annotations

import ssl
import time

import httpx
import meraki
import pytest

KEY = "rampart-sim-key"
ORG = "549236"
NET = "L_6468999999000001"


def dashboard(sim, key=KEY, **kw):
    return meraki.DashboardAPI(api_key=key, base_url=f"{sim.url}/api/v1", certificate_path=sim.cert,
                               suppress_logging=True, output_log=False, smart_flow_enabled=False,
                               maximum_retries=kw.pop("maximum_retries", 5), **kw)


class ToSim(httpx.HTTPTransport):
    """Sends requests addressed to api.meraki.com to the simulator instead.

    The SDK follows pagination `Link` URLs only when they name a Meraki domain
    (other absolute URLs get the base URL prepended), and the simulator answers
    with absolute links like the real service, built from the Host header.
    """

    def __init__(self, sim):
        super().__init__(verify=ssl.create_default_context(cafile=sim.cert))
        self.sim = sim

    def handle_request(self, request):
        request.url = request.url.copy_with(host=self.sim.host, port=self.sim.port)
        return super().handle_request(request)


def dashboard_as_meraki_com(sim):
    d = meraki.DashboardAPI(api_key=KEY, base_url="https://api.meraki.com/api/v1", suppress_logging=True,
                            output_log=False, smart_flow_enabled=False)
    old = d._session._client
    d._session._client = httpx.Client(transport=ToSim(sim), headers=old.headers, timeout=old.timeout)
    old.close()
    return d


@pytest.fixture
def sim(start_sim):
    return start_sim("meraki_sim.py", "--networks", "7")


def test_organizations_and_paginated_networks(sim):
    orgs = dashboard(sim).organizations.getOrganizations()
    assert [o["id"] for o in orgs] == [ORG]
    d = dashboard_as_meraki_com(sim)
    nets = d.organizations.getOrganizationNetworks(ORG, total_pages="all", perPage=3)
    assert [n["id"] for n in nets] == [f"L_64689999990000{i:02d}" for i in range(1, 8)]
    pages = [r for r in sim.admin("GET", "/_sim/requests") if r["path"].endswith("/networks")]
    assert len(pages) == 3, pages
    # a single page only when asked for one
    first = d.organizations.getOrganizationNetworks(ORG, total_pages=1, perPage=3)
    assert len(first) == 3


def test_link_header_is_rfc5988(sim):
    with httpx.Client(verify=ssl.create_default_context(cafile=sim.cert)) as c:
        r = c.get(f"{sim.url}/api/v1/organizations/{ORG}/networks", params={"perPage": 3},
                  headers={"X-Cisco-Meraki-API-Key": KEY})
        assert r.status_code == 200
        assert "startingAfter=L_6468999999000003" in r.links["next"]["url"]
        assert "first" in r.links and "last" in r.links and "prev" not in r.links
        r = c.get(r.links["next"]["url"], headers={"Authorization": f"Bearer {KEY}"})
        assert [n["id"] for n in r.json()][0] == "L_6468999999000004"
        assert "prev" in r.links
        bad = c.get(f"{sim.url}/api/v1/organizations/{ORG}/networks", params={"perPage": 1},
                    headers={"X-Cisco-Meraki-API-Key": KEY})
        assert bad.status_code == 400 and "perPage" in bad.json()["errors"][0]


def test_l3_rules_put_excludes_and_get_includes_default_rule(sim):
    d = dashboard(sim)
    rules = [
        {"comment": "web", "policy": "allow", "protocol": "tcp", "srcCidr": "10.0.0.0/24",
         "srcPort": "Any", "destCidr": "192.168.1.10/32", "destPort": "443", "syslogEnabled": False},
        {"comment": "block dns", "policy": "deny", "protocol": "udp", "srcCidr": "Any",
         "destCidr": "8.8.8.8/32,8.8.4.4/32", "destPort": "53"},
    ]
    put = d.appliance.updateNetworkApplianceFirewallL3FirewallRules(NET, rules=rules, syslogDefaultRule=True)
    assert [r["comment"] for r in put["rules"]] == ["web", "block dns", "Default rule"]
    got = d.appliance.getNetworkApplianceFirewallL3FirewallRules(NET)
    assert got["rules"][-1] == {"comment": "Default rule", "policy": "allow", "protocol": "Any",
                                "srcPort": "Any", "srcCidr": "Any", "destPort": "Any", "destCidr": "Any",
                                "syslogEnabled": True}
    assert got["rules"][1]["srcPort"] == "Any" and got["rules"][1]["syslogEnabled"] is False
    assert sim.state()["networks"][NET]["l3"]["rules"][0]["destPort"] == "443"


@pytest.mark.parametrize("rule,needle", [
    ({"policy": "allow", "protocol": "tcp", "srcCidr": "10.0.0.0/33", "destCidr": "Any"}, "10.0.0.0/33"),
    ({"policy": "allow", "protocol": "tcp", "srcCidr": "Any", "destCidr": "Any", "destPort": "70000"},
     "70000"),
    ({"policy": "permit", "protocol": "tcp", "srcCidr": "Any", "destCidr": "Any"}, "policy"),
])
def test_validation_error_surfaces_as_api_error(sim, rule, needle):
    d = dashboard(sim)
    with pytest.raises(meraki.APIError) as exc:
        d.appliance.updateNetworkApplianceFirewallL3FirewallRules(NET, rules=[rule])
    assert exc.value.status == 400
    assert needle in exc.value.message["errors"][0]
    # nothing was half-applied
    assert sim.state()["networks"][NET]["l3"]["rules"] == []


def test_invalid_key_is_401(sim):
    d = dashboard(sim, key="wrong")
    with pytest.raises(meraki.APIError) as exc:
        d.organizations.getOrganizations()
    assert exc.value.status == 401
    assert exc.value.message == {"errors": ["Invalid API key"]}


def test_real_rate_limit_per_org(sim):
    with httpx.Client(verify=ssl.create_default_context(cafile=sim.cert), headers={"X-Cisco-Meraki-API-Key": KEY}) as c:
        codes = [c.get(f"{sim.url}/api/v1/networks/{NET}/appliance/vpn/siteToSiteVpn") for _ in range(40)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, "40 back-to-back requests should exceed 10 req/s"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json() == {"errors": ["API rate limit exceeded for organization"]}
    assert sum(r.status_code == 200 for r in codes) >= 10
    # a 429 storm the SDK rides through, honouring Retry-After: every call
    # succeeds, some only after sleeping the announced second
    d = dashboard(sim)
    before = len(sim.admin("GET", "/_sim/requests"))
    t0 = time.monotonic()
    for _ in range(10):
        assert d.appliance.getNetworkApplianceVpnSiteToSiteVpn(NET)["mode"] == "none"
    elapsed = time.monotonic() - t0
    statuses = [r["status"] for r in sim.admin("GET", "/_sim/requests")[before:]]
    assert statuses.count(200) == 10
    assert statuses.count(429) >= 1 and elapsed >= statuses.count(429) * 1.0


def test_injected_429_surfaces_after_retries_are_exhausted(sim):
    sim.faults(fail_next=2, status=429, retry_after=1)
    d = dashboard(sim, maximum_retries=1)
    with pytest.raises(meraki.APIError) as exc:
        d.organizations.getOrganizations()
    assert exc.value.status == 429
    assert exc.value.response.headers["Retry-After"] == "1"


def test_5xx_and_dropped_connection_are_retried_by_sdk(sim):
    d = dashboard(sim)
    sim.faults(fail_next=1, status=503)
    assert d.organizations.getOrganizations()[0]["id"] == ORG
    sim.faults(drop_next=1)
    assert d.appliance.getNetworkApplianceVpnSiteToSiteVpn(NET)["mode"] == "none"
    statuses = [r["status"] for r in sim.admin("GET", "/_sim/requests")]
    assert statuses == [503, 200, None, 200]


def test_action_batch_is_atomic(sim):
    d = dashboard(sim)
    good = {"resource": f"/networks/{NET}/appliance/firewall/l3FirewallRules", "operation": "update",
            "body": {"rules": [{"policy": "deny", "protocol": "any", "srcCidr": "Any", "destCidr": "10.9.0.0/16"}]}}
    bad = {"resource": f"/networks/{NET}/appliance/firewall/portForwardingRules", "operation": "update",
           "body": {"rules": [{"lanIp": "10.0.0.5", "publicPort": "99999", "localPort": "80",
                               "protocol": "tcp"}]}}
    failed = d.organizations.createOrganizationActionBatch(ORG, [good, bad], confirmed=True, synchronous=True)
    assert failed["status"]["failed"] is True and failed["status"]["completed"] is False
    assert "99999" in failed["status"]["errors"][0]
    assert sim.state()["networks"][NET]["l3"]["rules"] == []
    ok = d.organizations.createOrganizationActionBatch(ORG, [good], confirmed=True, synchronous=True)
    assert ok["status"] == {"completed": True, "failed": False, "errors": [], "createdResources": []}
    assert sim.state()["networks"][NET]["l3"]["rules"][0]["destCidr"] == "10.9.0.0/16"
    # an unconfirmed batch does nothing until confirmed; then it runs asynchronously
    pending = d.organizations.createOrganizationActionBatch(ORG, [{**good, "body": {"rules": []}}])
    assert pending["status"]["completed"] is False
    assert len(sim.state()["networks"][NET]["l3"]["rules"]) == 1
    d.organizations.updateOrganizationActionBatch(ORG, pending["id"], confirmed=True)
    deadline = time.monotonic() + 5
    while not d.organizations.getOrganizationActionBatch(ORG, pending["id"])["status"]["completed"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert sim.state()["networks"][NET]["l3"]["rules"] == []


def test_site_to_site_vpn_modes(sim):
    d = dashboard(sim)
    hub = "L_6468999999000002"
    with pytest.raises(meraki.APIError) as exc:
        d.appliance.updateNetworkApplianceVpnSiteToSiteVpn(NET, mode="spoke", hubs=[{"hubId": hub}])
    assert "not configured as a hub" in exc.value.message["errors"][0]
    d.appliance.updateNetworkApplianceVpnSiteToSiteVpn(hub, mode="hub",
                                                       subnets=[{"localSubnet": "10.2.0.0/24", "useVpn": True}])
    vpn = d.appliance.updateNetworkApplianceVpnSiteToSiteVpn(
        NET, mode="spoke", hubs=[{"hubId": hub, "useDefaultRoute": False}],
        subnets=[{"localSubnet": "10.1.0.0/24", "useVpn": True}])
    assert vpn == {"mode": "spoke", "hubs": [{"hubId": hub, "useDefaultRoute": False}],
                   "subnets": [{"localSubnet": "10.1.0.0/24", "useVpn": True}]}
    with httpx.Client(verify=ssl.create_default_context(cafile=sim.cert)) as c:
        r = c.put(f"{sim.url}/api/v1/networks/{NET}/appliance/vpn/siteToSiteVpn", json={"mode": "mesh"},
                  headers={"X-Cisco-Meraki-API-Key": KEY})
    assert r.status_code == 400 and "mesh" in r.json()["errors"][0]


def test_state_file_survives_restart_and_reset(start_sim, tmp_path):
    state = tmp_path / "meraki.json"
    sim = start_sim("meraki_sim.py", "--state-file", str(state), plain_http=True)
    d = meraki.DashboardAPI(api_key=KEY, base_url=f"{sim.url}/api/v1", suppress_logging=True,
                            output_log=False, smart_flow_enabled=False)
    d.appliance.updateNetworkApplianceFirewallL7FirewallRules(
        NET, rules=[{"policy": "deny", "type": "host", "value": "example.org"}])
    sim.stop()
    sim2 = start_sim("meraki_sim.py", "--state-file", str(state), plain_http=True)
    d2 = meraki.DashboardAPI(api_key=KEY, base_url=f"{sim2.url}/api/v1", suppress_logging=True,
                             output_log=False, smart_flow_enabled=False)
    assert d2.appliance.getNetworkApplianceFirewallL7FirewallRules(NET)["rules"][0]["value"] == "example.org"
    sim2.admin("POST", "/_sim/reset")
    assert d2.appliance.getNetworkApplianceFirewallL7FirewallRules(NET)["rules"] == []


def test_fault_documents_are_validated(sim):
    import urllib.error
    for doc, needle in (({"fail_next": "2"}, "fail_next"), ({"bogus": 1}, "bogus"),
                        ({"rate_limit": {"rps": 0}}, "rate_limit"), ([1], "JSON object")):
        with pytest.raises(urllib.error.HTTPError) as exc:
            sim.admin("POST", "/_sim/faults", doc)
        assert exc.value.code == 400 and needle in exc.value.read().decode()
    assert sim.admin("GET", "/_sim/faults")["fail_next"] == 0
    assert sim.admin("DELETE", "/_sim/faults")["rate_limit"] is None


def test_one_to_one_nat_and_port_forwarding_through_the_sdk(sim):
    d = dashboard(sim)
    rules = [{"name": "web", "publicIp": "203.0.113.20", "lanIp": "10.0.1.20", "uplink": "internet1",
              "allowedInbound": [{"protocol": "tcp", "destinationPorts": ["443", "8000-8080"],
                                  "allowedIps": ["any"]}]}]
    out = d.appliance.updateNetworkApplianceFirewallOneToOneNatRules(NET, rules)
    assert out["rules"] == rules
    assert d.appliance.getNetworkApplianceFirewallOneToOneNatRules(NET)["rules"] == rules
    for bad, needle in (({**rules[0], "lanIp": "10.0.1.300"}, "lanIp"),
                        ({**rules[0], "uplink": "wan9"}, "uplink"),
                        ({**rules[0], "allowedInbound": [{"protocol": "icmp-ping", "destinationPorts": ["80"]}]},
                         "destinationPorts")):
        with pytest.raises(meraki.APIError) as e:
            d.appliance.updateNetworkApplianceFirewallOneToOneNatRules(NET, [bad])
        assert e.value.status == 400 and needle in str(e.value.message)
    assert sim.state()["networks"][NET]["oneToOneNat"]["rules"] == rules
    pf = [{"name": "ssh", "lanIp": "10.0.1.21", "uplink": "both", "publicPort": "2222", "localPort": "22",
           "allowedIps": ["any"], "protocol": "tcp"}]
    assert d.appliance.updateNetworkApplianceFirewallPortForwardingRules(NET, pf)["rules"] == pf
