#!/usr/bin/env python3
"""Meraki Dashboard API v1 simulator (MX appliance subset) for Rampart's tests.

Run: python3 testbed/sims/meraki_sim.py --port 0 [--plain-http] [--state-file F]
See docs/simulators.md for the behaviour and the fault-injection API.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import threading
import urllib.parse
from typing import Any, Optional

import simlib
from simlib import HttpError, Request, Response

API = "/api/v1"
ORG_ID = "549236"
NET_RE = r"(?P<net>[A-Za-z0-9_-]+)"
ORG_RE = r"(?P<org>[0-9A-Za-z_-]+)"

DEFAULT_L3 = {"comment": "Default rule", "policy": "allow", "protocol": "Any", "srcPort": "Any",
              "srcCidr": "Any", "destPort": "Any", "destCidr": "Any", "syslogEnabled": False}
L7_TYPES = {"application", "applicationCategory", "host", "port", "ipRange", "blockedCountries",
            "allowedCountries"}
SYNC_BATCH_MAX = 20
# Status words of the published OpenAPI (getOrganizationApplianceUplinkStatuses,
# getOrganizationDevicesStatuses).
UPLINK_STATUSES = ("active", "ready", "connecting", "not connected", "failed")
DEVICE_STATUSES = ("online", "alerting", "offline", "dormant")
REPORTED_AT = "2026-01-05T10:00:00Z"


def err(status: int, *messages: str) -> HttpError:
    return HttpError(status, messages[0], body={"errors": list(messages)})


def valid_cidr_list(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    if value.strip().lower() == "any":
        return True
    for part in value.split(","):
        part = part.strip()
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            return False
    return True


def valid_port_spec(value: Any) -> bool:
    """Meraki ports: 'Any', a port, a range 'a-b' or a comma list of those."""
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return False
    if value.strip().lower() == "any":
        return True
    for part in value.split(","):
        bounds = part.strip().split("-")
        if len(bounds) > 2:
            return False
        try:
            nums = [int(b) for b in bounds]
        except ValueError:
            return False
        if any(n < 1 or n > 65535 for n in nums) or (len(nums) == 2 and nums[0] > nums[1]):
            return False
    return True


def seed_device(nid: str, i: int) -> dict:
    """The network's MX: online, wan1 carrying traffic, wan2 on standby."""
    return {"serial": f"Q2MX-{i:04d}-RMPT", "model": "MX68", "name": f"Branch {i:02d} MX",
            "mac": f"00:18:0a:00:00:{i:02x}", "networkId": nid, "status": "online",
            "uplinks": {"wan1": {"status": "active", "ip": f"198.51.100.{i}", "gateway": "198.51.100.254"},
                        "wan2": {"status": "ready", "ip": f"203.0.113.{i}", "gateway": "203.0.113.254"}}}


def page(req: Request, base_url: str, items: list[dict], key: str, max_per_page: int) -> Response:
    """One page of `items` (sorted by `key`) with the Dashboard's
    perPage/startingAfter/endingBefore parameters and absolute Link headers."""
    raw = req.q("perPage", str(min(1000, max_per_page)))
    try:
        per_page = int(raw)
    except ValueError:
        raise err(400, f"'perPage' must be an integer, got '{raw}'")
    if not 3 <= per_page <= max_per_page:
        raise err(400, f"'perPage' must be between 3 and {max_per_page}")
    items = sorted(items, key=lambda n: n[key])
    after, before = req.q("startingAfter"), req.q("endingBefore")
    if after is not None:
        window = [n for n in items if n[key] > after][:per_page]
    elif before is not None:
        window = [n for n in items if n[key] < before][-per_page:]
    else:
        window = items[:per_page]
    # Absolute URLs like the real API, named after the Host the client used.
    host = req.headers.get("Host")
    scheme = base_url.split("://")[0]
    base = f"{scheme}://{host}{req.path}" if host else f"{base_url}{req.path}"

    def link(param, value):
        return f"<{base}?{urllib.parse.urlencode({'perPage': per_page, param: value})}>"

    links = [link("startingAfter", "0") + "; rel=first"]
    if window and items and window[0][key] > items[0][key]:
        links.append(link("endingBefore", window[0][key]) + "; rel=prev")
    if window and window[-1][key] < items[-1][key]:
        links.append(link("startingAfter", window[-1][key]) + "; rel=next")
    links.append(link("endingBefore", "zzzzzzzzzzzzzzzz") + "; rel=last")
    return Response(200, window, headers={"Link": ", ".join(links)})


def array_param(req: Request, name: str) -> Optional[set[str]]:
    """`name[]=a&name[]=b` (what the SDK sends for array parameters)."""
    vals = req.query.get(name + "[]", []) + req.query.get(name, [])
    return set(vals) if vals else None


class MerakiSim(simlib.Simulator):
    name = "meraki"
    default_rps = 10.0

    @staticmethod
    def extra_args(parser):
        parser.add_argument("--api-key", action="append", default=None,
                            help="accepted API key (repeatable; default 'rampart-sim-key')")
        parser.add_argument("--networks", type=int, default=5, help="networks seeded in the org")
        parser.add_argument("--batch-delay-ms", type=int, default=100,
                            help="how long an asynchronous confirmed action batch stays pending")

    def __init__(self, args):
        self.keys = set(args.api_key or ["rampart-sim-key"])
        super().__init__(args)

    # ----- state -----------------------------------------------------------
    def seed(self) -> dict:
        nets = {}
        for i in range(1, self.args.networks + 1):
            nid = f"L_64689999990000{i:02d}"
            nets[nid] = {
                "info": {"id": nid, "organizationId": ORG_ID, "name": f"Branch {i:02d}",
                         "productTypes": ["appliance"], "timeZone": "Europe/Paris", "tags": [],
                         "enrollmentString": None, "notes": "", "isBoundToConfigTemplate": False,
                         "url": f"https://n1.meraki.com/Branch-{i:02d}/n/{nid}/manage/usage/list"},
                "l3": {"rules": [], "syslogDefaultRule": False},
                "l7": {"rules": []},
                "inbound": {"rules": [], "syslogDefaultRule": False},
                "portForwarding": {"rules": []},
                "oneToOneNat": {"rules": []},
                "siteToSiteVpn": {"mode": "none", "hubs": [], "subnets": []},
                "device": seed_device(nid, i),
            }
        return {
            "organizations": {ORG_ID: {"id": ORG_ID, "name": "Rampart Lab",
                                       "url": "https://n1.meraki.com/o/x/manage/organization/overview",
                                       "api": {"enabled": True}, "licensing": {"model": "co-term"},
                                       "cloud": {"region": {"name": "Europe"}},
                                       "management": {"details": []}}},
            "networks": nets,
            "actionBatches": {},
            "nextBatch": 1,
        }

    def register_routes(self):
        r = self.route
        r("GET", API + "/organizations", self.get_orgs)
        r("GET", API + f"/organizations/{ORG_RE}", self.get_org)
        r("GET", API + f"/organizations/{ORG_RE}/networks", self.get_networks)
        r("GET", API + f"/networks/{NET_RE}", self.get_network)
        for name, key in (("l3FirewallRules", "l3"), ("l7FirewallRules", "l7"),
                          ("inboundFirewallRules", "inbound"),
                          ("portForwardingRules", "portForwarding"),
                          ("oneToOneNatRules", "oneToOneNat")):
            r("GET", API + f"/networks/{NET_RE}/appliance/firewall/{name}",
              lambda req, key=key: self.get_rules(req, key))
            r("PUT", API + f"/networks/{NET_RE}/appliance/firewall/{name}",
              lambda req, key=key: self.put_rules(req, key))
        r("GET", API + f"/networks/{NET_RE}/appliance/vpn/siteToSiteVpn", self.get_vpn)
        r("PUT", API + f"/networks/{NET_RE}/appliance/vpn/siteToSiteVpn", self.put_vpn)
        r("GET", API + f"/organizations/{ORG_RE}/appliance/uplink/statuses", self.uplink_statuses)
        r("GET", API + f"/organizations/{ORG_RE}/devices/statuses", self.device_statuses)
        r("POST", API + f"/organizations/{ORG_RE}/actionBatches", self.create_batch)
        r("GET", API + f"/organizations/{ORG_RE}/actionBatches", self.list_batches)
        r("GET", API + f"/organizations/{ORG_RE}/actionBatches/(?P<batch>[0-9]+)", self.get_batch)
        r("PUT", API + f"/organizations/{ORG_RE}/actionBatches/(?P<batch>[0-9]+)", self.update_batch)
        r("DELETE", API + f"/organizations/{ORG_RE}/actionBatches/(?P<batch>[0-9]+)", self.delete_batch)

    def error_response(self, e: HttpError) -> Response:
        body = e.body if e.body is not None else {"errors": [e.message]}
        return Response(e.status, body, headers=e.headers)

    def rate_limited_response(self, retry_after: int) -> Response:
        return Response(429, {"errors": ["API rate limit exceeded for organization"]},
                        headers={"Retry-After": str(retry_after)})

    # ----- auth and rate limiting ------------------------------------------
    def dispatch(self, req: Request) -> Optional[Response]:
        if req.path == "/_sim/device" and req.method == "POST":
            return self.set_device_state(req)
        if req.path.startswith(API + "/"):
            key = req.headers.get("X-Cisco-Meraki-API-Key")
            auth = req.headers.get("Authorization", "")
            if not key and auth.lower().startswith("bearer "):
                key = auth[7:].strip()
            if key not in self.keys:
                return Response(401, {"errors": ["Invalid API key"]})
        return super().dispatch(req)

    def rate_key(self, req: Request) -> Optional[str]:
        parts = req.path.split("/")
        # /api/v1/organizations/{org}/... or /api/v1/networks/{net}/...
        if len(parts) > 4 and parts[3] == "organizations":
            return "org:" + parts[4]
        if len(parts) > 4 and parts[3] == "networks":
            with self.lock:
                net = self.state["networks"].get(parts[4])
            return "org:" + (net["info"]["organizationId"] if net else "unknown")
        return "key:" + (req.headers.get("X-Cisco-Meraki-API-Key") or req.headers.get("Authorization", ""))

    # ----- lookups ---------------------------------------------------------
    def org(self, org_id: str) -> dict:
        org = self.state["organizations"].get(org_id)
        if org is None:
            raise err(404, "Organization not found")
        return org

    def net(self, net_id: str) -> dict:
        net = self.state["networks"].get(net_id)
        if net is None:
            raise err(404, "Network not found")
        return net

    # ----- organizations and networks ---------------------------------------
    def get_orgs(self, req):
        with self.lock:
            return list(self.state["organizations"].values())

    def get_org(self, req):
        with self.lock:
            return self.org(req.params["org"])

    def get_network(self, req):
        with self.lock:
            return self.net(req.params["net"])["info"]

    def get_networks(self, req):
        with self.lock:
            self.org(req.params["org"])
            nets = sorted((n["info"] for n in self.state["networks"].values()
                           if n["info"]["organizationId"] == req.params["org"]), key=lambda n: n["id"])
        return page(req, self.base_url, nets, "id", 100000)

    # ----- device state (monitor) ---------------------------------------------
    def org_devices(self, req) -> list[dict]:
        """The org's appliances after the networkIds[]/serials[] filters."""
        nets, serials = array_param(req, "networkIds"), array_param(req, "serials")
        self.org(req.params["org"])
        return [copy.deepcopy(n["device"]) for nid, n in self.state["networks"].items()
                if n["info"]["organizationId"] == req.params["org"] and "device" in n
                and (nets is None or nid in nets) and (serials is None or n["device"]["serial"] in serials)]

    def uplink_statuses(self, req):
        with self.lock:
            devices = self.org_devices(req)
        out = [{"networkId": d["networkId"], "serial": d["serial"], "model": d["model"],
                "lastReportedAt": REPORTED_AT, "highAvailability": {"enabled": False, "role": "primary"},
                "uplinks": [{"interface": name, "status": u["status"],
                             "ip": u["ip"] if u["status"] in ("active", "ready") else None,
                             "gateway": u["gateway"], "publicIp": u["ip"], "primaryDns": "8.8.8.8",
                             "secondaryDns": "8.8.4.4", "ipAssignedBy": "static"}
                            for name, u in sorted(d["uplinks"].items())]}
               for d in devices]
        return page(req, self.base_url, out, "serial", 1000)

    def device_statuses(self, req):
        statuses = array_param(req, "statuses")
        if statuses and not statuses <= set(DEVICE_STATUSES):
            raise err(400, f"'statuses' must be among {list(DEVICE_STATUSES)}")
        types = array_param(req, "productTypes")
        with self.lock:
            devices = self.org_devices(req)
        out = [{"name": d["name"], "serial": d["serial"], "mac": d["mac"], "publicIp": d["uplinks"]["wan1"]["ip"],
                "networkId": d["networkId"], "status": d["status"], "lastReportedAt": REPORTED_AT,
                "lanIp": None, "gateway": d["uplinks"]["wan1"]["gateway"], "ipType": "static",
                "primaryDns": "8.8.8.8", "secondaryDns": "8.8.4.4", "productType": "appliance",
                "model": d["model"], "tags": [], "components": {"powerSupplies": []}}
               for d in devices
               if (statuses is None or d["status"] in statuses) and (types is None or "appliance" in types)]
        return page(req, self.base_url, out, "serial", 1000)

    def set_device_state(self, req: Request) -> Response:
        """POST /_sim/device {"serial": S[, "status": online|alerting|offline|dormant]
        [, "uplinks": {"wan1": "failed", ...}]}: the device or its links change."""
        try:
            doc = json.loads(req.body or b"{}")
        except ValueError as exc:
            return Response(400, {"error": f"malformed JSON: {exc}"})
        if not isinstance(doc, dict) or not isinstance(doc.get("serial"), str):
            return Response(400, {"error": "expected an object with 'serial'"})
        unknown = set(doc) - {"serial", "status", "uplinks"}
        if unknown:
            return Response(400, {"error": f"unknown keys {sorted(unknown)}"})
        if "status" in doc and doc["status"] not in DEVICE_STATUSES:
            return Response(400, {"error": f"'status' must be one of {list(DEVICE_STATUSES)}"})
        ups = doc.get("uplinks", {})
        if not isinstance(ups, dict) or any(v not in UPLINK_STATUSES for v in ups.values()):
            return Response(400, {"error": f"'uplinks' maps interface to one of {list(UPLINK_STATUSES)}"})
        with self.lock:
            dev = next((n["device"] for n in self.state["networks"].values()
                        if n.get("device", {}).get("serial") == doc["serial"]), None)
            if dev is None:
                return Response(404, {"error": f"no device with serial {doc['serial']!r}"})
            missing = set(ups) - set(dev["uplinks"])
            if missing:
                return Response(404, {"error": f"device has no uplink {sorted(missing)}"})
            for name, status in ups.items():
                dev["uplinks"][name]["status"] = status
            dev["status"] = doc.get("status", dev["status"])
            self.save()
            return Response(200, copy.deepcopy(dev))

    # ----- firewall rule sets -----------------------------------------------
    def get_rules(self, req, key):
        with self.lock:
            return self.render_rules(self.net(req.params["net"]), key)

    def render_rules(self, net: dict, key: str) -> dict:
        doc = copy.deepcopy(net[key])
        if key in ("l3", "inbound"):
            default = dict(DEFAULT_L3)
            default["syslogEnabled"] = bool(doc.get("syslogDefaultRule", False))
            doc["rules"].append(default)
            doc.pop("syslogDefaultRule", None)
            if key == "l3":
                doc["syslogDefaultRule"] = default["syslogEnabled"]
        return doc

    def put_rules(self, req, key):
        body = req.obj()
        with self.lock:
            net = self.net(req.params["net"])
            new = copy.deepcopy(net[key])
            if "rules" in body:
                rules = body["rules"]
                if not isinstance(rules, list):
                    raise err(400, "'rules' must be an array")
                validator = {"l3": self.l3_rule, "inbound": self.l3_rule, "l7": self.l7_rule,
                             "portForwarding": self.pf_rule, "oneToOneNat": self.nat_rule}[key]
                errors, clean = [], []
                for i, rule in enumerate(rules):
                    try:
                        clean.append(validator(rule, i))
                    except HttpError as e:
                        errors.append(e.message)
                if errors:
                    raise err(400, *errors)
                new["rules"] = clean
            if "syslogDefaultRule" in body and key in ("l3", "inbound"):
                if not isinstance(body["syslogDefaultRule"], bool):
                    raise err(400, "'syslogDefaultRule' must be a boolean")
                new["syslogDefaultRule"] = body["syslogDefaultRule"]
            net[key] = new
            self.save()
            return self.render_rules(net, key)

    def l3_rule(self, rule: Any, i: int) -> dict:
        where = f"Firewall rule {i + 1}"
        if not isinstance(rule, dict):
            raise err(400, f"{where}: must be an object")
        policy = rule.get("policy")
        if policy not in ("allow", "deny"):
            raise err(400, f"{where}: 'policy' must be one of: 'allow' or 'deny' (got {policy!r})")
        proto = str(rule.get("protocol", "")).lower()
        if proto not in ("tcp", "udp", "icmp", "icmp6", "any"):
            raise err(400, f"{where}: 'protocol' must be one of: 'tcp', 'udp', 'icmp', 'icmp6' or "
                           f"'any' (got {rule.get('protocol')!r})")
        out = {"comment": str(rule.get("comment", "")), "policy": policy, "protocol": proto}
        for field in ("srcCidr", "destCidr"):
            if field not in rule:
                raise err(400, f"{where}: '{field}' is required")
            if not valid_cidr_list(rule[field]):
                raise err(400, f"{where}: '{rule[field]}' is not a valid {field}; use 'Any', an IP "
                               f"address or a CIDR, comma separated")
            out[field] = "Any" if str(rule[field]).lower() == "any" else rule[field]
        for field in ("srcPort", "destPort"):
            val = rule.get(field, "Any")
            if not valid_port_spec(val):
                raise err(400, f"{where}: '{val}' is not a valid {field}; use 'Any', a port (1-65535), "
                               f"a range or a comma separated list")
            if proto not in ("tcp", "udp") and str(val).lower() != "any":
                raise err(400, f"{where}: '{field}' must be 'Any' when protocol is '{proto}'")
            out[field] = "Any" if str(val).lower() == "any" else str(val)
        syslog = rule.get("syslogEnabled", False)
        if not isinstance(syslog, bool):
            raise err(400, f"{where}: 'syslogEnabled' must be a boolean")
        out["syslogEnabled"] = syslog
        return out

    def l7_rule(self, rule: Any, i: int) -> dict:
        where = f"Layer 7 rule {i + 1}"
        if not isinstance(rule, dict):
            raise err(400, f"{where}: must be an object")
        if rule.get("policy") != "deny":
            raise err(400, f"{where}: 'policy' must be 'deny' (got {rule.get('policy')!r})")
        if rule.get("type") not in L7_TYPES:
            raise err(400, f"{where}: 'type' must be one of {sorted(L7_TYPES)} (got {rule.get('type')!r})")
        if "value" not in rule:
            raise err(400, f"{where}: 'value' is required")
        if rule["type"] == "port" and not valid_port_spec(rule["value"]):
            raise err(400, f"{where}: '{rule['value']}' is not a valid port")
        if rule["type"] == "ipRange" and not valid_cidr_list(str(rule["value"]).split(":")[0]):
            raise err(400, f"{where}: '{rule['value']}' is not a valid IP range")
        return {"policy": "deny", "type": rule["type"], "value": rule["value"]}

    def pf_rule(self, rule: Any, i: int) -> dict:
        where = f"Port forwarding rule {i + 1}"
        if not isinstance(rule, dict):
            raise err(400, f"{where}: must be an object")
        for field in ("lanIp", "publicPort", "localPort", "protocol"):
            if field not in rule:
                raise err(400, f"{where}: '{field}' is required")
        try:
            ipaddress.ip_address(rule["lanIp"])
        except (ValueError, TypeError):
            raise err(400, f"{where}: 'lanIp' '{rule['lanIp']}' is not a valid IP address")
        for field in ("publicPort", "localPort"):
            if not valid_port_spec(rule[field]) or str(rule[field]).lower() == "any":
                raise err(400, f"{where}: '{rule[field]}' is not a valid {field}")
        if rule["protocol"] not in ("tcp", "udp"):
            raise err(400, f"{where}: 'protocol' must be 'tcp' or 'udp'")
        uplink = rule.get("uplink", "both")
        if uplink not in ("internet1", "internet2", "both"):
            raise err(400, f"{where}: 'uplink' must be one of 'internet1', 'internet2' or 'both'")
        allowed = rule.get("allowedIps", ["any"])
        if not isinstance(allowed, list) or not all(valid_cidr_list(a) for a in allowed):
            raise err(400, f"{where}: 'allowedIps' must be a list of 'any' or CIDRs")
        return {"name": str(rule.get("name", "")), "lanIp": rule["lanIp"], "uplink": uplink,
                "publicPort": str(rule["publicPort"]), "localPort": str(rule["localPort"]),
                "allowedIps": allowed, "protocol": rule["protocol"]}

    def nat_rule(self, rule: Any, i: int) -> dict:
        where = f"1:1 NAT rule {i + 1}"
        if not isinstance(rule, dict):
            raise err(400, f"{where}: must be an object")
        for field in ("publicIp", "lanIp"):
            try:
                ipaddress.ip_address(rule.get(field))
            except (ValueError, TypeError):
                raise err(400, f"{where}: '{field}' {rule.get(field)!r} is not a valid IP address")
        uplink = rule.get("uplink", "internet1")
        if uplink not in ("internet1", "internet2"):
            raise err(400, f"{where}: 'uplink' must be 'internet1' or 'internet2'")
        inbound = rule.get("allowedInbound", [])
        if not isinstance(inbound, list):
            raise err(400, f"{where}: 'allowedInbound' must be an array")
        clean = []
        for j, a in enumerate(inbound):
            if not isinstance(a, dict) or a.get("protocol") not in ("tcp", "udp", "icmp-ping", "any"):
                raise err(400, f"{where}: allowedInbound {j + 1}: 'protocol' must be tcp, udp, "
                               f"icmp-ping or any")
            ports = a.get("destinationPorts", ["any"])
            if not isinstance(ports, list) or not all(valid_port_spec(p) for p in ports):
                raise err(400, f"{where}: allowedInbound {j + 1}: invalid destinationPorts")
            if a["protocol"] not in ("tcp", "udp") and ports != ["any"]:
                raise err(400, f"{where}: allowedInbound {j + 1}: destinationPorts must be 'any' for "
                               f"protocol '{a['protocol']}'")
            allowed = a.get("allowedIps", ["any"])
            if not isinstance(allowed, list) or not all(valid_cidr_list(x) for x in allowed):
                raise err(400, f"{where}: allowedInbound {j + 1}: 'allowedIps' must be a list of 'any' or CIDRs")
            clean.append({"protocol": a["protocol"], "destinationPorts": [str(p) for p in ports],
                          "allowedIps": allowed})
        return {"name": str(rule.get("name", "")), "publicIp": rule["publicIp"], "lanIp": rule["lanIp"],
                "uplink": uplink, "allowedInbound": clean}

    # ----- site-to-site VPN ---------------------------------------------------
    def get_vpn(self, req):
        with self.lock:
            return copy.deepcopy(self.net(req.params["net"])["siteToSiteVpn"])

    def put_vpn(self, req):
        body = req.obj()
        with self.lock:
            net = self.net(req.params["net"])
            cur = copy.deepcopy(net["siteToSiteVpn"])
            mode = body.get("mode")
            if mode not in ("none", "spoke", "hub"):
                raise err(400, f"'mode' must be one of 'none', 'spoke' or 'hub' (got {mode!r})")
            cur["mode"] = mode
            if "hubs" in body:
                hubs = body["hubs"]
                if not isinstance(hubs, list):
                    raise err(400, "'hubs' must be an array")
                for h in hubs:
                    hub = self.state["networks"].get(h.get("hubId") if isinstance(h, dict) else None)
                    if hub is None:
                        raise err(400, f"Hub {h!r} is not a network in this organization")
                    if hub["siteToSiteVpn"]["mode"] != "hub":
                        raise err(400, f"Network {h['hubId']} is not configured as a hub")
                cur["hubs"] = [{"hubId": h["hubId"], "useDefaultRoute": bool(h.get("useDefaultRoute", False))}
                               for h in hubs]
            if mode == "spoke" and not cur["hubs"]:
                raise err(400, "At least one hub is required when mode is 'spoke'")
            if mode != "spoke":
                cur["hubs"] = []
            if "subnets" in body:
                subnets = body["subnets"]
                if not isinstance(subnets, list):
                    raise err(400, "'subnets' must be an array")
                for s in subnets:
                    try:
                        ipaddress.ip_network(s.get("localSubnet"), strict=True)
                    except (ValueError, TypeError, AttributeError):
                        raise err(400, f"Invalid localSubnet {s!r}: must be a CIDR like 10.0.0.0/24")
                cur["subnets"] = [{"localSubnet": s["localSubnet"], "useVpn": bool(s.get("useVpn", True))}
                                  for s in subnets]
            net["siteToSiteVpn"] = cur
            self.save()
            return copy.deepcopy(cur)

    # ----- action batches -------------------------------------------------------
    def create_batch(self, req):
        body = req.obj()
        with self.lock:
            org = self.org(req.params["org"])
            actions = body.get("actions")
            if not isinstance(actions, list) or not actions:
                raise err(400, "'actions' must be a non-empty array")
            for i, a in enumerate(actions):
                if not isinstance(a, dict) or not isinstance(a.get("resource"), str) or "operation" not in a:
                    raise err(400, f"Action {i + 1}: 'resource' and 'operation' are required")
                if a["operation"] not in ("create", "update", "destroy"):
                    raise err(400, f"Action {i + 1}: unknown operation '{a['operation']}'")
            sync = bool(body.get("synchronous", False))
            if sync and len(actions) > SYNC_BATCH_MAX:
                raise err(400, f"Synchronous batches are limited to {SYNC_BATCH_MAX} actions")
            bid = str(self.state["nextBatch"])
            self.state["nextBatch"] += 1
            batch = {"id": bid, "organizationId": org["id"], "confirmed": bool(body.get("confirmed", False)),
                     "synchronous": sync, "status": {"completed": False, "failed": False, "errors": [],
                                                      "createdResources": []},
                     "actions": actions, "callback": body.get("callback", {})}
            self.state["actionBatches"][bid] = batch
            self.start_if_confirmed(batch)
            self.save()
            return Response(201, copy.deepcopy(batch))

    def start_if_confirmed(self, batch: dict) -> None:
        if not batch["confirmed"]:
            return
        if batch["synchronous"]:
            self.run_batch(batch)
        else:
            threading.Timer(self.args.batch_delay_ms / 1000.0, self.run_batch_later, (batch["id"],)).start()

    def run_batch_later(self, bid: str) -> None:
        with self.lock:
            batch = self.state["actionBatches"].get(bid)
            if batch and not batch["status"]["completed"] and not batch["status"]["failed"]:
                self.run_batch(batch)
                self.save()

    def run_batch(self, batch: dict) -> None:
        """Applies all actions or none: the state is restored when one fails."""
        snapshot = copy.deepcopy(self.state["networks"])
        errors = []
        for i, a in enumerate(batch["actions"]):
            if a["operation"] != "update":
                errors.append(f"Action {i + 1}: operation '{a['operation']}' is not supported on "
                              f"{a['resource']}")
                break
            fake = Request("PUT", API + a["resource"], {}, b"", "batch")
            fake.body = simlib.json.dumps(a.get("body", {})).encode()
            handler = None
            for method, pattern, h in self.routes:
                m = pattern.match(fake.path)
                if m and method == "PUT":
                    fake.params, handler = m.groupdict(), h
                    break
            if handler is None:
                errors.append(f"Action {i + 1}: resource '{a['resource']}' does not support 'update'")
                break
            try:
                handler(fake)
            except HttpError as e:
                msgs = e.body.get("errors", [e.message]) if isinstance(e.body, dict) else [e.message]
                errors.extend(f"Action {i + 1}: {m}" for m in msgs)
                break
        if errors:
            self.state["networks"] = snapshot
            batch["status"] = {"completed": False, "failed": True, "errors": errors, "createdResources": []}
        else:
            batch["status"] = {"completed": True, "failed": False, "errors": [], "createdResources": []}

    def batch(self, req) -> dict:
        self.org(req.params["org"])
        b = self.state["actionBatches"].get(req.params["batch"])
        if b is None or b["organizationId"] != req.params["org"]:
            raise err(404, "Action batch not found")
        return b

    def list_batches(self, req):
        with self.lock:
            self.org(req.params["org"])
            return [copy.deepcopy(b) for b in self.state["actionBatches"].values()
                    if b["organizationId"] == req.params["org"]]

    def get_batch(self, req):
        with self.lock:
            return copy.deepcopy(self.batch(req))

    def update_batch(self, req):
        body = req.obj()
        with self.lock:
            b = self.batch(req)
            if body.get("confirmed") is True and not b["confirmed"]:
                b["confirmed"] = True
                if "synchronous" in body:
                    b["synchronous"] = bool(body["synchronous"])
                self.start_if_confirmed(b)
            elif body.get("confirmed") is False and b["confirmed"]:
                raise err(400, "A confirmed action batch cannot be unconfirmed")
            self.save()
            return copy.deepcopy(b)

    def delete_batch(self, req):
        with self.lock:
            b = self.batch(req)
            if b["confirmed"]:
                raise err(400, "Only unconfirmed action batches can be deleted")
            del self.state["actionBatches"][b["id"]]
            self.save()
            return Response(204, None)


if __name__ == "__main__":
    simlib.serve(MerakiSim, __doc__)
