#!/usr/bin/env python3
"""Firepower Device Manager (FTD) REST API simulator for Rampart's tests.

Base path /api/fdm/v6 (also /api/fdm/latest). Changes are staged; they reach
the "deployed" configuration only through a deploy job.

Run: python3 testbed/sims/fdm_sim.py --port 0 [--plain-http] [--token-ttl 1800]
See docs/simulators.md for the behaviour and the fault-injection API.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import secrets
import threading
import time
import uuid
from typing import Any, Optional

import simlib
from simlib import HttpError, Request, Response

BASE = r"/api/fdm/(?:v6|latest)"
ID = r"(?P<id>[0-9a-fA-F-]{36})"
PARENT = r"(?P<parent>[0-9a-fA-F-]{36})"

# collection name -> (object type, subtype validator name)
OBJECTS = {
    "networks": "networkobject",
    "networkgroups": "networkobjectgroup",
    "tcpports": "tcpportobject",
    "udpports": "udpportobject",
    "securityzones": "securityzone",
}
CHILDREN = {"accessrules": ("accesspolicies", "accessrule"),
            "objectnatrules": ("objectnatpolicies", "objectnatrule"),
            "manualnatrules": ("manualnatpolicies", "manualnatrule")}
RULE_ACTIONS = {"PERMIT", "DENY", "TRUST"}
LOG_ACTIONS = {"LOG_NONE", "LOG_FLOW_START", "LOG_FLOW_END", "LOG_BOTH"}


def fdm_error(status: int, description: str, code: str = "invalidValue", location: str = "",
              key: str = "Validation") -> HttpError:
    return HttpError(status, description, body={"error": {"severity": "ERROR", "key": key, "messages": [
        {"description": description, "code": code, "location": location}]}})


def new_version() -> str:
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(13))


class FdmSim(simlib.Simulator):
    name = "fdm"
    extra_fault_keys = {"deploy_fail", "expire_tokens"}

    @staticmethod
    def extra_args(parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="Admin123")
        parser.add_argument("--token-ttl", type=float, default=1800, help="access token lifetime (s)")
        parser.add_argument("--refresh-ttl", type=float, default=2400, help="refresh token lifetime (s)")
        parser.add_argument("--deploy-queued-ms", type=int, default=100)
        parser.add_argument("--deploy-ms", type=int, default=300)

    def __init__(self, args):
        self.tokens: dict[str, float] = {}
        self.refresh: dict[str, float] = {}
        super().__init__(args)

    # ----- state -----------------------------------------------------------------
    def seed(self) -> dict:
        def obj(kind, name, **kw):
            return {"id": str(uuid.uuid4()), "name": name, "version": new_version(), "type": kind, **kw}

        inside = obj("securityzone", "inside_zone", mode="ROUTED", interfaces=[])
        outside = obj("securityzone", "outside_zone", mode="ROUTED", interfaces=[])
        any4 = obj("networkobject", "any-ipv4", subType="NETWORK", value="0.0.0.0/0", isSystemDefined=True)
        policy = obj("accesspolicy", "NGFW-Access-Policy",
                     defaultAction={"action": "DENY", "eventLogAction": "LOG_NONE",
                                    "type": "accessdefaultaction"})
        natpol = obj("objectnatpolicy", "ObjectNatPolicy")
        # Interfaces: `name` is the logical name (nameif) NAT rules reference.
        ifaces = [obj("physicalinterface", n, hardwareName=hw, mode="ROUTED", enabled=True, linkState="UP")
                  for n, hw in (("outside", "GigabitEthernet0/0"), ("inside", "GigabitEthernet0/1"),
                                ("dmz", "GigabitEthernet0/2"), ("diagnostic", "Management0/0"))]
        manual = obj("manualnatpolicy", "NGFW-Before-Auto-NAT-Policy")
        staged = {"networks": [any4], "networkgroups": [], "tcpports": [], "udpports": [],
                  "securityzones": [inside, outside], "interfaces": ifaces, "accesspolicies": [policy],
                  "objectnatpolicies": [natpol], "manualnatpolicies": [manual],
                  "accessrules": {policy["id"]: []}, "objectnatrules": {natpol["id"]: []},
                  "manualnatrules": {manual["id"]: []}}
        return {"staged": staged, "deployed": copy.deepcopy(staged), "jobs": [], "nextRuleId": 268435457,
                "hits": {}}

    def public_state(self) -> dict:
        return self.state

    def register_routes(self):
        r = self.route
        r("POST", BASE + "/fdm/token", self.token)
        for coll in OBJECTS:
            r("GET", BASE + f"/object/{coll}", lambda q, c=coll: self.list_objects(q, c))
            r("POST", BASE + f"/object/{coll}", lambda q, c=coll: self.create_object(q, c))
            r("GET", BASE + f"/object/{coll}/{ID}", lambda q, c=coll: self.get_object(q, c))
            r("PUT", BASE + f"/object/{coll}/{ID}", lambda q, c=coll: self.update_object(q, c))
            r("DELETE", BASE + f"/object/{coll}/{ID}", lambda q, c=coll: self.delete_object(q, c))
        r("GET", BASE + "/devices/default/interfaces", lambda q: self.list_objects(q, "interfaces"))
        r("GET", BASE + f"/devices/default/interfaces/{ID}", lambda q: self.get_object(q, "interfaces"))
        for coll in ("accesspolicies", "objectnatpolicies", "manualnatpolicies"):
            r("GET", BASE + f"/policy/{coll}", lambda q, c=coll: self.list_objects(q, c))
            r("GET", BASE + f"/policy/{coll}/{ID}", lambda q, c=coll: self.get_object(q, c))
            r("PUT", BASE + f"/policy/{coll}/{ID}", lambda q, c=coll: self.update_object(q, c))
        for coll, (parent, _) in CHILDREN.items():
            r("GET", BASE + f"/policy/{parent}/{PARENT}/{coll}", lambda q, c=coll: self.list_rules(q, c))
            r("POST", BASE + f"/policy/{parent}/{PARENT}/{coll}", lambda q, c=coll: self.create_rule(q, c))
            r("GET", BASE + f"/policy/{parent}/{PARENT}/{coll}/{ID}", lambda q, c=coll: self.get_rule(q, c))
            r("PUT", BASE + f"/policy/{parent}/{PARENT}/{coll}/{ID}", lambda q, c=coll: self.update_rule(q, c))
            r("DELETE", BASE + f"/policy/{parent}/{PARENT}/{coll}/{ID}",
              lambda q, c=coll: self.delete_rule(q, c))
        r("GET", BASE + f"/policy/accesspolicies/{PARENT}/operational/hitcounts", self.hitcounts)
        r("PUT", BASE + f"/policy/accesspolicies/{PARENT}/operational/hitcounts", self.hitcounts)
        r("GET", BASE + "/operational/pendingchanges", self.pending)
        r("POST", BASE + "/operational/deploy", self.deploy)
        r("GET", BASE + "/operational/deploy", self.list_jobs)
        r("GET", BASE + r"/operational/deploy/(?P<id>[0-9a-fA-F-]{36})", self.get_job)

    def error_response(self, e: HttpError) -> Response:
        if e.body is not None:
            return Response(e.status, e.body, headers=e.headers)
        key = {401: "AuthenticationError", 404: "NotFound", 405: "MethodNotAllowed"}.get(e.status, "Error")
        return Response(e.status, {"error": {"severity": "ERROR", "key": key, "messages": [
            {"description": e.message, "code": e.code or key, "location": ""}]}}, headers=e.headers)

    def rate_limited_response(self, retry_after: int) -> Response:
        # FDM has no documented rate limit; this only answers a `rate_limit` fault
        return Response(429, {"error": {"severity": "ERROR", "key": "TooManyRequests", "messages": [
            {"description": "Too many requests", "code": "tooManyRequests", "location": ""}]}},
            headers={"Retry-After": str(retry_after)})

    # ----- auth ----------------------------------------------------------------
    def dispatch(self, req: Request) -> Optional[Response]:
        if req.path in ("/_sim/hits", "/_sim/interface") and req.method == "POST":
            return self.admin_state(req)
        if req.path.startswith("/api/fdm/") and not req.path.endswith("/fdm/token"):
            auth = req.headers.get("Authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            with self.lock:
                if self.faults.extra.pop("expire_tokens", None):
                    self.tokens.clear()
                expiry = self.tokens.get(token or "")
            if expiry is None or expiry < time.time():
                return self.error_response(fdm_error(
                    401, "Access token invalid or expired" if token else "Authorization header is missing",
                    code="invalidToken" if token else "missingToken", key="AuthenticationError"))
        return super().dispatch(req)

    def token(self, req):
        body = req.obj()
        grant = body.get("grant_type")
        now = time.time()
        with self.lock:
            if grant == "password":
                if body.get("username") != self.args.username or body.get("password") != self.args.password:
                    raise fdm_error(400, "Invalid username or password", code="invalidCredentials",
                                    key="AuthenticationError")
            elif grant == "refresh_token":
                exp = self.refresh.pop(body.get("refresh_token", ""), None)
                if exp is None or exp < now:
                    raise fdm_error(400, "Refresh token invalid or expired", code="invalidRefreshToken",
                                    key="AuthenticationError")
            elif grant == "revoke_token":
                self.tokens.pop(body.get("token_to_revoke", ""), None)
                self.refresh.pop(body.get("token_to_revoke", ""), None)
                return Response(200, {})
            else:
                raise fdm_error(400, f"Unsupported grant_type {grant!r}; use password, refresh_token "
                                     f"or revoke_token", code="invalidGrantType", location="grant_type")
            access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            self.tokens[access] = now + self.args.token_ttl
            self.refresh[refresh] = now + self.args.refresh_ttl
        return {"access_token": access, "expires_in": int(self.args.token_ttl), "token_type": "Bearer",
                "refresh_token": refresh, "refresh_expires_in": int(self.args.refresh_ttl)}

    # ----- generic helpers -----------------------------------------------------------
    def links(self, req: Request, obj: dict) -> dict:
        out = dict(obj)
        out["links"] = {"self": f"{self.base_url}{req.path.rstrip('/')}"
                                + ("" if req.path.rstrip("/").endswith(obj["id"]) else f"/{obj['id']}")}
        return out

    def page(self, req: Request, items: list, own_filter: bool = False) -> dict:
        """One page of `items`; `filter` is applied here unless the handler
        reads it itself (own_filter)."""
        try:
            offset = int(req.q("offset", "0"))
            limit = int(req.q("limit", "10"))
        except ValueError:
            raise fdm_error(400, "offset and limit must be integers", code="invalidPaging")
        if offset < 0 or limit < 1:
            raise fdm_error(400, "offset must be >= 0 and limit >= 1", code="invalidPaging")
        flt = None if own_filter else req.q("filter")
        if flt:
            key, _, val = flt.partition(":")
            items = [i for i in items if str(i.get(key, "")) == val]
        window = items[offset:offset + limit]
        nxt = []
        if offset + limit < len(items):
            nxt = [f"{self.base_url}{req.path}?offset={offset + limit}&limit={limit}"]
        prev = [f"{self.base_url}{req.path}?offset={max(0, offset - limit)}&limit={limit}"] if offset else []
        return {"items": [self.links(req, i) for i in window],
                "paging": {"prev": prev, "next": nxt, "limit": limit, "offset": offset, "count": len(items)}}

    def find(self, coll: str, oid: str) -> dict:
        for o in self.state["staged"][coll]:
            if o["id"] == oid:
                return o
        raise fdm_error(404, f"No {coll[:-1]} with id {oid}", code="objectNotFound", key="NotFound")

    def check_version(self, cur: dict, body: dict) -> None:
        if "version" not in body:
            raise fdm_error(422, "The version field is required to update an object", code="missingVersion",
                            location="version")
        if body["version"] != cur["version"]:
            raise fdm_error(422, f"Version mismatch for {cur['type']} '{cur['name']}': request has "
                                 f"{body['version']}, current is {cur['version']}. Fetch the object and retry.",
                            code="versionMismatch", location="version", key="ConcurrentModification")

    def unique_name(self, coll: str, name: Any, exclude: Optional[str] = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise fdm_error(422, "The name field is required", code="missingName", location="name")
        for o in self.state["staged"][coll]:
            if o["name"] == name and o["id"] != exclude:
                raise fdm_error(422, f"An object named '{name}' already exists", code="duplicateName",
                                location="name", key="Duplicate")

    # ----- objects ---------------------------------------------------------------------
    def validate_object(self, coll: str, body: dict) -> dict:
        kind = OBJECTS.get(coll)
        if kind and body.get("type") != kind:
            raise fdm_error(422, f"type must be '{kind}' (got {body.get('type')!r})", code="invalidType",
                            location="type")
        out = {k: v for k, v in body.items() if k not in ("id", "version", "links")}
        if coll == "networks":
            sub, value = body.get("subType"), body.get("value")
            try:
                if sub == "HOST":
                    ipaddress.ip_address(value)
                elif sub == "NETWORK":
                    ipaddress.ip_network(value, strict=True)
                elif sub == "RANGE":
                    a, b = str(value).split("-")
                    if ipaddress.ip_address(a.strip()) > ipaddress.ip_address(b.strip()):
                        raise ValueError
                elif sub == "FQDN":
                    if not isinstance(value, str) or "." not in value:
                        raise ValueError
                else:
                    raise fdm_error(422, f"subType must be HOST, NETWORK, RANGE or FQDN (got {sub!r})",
                                    code="invalidSubType", location="subType")
            except (ValueError, TypeError):
                raise fdm_error(422, f"Invalid value '{value}' for a {sub} network object", code="invalidValue",
                                location="value")
        elif coll in ("tcpports", "udpports"):
            port = str(body.get("port", ""))
            parts = port.split("-")
            if not (1 <= len(parts) <= 2 and all(p.isdigit() and 1 <= int(p) <= 65535 for p in parts)) or \
                    (len(parts) == 2 and int(parts[0]) > int(parts[1])):
                raise fdm_error(422, f"Invalid port '{port}': use a port 1-65535 or a range a-b",
                                code="invalidPort", location="port")
            out["port"] = port
        elif coll == "networkgroups":
            if not isinstance(body.get("objects", []), list):
                raise fdm_error(422, "objects must be an array of references", location="objects")
            for ref in body.get("objects", []):
                self.resolve(ref, ("networkobject", "networkobjectgroup"), "objects")
        elif coll == "accesspolicies":
            default = body.get("defaultAction") or {}
            if not isinstance(default, dict):
                raise fdm_error(422, "defaultAction must be an object", location="defaultAction")
            action = default.get("action", "DENY")
            if action not in ("PERMIT", "DENY", "TRUST"):
                raise fdm_error(422, f"defaultAction.action must be PERMIT or DENY (got {action!r})",
                                location="defaultAction.action")
        return out

    def list_objects(self, req, coll):
        with self.lock:
            return self.page(req, self.state["staged"][coll])

    def get_object(self, req, coll):
        with self.lock:
            return self.links(req, self.find(coll, req.params["id"]))

    def create_object(self, req, coll):
        body = req.obj()
        with self.lock:
            self.unique_name(coll, body.get("name"))
            obj = self.validate_object(coll, body)
            obj.update({"id": str(uuid.uuid4()), "version": new_version()})
            self.state["staged"][coll].append(obj)
            self.save()
            return self.links(req, obj)

    def update_object(self, req, coll):
        body = req.obj()
        with self.lock:
            cur = self.find(coll, req.params["id"])
            self.check_version(cur, body)
            if cur.get("isSystemDefined"):
                raise fdm_error(422, f"System-defined object '{cur['name']}' cannot be modified",
                                code="systemDefined")
            if "name" in body:
                self.unique_name(coll, body["name"], exclude=cur["id"])
            merged = {**cur, **body}
            obj = self.validate_object(coll, merged)
            obj.update({"id": cur["id"], "version": new_version()})
            items = self.state["staged"][coll]
            items[items.index(cur)] = obj
            self.save()
            return self.links(req, obj)

    def delete_object(self, req, coll):
        with self.lock:
            cur = self.find(coll, req.params["id"])
            if cur.get("isSystemDefined"):
                raise fdm_error(422, f"System-defined object '{cur['name']}' cannot be deleted",
                                code="systemDefined")
            users = self.references(cur["id"])
            if users:
                raise fdm_error(422, f"Object '{cur['name']}' is in use by {', '.join(users)}",
                                code="objectInUse", key="Referenced")
            self.state["staged"][coll].remove(cur)
            self.save()
            return Response(204, None)

    def references(self, oid: str) -> list[str]:
        users = []
        staged = self.state["staged"]
        for coll in CHILDREN:
            for rules in staged[coll].values():
                for r in rules:
                    if oid in repr(r):
                        users.append(f"{r['type']} '{r['name']}'")
        for g in staged["networkgroups"]:
            if any(ref.get("id") == oid for ref in g.get("objects", [])):
                users.append(f"networkobjectgroup '{g['name']}'")
        return users

    def resolve(self, ref: Any, kinds: tuple, location: str) -> dict:
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise fdm_error(422, f"{location}: each reference needs an id and a type", code="invalidReference",
                            location=location)
        for coll in ("networks", "networkgroups", "tcpports", "udpports", "securityzones", "interfaces"):
            for o in self.state["staged"].get(coll, []):
                if o["id"] == ref["id"]:
                    if o["type"] not in kinds:
                        raise fdm_error(422, f"{location}: {o['type']} '{o['name']}' is not allowed here "
                                             f"(expected {', '.join(kinds)})", code="invalidReference",
                                        location=location)
                    return {"id": o["id"], "type": o["type"], "name": o["name"], "version": o["version"]}
        raise fdm_error(422, f"{location}: referenced object {ref['id']} does not exist",
                        code="invalidReference", location=location)

    # ----- rules -------------------------------------------------------------------
    def parent(self, req, coll) -> list:
        parent_coll = CHILDREN[coll][0]
        parent = self.find(parent_coll, req.params["parent"])
        return self.state["staged"][coll].setdefault(parent["id"], [])

    def validate_rule(self, coll: str, body: dict) -> dict:
        kind = CHILDREN[coll][1]
        if body.get("type") != kind:
            raise fdm_error(422, f"type must be '{kind}' (got {body.get('type')!r})", code="invalidType",
                            location="type")
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise fdm_error(422, "The name field is required", code="missingName", location="name")
        out = {k: v for k, v in body.items() if k not in ("id", "version", "links", "ruleId")}
        if coll == "accessrules":
            if body.get("ruleAction") not in RULE_ACTIONS:
                raise fdm_error(422, f"ruleAction must be one of {sorted(RULE_ACTIONS)} "
                                     f"(got {body.get('ruleAction')!r})", location="ruleAction")
            log = body.get("eventLogAction", "LOG_NONE")
            if log not in LOG_ACTIONS:
                raise fdm_error(422, f"eventLogAction must be one of {sorted(LOG_ACTIONS)}",
                                location="eventLogAction")
            out["eventLogAction"] = log
            for field, kinds in (("sourceZones", ("securityzone",)), ("destinationZones", ("securityzone",)),
                                 ("sourceNetworks", ("networkobject", "networkobjectgroup")),
                                 ("destinationNetworks", ("networkobject", "networkobjectgroup")),
                                 ("sourcePorts", ("tcpportobject", "udpportobject")),
                                 ("destinationPorts", ("tcpportobject", "udpportobject"))):
                refs = body.get(field, [])
                if not isinstance(refs, list):
                    raise fdm_error(422, f"{field} must be an array", location=field)
                out[field] = [self.resolve(ref, kinds, field) for ref in refs]
            out.setdefault("enabled", True)
        else:
            if body.get("natType") not in ("STATIC", "DYNAMIC"):
                raise fdm_error(422, f"natType must be STATIC or DYNAMIC (got {body.get('natType')!r})",
                                location="natType")
            orig = body.get("originalNetwork") if coll == "objectnatrules" else body.get("originalSource")
            field = "originalNetwork" if coll == "objectnatrules" else "originalSource"
            if orig is None:
                raise fdm_error(422, f"{field} is required", location=field)
            out[field] = self.resolve(orig, ("networkobject", "networkobjectgroup"), field)
            tfield = "translatedNetwork" if coll == "objectnatrules" else "translatedSource"
            if body.get(tfield) is not None:
                out[tfield] = self.resolve(body[tfield], ("networkobject", "networkobjectgroup"), tfield)
            if coll == "objectnatrules":
                self.validate_object_nat(body, out)
        return out

    def validate_object_nat(self, body: dict, out: dict) -> None:
        """What FDM documents for object NAT: interfaces are interface objects; the
        translated side is a network object or, with `interfaceInTranslatedNetwork`,
        the destination interface's address (interface PAT needs a destination
        interface); port translation is STATIC only, both ports of one protocol."""
        for f in ("sourceInterface", "destinationInterface"):
            if body.get(f) is not None:
                out[f] = self.resolve(body[f], ("physicalinterface", "subinterface"), f)
        iface = body.get("interfaceInTranslatedNetwork", False)
        if not isinstance(iface, bool):
            raise fdm_error(422, "interfaceInTranslatedNetwork must be a boolean",
                            location="interfaceInTranslatedNetwork")
        out["interfaceInTranslatedNetwork"] = iface
        if iface and body.get("translatedNetwork") is not None:
            raise fdm_error(422, "translatedNetwork must be empty when interfaceInTranslatedNetwork is true",
                            location="translatedNetwork")
        if iface and body.get("destinationInterface") is None:
            raise fdm_error(422, "Interface PAT (interfaceInTranslatedNetwork) requires a destinationInterface",
                            location="destinationInterface")
        if not iface and body.get("translatedNetwork") is None:
            raise fdm_error(422, f"{body['natType']} NAT needs a translatedNetwork or "
                                 "interfaceInTranslatedNetwork: true", location="translatedNetwork")
        ports = [body.get("originalPort"), body.get("translatedPort")]
        if any(p is not None for p in ports):
            if body["natType"] != "STATIC":
                raise fdm_error(422, "Port translation is only allowed for STATIC NAT", location="originalPort")
            if any(p is None for p in ports):
                raise fdm_error(422, "originalPort and translatedPort must be given together",
                                location="translatedPort" if ports[0] is not None else "originalPort")
            o = self.resolve(ports[0], ("tcpportobject", "udpportobject"), "originalPort")
            t = self.resolve(ports[1], ("tcpportobject", "udpportobject"), "translatedPort")
            if o["type"] != t["type"]:
                raise fdm_error(422, "originalPort and translatedPort must use the same protocol",
                                location="translatedPort")
            out["originalPort"], out["translatedPort"] = o, t
        # An object carries at most one object NAT rule.
        orig = out["originalNetwork"]["id"]
        for rules in self.state["staged"]["objectnatrules"].values():
            for r in rules:
                if r["originalNetwork"]["id"] == orig and r.get("name") != body.get("name"):
                    raise fdm_error(422, f"Network object '{out['originalNetwork']['name']}' already has an "
                                         f"object NAT rule ('{r['name']}')", location="originalNetwork",
                                    code="duplicateNat")

    def list_rules(self, req, coll):
        with self.lock:
            rules = self.parent(req, coll)
            return self.page(req, rules)

    def find_rule(self, req, coll) -> tuple[list, dict]:
        rules = self.parent(req, coll)
        for r in rules:
            if r["id"] == req.params["id"]:
                return rules, r
        raise fdm_error(404, f"No {CHILDREN[coll][1]} with id {req.params['id']}", code="objectNotFound",
                        key="NotFound")

    def get_rule(self, req, coll):
        with self.lock:
            return self.links(req, self.find_rule(req, coll)[1])

    def position(self, req, rules_len: int) -> Optional[int]:
        at = req.q("at")
        if at is None:
            return None
        if not at.isdigit():
            raise fdm_error(422, f"Query parameter 'at' must be a non-negative integer (got '{at}')",
                            location="at")
        return min(int(at), rules_len)

    def create_rule(self, req, coll):
        body = req.obj()
        with self.lock:
            rules = self.parent(req, coll)
            if any(r["name"] == body.get("name") for r in rules):
                raise fdm_error(422, f"A rule named '{body.get('name')}' already exists", code="duplicateName",
                                location="name", key="Duplicate")
            rule = self.validate_rule(coll, body)
            rule.update({"id": str(uuid.uuid4()), "version": new_version(), "ruleId": self.state["nextRuleId"]})
            self.state["nextRuleId"] += 1
            at = self.position(req, len(rules))
            rules.insert(len(rules) if at is None else at, rule)
            self.save()
            return self.links(req, rule)

    def update_rule(self, req, coll):
        body = req.obj()
        with self.lock:
            rules, cur = self.find_rule(req, coll)
            self.check_version(cur, body)
            if any(r["name"] == body.get("name") and r["id"] != cur["id"] for r in rules):
                raise fdm_error(422, f"A rule named '{body.get('name')}' already exists", code="duplicateName",
                                location="name", key="Duplicate")
            # PUT replaces the whole rule, as FDM does: fields left out are cleared.
            rule = self.validate_rule(coll, body)
            rule.update({"id": cur["id"], "version": new_version(), "ruleId": cur["ruleId"]})
            at = self.position(req, len(rules) - 1)
            idx = rules.index(cur)
            rules.remove(cur)
            rules.insert(idx if at is None else at, rule)
            self.save()
            return self.links(req, rule)

    def delete_rule(self, req, coll):
        with self.lock:
            rules, cur = self.find_rule(req, coll)
            rules.remove(cur)
            self.save()
            return Response(204, None)

    # ----- staged changes and deployment -------------------------------------------------
    def entities(self, cfg: dict) -> dict:
        out = {}
        for coll, items in cfg.items():
            if isinstance(items, dict):
                for parent, rules in items.items():
                    for pos, r in enumerate(rules):
                        out[r["id"]] = (r, (parent, pos))
            else:
                for o in items:
                    out[o["id"]] = (o, None)
        return out

    def diff(self) -> list[dict]:
        staged, deployed = self.entities(self.state["staged"]), self.entities(self.state["deployed"])
        changes = []
        for oid, (o, pos) in staged.items():
            if oid not in deployed:
                change = "ADDED"
            elif deployed[oid][0] != o:
                change = "EDITED"
            elif deployed[oid][1] != pos:
                change = "EDITED"  # reordered
            else:
                continue
            changes.append({"entityId": oid, "entityType": o["type"], "entityName": o["name"],
                            "changeType": change, "type": "entitychange"})
        for oid, (o, _) in deployed.items():
            if oid not in staged:
                changes.append({"entityId": oid, "entityType": o["type"], "entityName": o["name"],
                                "changeType": "DELETED", "type": "entitychange"})
        return changes

    def pending(self, req):
        with self.lock:
            changes = self.diff()
        return {"items": changes, "paging": {"prev": [], "next": [], "limit": len(changes) or 10, "offset": 0,
                                             "count": len(changes)}}

    def deploy(self, req):
        with self.lock:
            job = {"id": str(uuid.uuid4()), "type": "deploymentstatus", "name": f"Deployment {len(self.state['jobs']) + 1}",
                   "state": "QUEUED", "statusMessage": "Deployment queued", "queuedTime": int(time.time() * 1000),
                   "startTime": None, "endTime": None, "deploymentStatusMessages": [],
                   "modifiedObjects": {"changes": len(self.diff())}, "version": new_version()}
            self.state["jobs"].append(job)
            self.save()
        threading.Thread(target=self.run_job, args=(job["id"],), daemon=True).start()
        return self.links(req, job)

    def job(self, jid: str) -> dict:
        for j in self.state["jobs"]:
            if j["id"] == jid:
                return j
        raise fdm_error(404, f"No deployment with id {jid}", code="objectNotFound", key="NotFound")

    def run_job(self, jid: str) -> None:
        try:
            self.advance_job(jid)
        except HttpError:
            pass  # the simulator was reset while the job ran

    def advance_job(self, jid: str) -> None:
        time.sleep(self.args.deploy_queued_ms / 1000.0)
        with self.lock:
            job = self.job(jid)
            job.update(state="DEPLOYING", statusMessage="Deploying configuration", startTime=int(time.time() * 1000))
            snapshot = copy.deepcopy(self.state["staged"])
            fail = self.faults.extra.get("deploy_fail")
            if fail:
                count = fail if isinstance(fail, int) else int(fail.get("count", 1))
                count -= 1
                if count <= 0:
                    self.faults.extra.pop("deploy_fail")
                else:
                    self.faults.extra["deploy_fail"] = count if isinstance(fail, int) else {**fail, "count": count}
            self.save()
        time.sleep(self.args.deploy_ms / 1000.0)
        with self.lock:
            job = self.job(jid)
            job["endTime"] = int(time.time() * 1000)
            if fail:
                rules = [r for rs in snapshot["accessrules"].values() for r in rs]
                custom = fail.get("messages") if isinstance(fail, dict) else None
                msgs = custom or [f"Access rule '{r['name']}' (ruleId {r['ruleId']}) failed to deploy: "
                                  f"device rejected the generated configuration" for r in rules] or \
                    ["Deployment failed: device rejected the generated configuration"]
                job.update(state="DEPLOY_FAILED", statusMessage="Deployment failed",
                           deploymentStatusMessages=[{"taskState": "DEPLOY_FAILED", "statusMessage": m,
                                                      "type": "deploymentstatusmessage"} for m in msgs])
            else:
                self.state["deployed"] = snapshot
                job.update(state="DEPLOYED", statusMessage="Deployment completed successfully",
                           deploymentStatusMessages=[{"taskState": "DEPLOYED",
                                                      "statusMessage": "Configuration deployed",
                                                      "type": "deploymentstatusmessage"}])
            self.save()

    # ----- operational state: hit counts and link state -----------------------------------
    def hit_filter(self, req: Request) -> tuple[Optional[set[str]], bool]:
        """`filter=ids:{a,b};fetchZeroHitCount:true` (the documented keys)."""
        ids, zero = None, False
        for part in filter(None, (req.q("filter") or "").split(";")):
            key, sep, val = part.partition(":")
            if not sep:
                raise fdm_error(400, f"filter part '{part}' is not key:value", location="filter")
            if key == "ids":
                ids = {i.strip() for i in val.strip("{}").split(",") if i.strip()}
            elif key == "fetchZeroHitCount":
                if val not in ("true", "false"):
                    raise fdm_error(400, "fetchZeroHitCount must be true or false", location="filter")
                zero = val == "true"
            else:
                raise fdm_error(400, f"Unsupported filter key '{key}'; supported keys are ids, fetchZeroHitCount",
                                location="filter")
        return ids, zero

    def hitcounts(self, req):
        """Hit counts of the deployed rules of one access policy. PUT is FDM's
        refresh from the device; the simulator's counters are always current,
        so it answers like GET."""
        ids, zero = self.hit_filter(req)
        with self.lock:
            self.parent(req, "accessrules")
            rules = self.state["deployed"]["accessrules"].get(req.params["parent"], [])
            hits = self.state.setdefault("hits", {})
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            items = []
            for r in rules:
                h = hits.get(r["id"], {})
                if (ids is not None and r["id"] not in ids) or (not h.get("hitCount") and not zero):
                    continue
                items.append({"hitCount": h.get("hitCount", 0), "firstHitTimeStamp": h.get("firstHitTimeStamp"),
                              "lastHitTimeStamp": h.get("lastHitTimeStamp"), "lastFetchTimeStamp": now,
                              "rule": {"id": r["id"], "name": r["name"], "ruleId": r["ruleId"],
                                       "type": "accessruleinfo"},
                              "id": r["id"], "type": "hitcount"})
            return self.page(req, items, own_filter=True) if req.method == "GET" else {"items": items}

    def admin_state(self, req: Request) -> Response:
        """POST /_sim/hits {"rule": ID, "hits": N} (traffic matched a deployed
        rule) or {"reset": true} (the device cleared its counters);
        POST /_sim/interface {"hardwareName": HW, "linkState": "UP"|"DOWN"}."""
        try:
            doc = json.loads(req.body or b"{}")
        except ValueError as exc:
            return Response(400, {"error": f"malformed JSON: {exc}"})
        if not isinstance(doc, dict):
            return Response(400, {"error": "the body must be a JSON object"})
        with self.lock:
            if req.path == "/_sim/interface":
                return self.set_link(doc)
            hits = self.state.setdefault("hits", {})
            if doc == {"reset": True}:
                hits.clear()
                self.save()
                return Response(200, {"reset": True})
            n = doc.get("hits")
            if set(doc) != {"rule", "hits"} or not isinstance(n, int) or isinstance(n, bool) or n < 0:
                return Response(400, {"error": "expected {\"rule\": ID, \"hits\": N >= 0} or {\"reset\": true}"})
            deployed = {r["id"] for rs in self.state["deployed"]["accessrules"].values() for r in rs}
            if doc["rule"] not in deployed:
                return Response(404, {"error": f"no deployed access rule {doc['rule']!r}"})
            for rid in [k for k in hits if k not in deployed]:
                del hits[rid]  # a rule removed by a deploy takes its counter with it
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            h = hits.setdefault(doc["rule"], {"hitCount": 0, "firstHitTimeStamp": None, "lastHitTimeStamp": None})
            if n:
                h["hitCount"] += n
                h["firstHitTimeStamp"] = h["firstHitTimeStamp"] or now
                h["lastHitTimeStamp"] = now
            self.save()
            return Response(200, dict(h))

    def set_link(self, doc: dict) -> Response:
        if set(doc) != {"hardwareName", "linkState"} or doc["linkState"] not in ("UP", "DOWN"):
            return Response(400, {"error": "expected {\"hardwareName\": HW, \"linkState\": \"UP\"|\"DOWN\"}"})
        found = False
        for side in ("staged", "deployed"):  # link state is not configuration: both see it
            for i in self.state[side]["interfaces"]:
                if i.get("hardwareName") == doc["hardwareName"]:
                    i["linkState"], found = doc["linkState"], True
        if not found:
            return Response(404, {"error": f"no interface {doc['hardwareName']!r}"})
        self.save()
        return Response(200, {"hardwareName": doc["hardwareName"], "linkState": doc["linkState"]})

    def list_jobs(self, req):
        with self.lock:
            return self.page(req, list(reversed(self.state["jobs"])))

    def get_job(self, req):
        with self.lock:
            return self.links(req, self.job(req.params["id"]))


if __name__ == "__main__":
    simlib.serve(FdmSim, __doc__)
