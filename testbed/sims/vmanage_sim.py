#!/usr/bin/env python3
"""Cisco SD-WAN Manager (vManage) REST API simulator for Rampart's tests.

Session login with j_security_check + JSESSIONID, XSRF token for mutating
calls, feature and device templates, attach with action status polling,
centralized (vSmart) policy with definitions and activation, 429 rate limit.

Run: python3 testbed/sims/vmanage_sim.py --port 0 [--plain-http] [--session-ttl 1800]
See docs/simulators.md for the behaviour and the fault-injection API.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
import uuid
from typing import Optional

import simlib
from simlib import HttpError, Request, Response

DS = "/dataservice"
UUID = r"(?P<id>[0-9a-zA-Z_-]+)"
LOGIN_PAGE = """<html>
<head><title>Cisco vManage</title></head>
<body>
<form method="POST" action="j_security_check">
<input type="text" name="j_username"/><input type="password" name="j_password"/>
<input type="submit" value="Log In"/>
</form>
</body>
</html>
"""
PLATFORM_VERSION = "20.12.3"

# Minimal feature-template schemas (the subset catalystwan's generator reads).
SCHEMAS = {
    "cisco_banner": [
        {"key": "login", "description": "Login Banner", "dataPath": [], "objectType": "object",
         "dataType": {"type": "string"}},
        {"key": "motd", "description": "MOTD Banner", "dataPath": [], "objectType": "object",
         "dataType": {"type": "string"}},
    ],
    "cisco_ntp": [
        {"key": "authoritative", "description": "Authoritative", "dataPath": ["master"],
         "objectType": "object", "dataType": {"type": "boolean"}},
        {"key": "source", "description": "Source", "dataPath": ["master"], "objectType": "object",
         "dataType": {"type": "string"}},
    ],
}
DEVICE_MODELS = {"vedge-C8000V", "vedge-cloud", "vedge-ISR-4331", "vedge-C1111-8P", "vsmart", "vmanage"}


def vm_error(status: int, message: str, details: str = "", code: str = "") -> HttpError:
    return HttpError(status, message, body={"error": {"message": message, "details": details or message,
                                                       "code": code or f"SIM{status:04d}",
                                                       "type": "error"}})


# Interfaces of each simulated Catalyst 8000V edge: name, VPN, address.
EDGE_INTERFACES = (("GigabitEthernet1", "0", "192.0.2.{n}"), ("GigabitEthernet2", "10", "10.{n}.0.1"),
                   ("Loopback0", "0", "10.255.0.{n}"))
# IOS-XE (cEdge) values of if-admin-status / if-oper-status in /device/interface.
OPER = {"up": "if-oper-state-ready", "down": "if-oper-state-no-pass"}


class VManageSim(simlib.Simulator):
    name = "vmanage"
    default_rps = 100.0
    extra_fault_keys = {"action_fail", "expire_sessions"}

    @staticmethod
    def extra_args(parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="Admin123#")
        parser.add_argument("--session-ttl", type=float, default=1800, help="JSESSIONID lifetime (s)")
        parser.add_argument("--action-ms", type=int, default=300, help="how long an action stays in progress")

    def __init__(self, args):
        self.sessions: dict[str, dict] = {}
        super().__init__(args)

    # ----- state -----------------------------------------------------------------
    def seed(self) -> dict:
        devices = []
        for i, (model, ip) in enumerate((("vedge-C8000V", "10.255.0.11"), ("vedge-C8000V", "10.255.0.12")), 1):
            devices.append({"uuid": f"C8K-{uuid.UUID(int=i)}", "deviceId": ip, "system-ip": ip,
                            "host-name": f"edge{i}", "deviceModel": model, "deviceType": "vedge",
                            "site-id": str(100 + i), "reachability": "reachable", "version": "17.12.03",
                            "configOperationMode": "vmanage", "template": None, "templateId": None,
                            "chasisNumber": f"C8K-{uuid.UUID(int=i)}", "serialNumber": f"SIM{i:08d}",
                            "validity": "valid", "personality": "vedge", "managed-by": "vManage"})
        # Operational state (not configuration): device health and per-interface
        # oper status, changed through POST /_sim/device and /_sim/interface.
        health = {d["system-ip"]: "normal" for d in devices}
        links = {d["system-ip"]: {name: "up" for name, _, _ in EDGE_INTERFACES} for d in devices}
        return {"featureTemplates": {}, "deviceTemplates": {}, "devices": devices, "actions": {},
                "policyDefinitions": {}, "vsmartPolicies": {}, "policyLists": {}, "health": health,
                "links": links}

    def register_routes(self):
        r = self.route
        r("GET", "/", lambda q: Response(200, LOGIN_PAGE, content_type="text/html;charset=UTF-8"))
        r("POST", "/j_security_check", self.login)
        r("GET", "/logout", self.logout)
        r("POST", "/logout", self.logout)
        r("GET", DS + "/client/token", self.xsrf_token)
        r("GET", DS + "/client/server", self.server_info)
        r("GET", DS + "/client/server/ready", lambda q: {"isServerReady": True})
        r("GET", DS + "/client/about", self.about)
        r("GET", DS + "/system/device/vedges", self.vedges)
        r("GET", DS + "/system/device/controllers", lambda q: {"data": []})
        r("GET", DS + "/device", self.devices)
        r("GET", DS + "/device/interface", self.device_interfaces)
        r("GET", DS + "/template/feature", self.list_feature)
        r("POST", DS + "/template/feature/?", self.create_feature)
        r("GET", DS + f"/template/feature/object/{UUID}", self.get_feature)
        r("PUT", DS + f"/template/feature/{UUID}", self.update_feature)
        r("DELETE", DS + f"/template/feature/{UUID}", self.delete_feature)
        r("GET", DS + r"/template/feature/types/definition/(?P<type>[\w-]+)/(?P<ver>[\w.]+)", self.schema)
        r("GET", DS + "/template/device", self.list_device)
        r("POST", DS + "/template/device/feature/?", self.create_device)
        r("GET", DS + f"/template/device/object/{UUID}", self.get_device)
        r("PUT", DS + f"/template/device/{UUID}", self.update_device)
        r("DELETE", DS + f"/template/device/{UUID}", self.delete_device)
        r("POST", DS + "/template/device/config/attachfeature", self.attach)
        r("POST", DS + "/template/device/config/exportcsv", self.export_csv)
        r("GET", DS + "/device/system/info", self.system_info)
        r("GET", DS + f"/device/action/status/{UUID}", self.action_status)
        r("GET", DS + "/template/policy/definition/data", lambda q: self.list_defs(q))
        r("POST", DS + "/template/policy/definition/data", self.create_def)
        r("GET", DS + f"/template/policy/definition/data/{UUID}", self.get_def)
        r("PUT", DS + f"/template/policy/definition/data/{UUID}", self.update_def)
        r("DELETE", DS + f"/template/policy/definition/data/{UUID}", self.delete_def)
        r("GET", DS + r"/template/policy/list/(?P<type>[a-z]+)", self.list_lists)
        r("POST", DS + r"/template/policy/list/(?P<type>[a-z]+)", self.create_list)
        r("GET", DS + "/template/policy/vsmart", self.list_vsmart)
        r("POST", DS + "/template/policy/vsmart", self.create_vsmart)
        r("GET", DS + f"/template/policy/vsmart/definition/{UUID}", self.get_vsmart)
        r("PUT", DS + f"/template/policy/vsmart/{UUID}", self.update_vsmart)
        r("DELETE", DS + f"/template/policy/vsmart/{UUID}", self.delete_vsmart)
        r("POST", DS + f"/template/policy/vsmart/activate/{UUID}", lambda q: self.activate(q, True))
        r("POST", DS + f"/template/policy/vsmart/deactivate/{UUID}", lambda q: self.activate(q, False))

    def error_response(self, e: HttpError) -> Response:
        if e.body is not None:
            return Response(e.status, e.body, headers=e.headers)
        return Response(e.status, {"error": {"message": e.message, "details": e.details or e.message,
                                             "code": e.code or f"SIM{e.status:04d}", "type": "error"}},
                        headers=e.headers)

    def rate_limited_response(self, retry_after: int) -> Response:
        return Response(429, {"error": {"message": "Too many requests", "code": "SIM0429",
                                        "details": f"Rate limit exceeded; retry after {retry_after} s",
                                        "type": "error"}}, headers={"Retry-After": str(retry_after)})

    def public_state(self) -> dict:
        return self.state

    # ----- sessions -----------------------------------------------------------------
    def login_page(self, expired: bool) -> Response:
        resp = Response(200, LOGIN_PAGE, content_type="text/html;charset=UTF-8")
        if expired:
            # what the real server sends for a dead session; catalystwan re-logs in on it
            resp.cookies.append(f"JSESSIONID=deleted; {self.cookie_attrs()}; "
                                "Expires=Thu, 01 Jan 1970 00:00:00 GMT")
        return resp

    def session(self, req: Request) -> Optional[dict]:
        sid = req.cookies.get("JSESSIONID")
        with self.lock:
            if self.faults.extra.pop("expire_sessions", None):
                self.sessions.clear()
            s = self.sessions.get(sid or "")
            if s and s["expires"] < time.time():
                del self.sessions[sid]
                s = None
        return s

    def dispatch(self, req: Request) -> Optional[Response]:
        if req.path in ("/_sim/device", "/_sim/interface") and req.method == "POST":
            return self.admin_state(req)
        if req.path.startswith(DS + "/"):
            s = self.session(req)
            if s is None:
                return self.login_page(expired=bool(req.cookies.get("JSESSIONID")))
            if req.method in ("POST", "PUT", "DELETE") and \
                    req.headers.get("X-XSRF-TOKEN") != s["xsrf"]:
                return self.error_response(vm_error(403, "Forbidden", "Missing or invalid X-XSRF-TOKEN header",
                                                    "CSRF0001"))
            req.user = s["user"]  # type: ignore[attr-defined]
        return super().dispatch(req)

    def rate_key(self, req: Request) -> Optional[str]:
        return "vmanage" if req.path.startswith(DS) else None

    def cookie_attrs(self) -> str:
        return "Path=/; Secure; HttpOnly" if self.base_url.startswith("https") else "Path=/; HttpOnly"

    def login(self, req):
        form = req.form()
        if form.get("j_username") != self.args.username or form.get("j_password") != self.args.password:
            return Response(200, LOGIN_PAGE, content_type="text/html;charset=UTF-8")
        sid = secrets.token_hex(24).upper()
        with self.lock:
            self.sessions[sid] = {"user": form["j_username"], "xsrf": secrets.token_hex(40),
                                  "expires": time.time() + self.args.session_ttl}
        resp = Response(200, b"", content_type="text/html")
        resp.cookies.append(f"JSESSIONID={sid}; {self.cookie_attrs()}")
        return resp

    def logout(self, req):
        with self.lock:
            self.sessions.pop(req.cookies.get("JSESSIONID", ""), None)
        return Response(200, b"", content_type="text/html")

    def xsrf_token(self, req):
        with self.lock:
            return Response(200, self.sessions[req.cookies["JSESSIONID"]]["xsrf"], content_type="text/plain")

    def server_info(self, req):
        return {"data": {"server": "vmanage-sim", "tenancyMode": "SingleTenant", "userMode": "tenant",
                         "viewMode": "tenant", "platformVersion": PLATFORM_VERSION, "user": req.user,
                         "roles": ["netadmin"], "isSamlUser": False, "isRbacVpnUser": False, "vpns": [],
                         "capabilities": [], "locale": "en", "externalUser": False, "generalTemplate": True,
                         "disableFullConfigPush": False, "enableServerEvents": False,
                         "description": "Simulated SD-WAN Manager"}}

    def about(self, req):
        return {"data": {"title": "Cisco Catalyst SD-WAN Manager", "version": PLATFORM_VERSION,
                         "applicationVersion": f"{PLATFORM_VERSION}-sim", "applicationServer": "vmanage-sim",
                         "copyright": "simulator", "time": int(time.time() * 1000), "timeZone": "UTC",
                         "logo": "/dataservice/client/logo"}}

    def vedges(self, req):
        with self.lock:
            return {"header": {"generatedOn": int(time.time() * 1000)},
                    "data": copy.deepcopy(self.state["devices"])}

    def devices(self, req):
        with self.lock:
            return {"data": [{"deviceId": d["deviceId"], "system-ip": d["system-ip"], "host-name": d["host-name"],
                              "reachability": d["reachability"],
                              "status": self.state.get("health", {}).get(d["system-ip"], "normal"),
                              "personality": "vedge",
                              "device-type": "vedge", "uuid": d["uuid"], "version": d["version"],
                              "device-model": d["deviceModel"], "site-id": d["site-id"]}
                             for d in self.state["devices"]]}

    def device_interfaces(self, req):
        """GET /device/interface?deviceId=SYSTEM-IP: the edge's interface table,
        read live from the device by the Manager (so an unreachable device
        answers with an error, not with stale rows)."""
        ip = req.q("deviceId")
        if not ip:
            raise vm_error(400, "Invalid request", "deviceId query parameter is required", "API0001")
        with self.lock:
            dev = next((d for d in self.state["devices"] if d["system-ip"] == ip), None)
            if dev is None:
                raise vm_error(400, "Invalid device", f"No device with system IP {ip}", "DEVICE0001")
            if dev["reachability"] != "reachable":
                raise vm_error(400, "Failed to get data from device",
                               f"Device {ip} is unreachable", "DEVICE0002")
            links = self.state.get("links", {}).get(ip, {})
            n = int(ip.rsplit(".", 1)[1])
            rows = [{"vdevice-name": ip, "vdevice-host-name": dev["host-name"], "af-type": "ipv4",
                     "ifname": name, "vpn-id": vpn, "ip-address": addr.format(n=n),
                     "if-admin-status": "if-state-up", "if-oper-status": OPER[links.get(name, "up")],
                     "interface-type": "iana-iftype-ethernet-csmacd" if name.startswith("Gig")
                     else "iana-iftype-sw-loopback", "mtu": "1500", "speed-mbps": "1000",
                     "rx-packets": 0, "tx-packets": 0, "lastupdated": int(time.time() * 1000)}
                    for name, vpn, addr in EDGE_INTERFACES]
        return {"header": {"generatedOn": int(time.time() * 1000)}, "data": rows}

    def admin_state(self, req: Request) -> Response:
        """POST /_sim/device {"system-ip": IP[, "reachability": reachable|unreachable]
        [, "status": normal|warning|error]}; POST /_sim/interface
        {"system-ip": IP, "ifname": NAME, "oper": "up"|"down"}."""
        try:
            doc = json.loads(req.body or b"{}")
        except ValueError as exc:
            return Response(400, {"error": f"malformed JSON: {exc}"})
        if not isinstance(doc, dict):
            return Response(400, {"error": "the body must be a JSON object"})
        allowed = {"system-ip", "reachability", "status"} if req.path == "/_sim/device" else \
            {"system-ip", "ifname", "oper"}
        if "system-ip" not in doc or set(doc) - allowed:
            return Response(400, {"error": f"keys: 'system-ip' and some of {sorted(allowed - {'system-ip'})}"})
        checks = {"reachability": ("reachable", "unreachable"), "status": ("normal", "warning", "error"),
                  "oper": tuple(OPER)}
        for key, values in checks.items():
            if key in doc and doc[key] not in values:
                return Response(400, {"error": f"'{key}' must be one of {list(values)}"})
        with self.lock:
            dev = next((d for d in self.state["devices"] if d["system-ip"] == doc["system-ip"]), None)
            if dev is None:
                return Response(404, {"error": f"no device {doc['system-ip']!r}"})
            if req.path == "/_sim/interface":
                links = self.state.setdefault("links", {}).setdefault(doc["system-ip"], {})
                if doc.get("ifname") not in [n for n, _, _ in EDGE_INTERFACES] or "oper" not in doc:
                    return Response(404, {"error": f"no interface {doc.get('ifname')!r} (or no 'oper')"})
                links[doc["ifname"]] = doc["oper"]
            else:
                dev["reachability"] = doc.get("reachability", dev["reachability"])
                self.state.setdefault("health", {})[doc["system-ip"]] = doc.get(
                    "status", self.state.get("health", {}).get(doc["system-ip"], "normal"))
            self.save()
            return Response(200, {"ok": True})

    # ----- feature templates ----------------------------------------------------------
    def stamp(self, req) -> dict:
        return {"lastUpdatedBy": getattr(req, "user", "admin"), "lastUpdatedOn": int(time.time() * 1000)}

    def check_name(self, kind: str, name, exclude: Optional[str] = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise vm_error(400, "Template name is required", f"{kind} template without templateName", "TMPL0001")
        if len(name) > 128 or any(c in name for c in "<>&\"'"):
            raise vm_error(400, f"Invalid template name '{name}'",
                           "Template names are 1-128 characters without <>&\"'", "TMPL0002")
        coll = self.state["featureTemplates" if kind == "feature" else "deviceTemplates"]
        for tid, t in coll.items():
            if t["templateName"] == name and tid != exclude:
                raise vm_error(400, f"Template with name '{name}' already exists",
                               f"A {kind} template named '{name}' exists (id {tid})", "TMPL0003")

    def validate_feature(self, body: dict) -> None:
        for field in ("templateType", "deviceType", "templateDefinition"):
            if field not in body:
                raise vm_error(400, f"Missing field '{field}'", f"Feature template payload lacks '{field}'",
                               "TMPL0004")
        if not isinstance(body["deviceType"], list) or not body["deviceType"]:
            raise vm_error(400, "deviceType must be a non-empty list", "", "TMPL0005")
        unknown = [str(d) for d in body["deviceType"] if not isinstance(d, str) or d not in DEVICE_MODELS]
        if unknown:
            raise vm_error(400, f"Invalid device type(s): {', '.join(unknown)}",
                           f"Supported: {', '.join(sorted(DEVICE_MODELS))}", "TMPL0006")
        if not isinstance(body["templateDefinition"], dict):
            raise vm_error(400, "templateDefinition must be an object", "", "TMPL0007")

    def feature(self, tid: str) -> dict:
        t = self.state["featureTemplates"].get(tid)
        if t is None:
            raise vm_error(404, "Template not found", f"No feature template with id {tid}", "TMPL0404")
        return t

    def list_feature(self, req):
        with self.lock:
            out = []
            for t in self.state["featureTemplates"].values():
                item = {k: v for k, v in t.items() if k != "templateDefinition"}
                if req.q("summary", "true") == "false":
                    item["templateDefinition"] = t["templateDefinition"]
                out.append(item)
            return {"data": out}

    def create_feature(self, req):
        body = req.obj()
        with self.lock:
            self.check_name("feature", body.get("templateName"))
            self.validate_feature(body)
            tid = str(uuid.uuid4())
            self.state["featureTemplates"][tid] = {
                "templateId": tid, "templateName": body["templateName"],
                "templateDescription": body.get("templateDescription", ""),
                "templateType": body["templateType"], "deviceType": body["deviceType"],
                "templateMinVersion": body.get("templateMinVersion", "15.0.0"),
                "templateDefinition": body["templateDefinition"], "factoryDefault": bool(body.get("factoryDefault")),
                "devicesAttached": 0, "attachedMastersCount": 0, "configType": "xml", "createdBy": req.user,
                "createdOn": int(time.time() * 1000), "resourceGroup": "global", **self.stamp(req)}
            self.save()
            return {"templateId": tid}

    def get_feature(self, req):
        with self.lock:
            return copy.deepcopy(self.feature(req.params["id"]))

    def update_feature(self, req):
        body = req.obj()
        with self.lock:
            t = self.feature(req.params["id"])
            self.check_name("feature", body.get("templateName", t["templateName"]), exclude=t["templateId"])
            merged = {**t, **body}
            self.validate_feature(merged)
            for k in ("templateName", "templateDescription", "templateDefinition", "deviceType",
                      "templateMinVersion"):
                t[k] = merged[k]
            t.update(self.stamp(req))
            masters = [d["templateId"] for d in self.state["deviceTemplates"].values()
                       if t["templateId"] in self.feature_ids(d)]
            self.save()
            return {"masterTemplatesAffected": masters}

    def delete_feature(self, req):
        with self.lock:
            t = self.feature(req.params["id"])
            users = [d["templateName"] for d in self.state["deviceTemplates"].values()
                     if t["templateId"] in self.feature_ids(d)]
            if users:
                raise vm_error(400, "Template is in use", f"Feature template '{t['templateName']}' is used by "
                                                          f"device template(s) {', '.join(users)}", "TMPL0008")
            del self.state["featureTemplates"][t["templateId"]]
            self.save()
            return Response(200, b"", content_type="application/json")

    def schema(self, req):
        fields = SCHEMAS.get(req.params["type"])
        if fields is None:
            raise vm_error(404, f"No definition for template type {req.params['type']}",
                           f"The simulator knows: {', '.join(sorted(SCHEMAS))}", "TMPL0009")
        return {"name": req.params["type"], "version": req.params["ver"],
                "fields": [{**f, "optionType": ["constant", "variable", "ignore"], "defaultOption": "ignore"}
                           for f in fields]}

    # ----- device templates -------------------------------------------------------------
    def feature_ids(self, dt: dict) -> list[str]:
        out = []

        def walk(items):
            for g in items or []:
                out.append(g.get("templateId"))
                walk(g.get("subTemplates"))
        walk(dt.get("generalTemplates"))
        return out

    def device_tpl(self, tid: str) -> dict:
        t = self.state["deviceTemplates"].get(tid)
        if t is None:
            raise vm_error(404, "Template not found", f"No device template with id {tid}", "TMPL0404")
        return t

    def validate_device(self, body: dict) -> None:
        if not isinstance(body.get("deviceType"), str) or body["deviceType"] not in DEVICE_MODELS:
            raise vm_error(400, f"Invalid device type '{body.get('deviceType')}'", "", "TMPL0006")
        gts = body.get("generalTemplates", [])
        if not isinstance(gts, list) or not all(isinstance(g, dict) for g in gts):
            raise vm_error(400, "generalTemplates must be a list of objects", "", "TMPL0014")
        if body.get("configType", "template") != "template":
            raise vm_error(400, "configType must be 'template' for feature-based device templates", "", "TMPL0010")
        for fid in self.feature_ids(body):
            ft = self.state["featureTemplates"].get(fid)
            if ft is None:
                raise vm_error(400, "Invalid feature template", f"Feature template {fid} does not exist",
                               "TMPL0011")
            if body["deviceType"] not in ft["deviceType"]:
                raise vm_error(400, "Invalid feature template",
                               f"Feature template '{ft['templateName']}' does not support {body['deviceType']}",
                               "TMPL0012")

    def list_device(self, req):
        with self.lock:
            return {"data": [{k: v for k, v in t.items() if k != "generalTemplates"}
                             for t in self.state["deviceTemplates"].values()]}

    def create_device(self, req):
        body = req.obj()
        with self.lock:
            self.check_name("device", body.get("templateName"))
            self.validate_device(body)
            tid = str(uuid.uuid4())
            self.state["deviceTemplates"][tid] = {
                "templateId": tid, "templateName": body["templateName"],
                "templateDescription": body.get("templateDescription", ""), "deviceType": body["deviceType"],
                "deviceRole": body.get("deviceRole", "sdwan-edge"), "configType": "template",
                "templateClass": body.get("templateClass", "cedge"), "factoryDefault": False,
                "policyId": body.get("policyId", ""), "featureTemplateUidRange": [],
                "generalTemplates": body.get("generalTemplates", []), "devicesAttached": 0, "templateAttached": 0,
                "draftMode": "Disabled", **self.stamp(req)}
            self.save()
            return {"templateId": tid}

    def get_device(self, req):
        with self.lock:
            return copy.deepcopy(self.device_tpl(req.params["id"]))

    def update_device(self, req):
        body = req.obj()
        with self.lock:
            t = self.device_tpl(req.params["id"])
            merged = {**t, **body}
            self.check_name("device", merged["templateName"], exclude=t["templateId"])
            self.validate_device(merged)
            for k in ("templateName", "templateDescription", "generalTemplates", "policyId"):
                t[k] = merged[k]
            t.update(self.stamp(req))
            self.save()
            return {"data": {"attachedDevices": [d["uuid"] for d in self.state["devices"]
                                                 if d["templateId"] == t["templateId"]]}}

    def delete_device(self, req):
        with self.lock:
            t = self.device_tpl(req.params["id"])
            if t["devicesAttached"]:
                raise vm_error(400, "Template is attached to devices",
                               f"Detach the {t['devicesAttached']} device(s) of '{t['templateName']}' first",
                               "TMPL0013")
            del self.state["deviceTemplates"][t["templateId"]]
            self.save()
            return Response(200, b"", content_type="application/json")

    # ----- attach and actions -------------------------------------------------------------
    def new_action(self, kind: str, name: str, devices: list[dict], on_done) -> str:
        aid = f"{kind}-{uuid.uuid4()}"
        fail = bool(self.faults.extra.get("action_fail"))
        if fail:
            left = int(self.faults.extra["action_fail"]) - 1
            if left <= 0:
                self.faults.extra.pop("action_fail")
            else:
                self.faults.extra["action_fail"] = left
        self.state["actions"][aid] = {
            "summary": {"action": kind, "name": name, "status": "in_progress", "count": {"In progress": len(devices)},
                        "startTime": str(int(time.time() * 1000)), "userSessionUserName": self.args.username,
                        "total": len(devices)},
            "data": [{"uuid": d["uuid"], "deviceID": d["deviceId"], "host-name": d["host-name"],
                      "system-ip": d["system-ip"], "status": "In progress", "statusId": "in_progress",
                      "validity": "valid", "action": kind, "order": n, "site-id": d.get("site-id"),
                      "currentActivity": f"{name} started",
                      "activity": [f"[{time.strftime('%d-%b-%Y %H:%M:%S UTC', time.gmtime())}] "
                                   f"{name} started"]} for n, d in enumerate(devices)],
            "validation": {"status": "Validation success", "statusId": "validation_success"}}
        if self.args.action_ms <= 0:
            self.finish_action(aid, fail, on_done)  # done before the answer (lock is re-entrant)
        else:
            timer = threading.Timer(self.args.action_ms / 1000.0, self.finish_action, (aid, fail, on_done))
            timer.daemon = True
            timer.start()
        return aid

    def finish_action(self, aid: str, fail: bool, on_done) -> None:
        with self.lock:
            act = self.state["actions"].get(aid)
            if act is None:
                return
            for d in act["data"]:
                if fail:
                    d.update(status="Failure", statusId="failure")
                    d["activity"].append("Failed to apply configuration: device rejected the configuration "
                                         "(injected fault)")
                else:
                    d.update(status="Success", statusId="success")
                    d["activity"].append("Done - Push Feature Template Configuration")
            act["summary"]["status"] = "done"
            act["summary"]["endTime"] = str(int(time.time() * 1000))
            act["summary"]["count"] = {"Failure" if fail else "Success": len(act["data"])}
            if not fail:
                on_done()
            self.save()

    def attach(self, req):
        body = req.obj()
        with self.lock:
            lst = body.get("deviceTemplateList")
            if not isinstance(lst, list) or not lst:
                raise vm_error(400, "deviceTemplateList is required", "", "ATTCH001")
            work = []
            for entry in lst:
                if not isinstance(entry, dict) or not isinstance(entry.get("templateId"), str):
                    raise vm_error(400, "Each deviceTemplateList entry needs a templateId", "", "ATTCH006")
                t = self.device_tpl(entry["templateId"])
                devs = entry.get("device") or []
                if not isinstance(devs, list) or not all(isinstance(d, dict) for d in devs):
                    raise vm_error(400, "device must be a list of objects", f"Template '{t['templateName']}'",
                                   "ATTCH007")
                if not devs:
                    raise vm_error(400, "No devices to attach", f"Template '{t['templateName']}'", "ATTCH002")
                for d in devs:
                    dev_id = d.get("csv-deviceId")
                    dev = next((x for x in self.state["devices"] if x["uuid"] == dev_id), None)
                    if dev is None:
                        raise vm_error(400, "Invalid device", f"Device {dev_id} is not in the inventory", "ATTCH003")
                    if dev["deviceModel"] != t["deviceType"]:
                        raise vm_error(400, "Device model mismatch",
                                       f"{dev['host-name']} is {dev['deviceModel']}, template is {t['deviceType']}",
                                       "ATTCH004")
                    missing = [k for k in ("csv-status", "csv-host-name", "csv-deviceIP") if k not in d]
                    if missing:
                        raise vm_error(400, "Invalid device variables", f"Missing {', '.join(missing)} for "
                                                                         f"{dev['host-name']}", "ATTCH005")
                    work.append((t, dev, d))

            def done():
                for t, dev, variables in work:
                    old = dev["templateId"]
                    if old and old in self.state["deviceTemplates"] and old != t["templateId"]:
                        self.state["deviceTemplates"][old]["devicesAttached"] -= 1
                    if old != t["templateId"]:
                        t["devicesAttached"] += 1
                    t["templateAttached"] = t["devicesAttached"]
                    dev.update(templateId=t["templateId"], template=t["templateName"],
                               configOperationMode="vmanage", variables=variables)

            aid = self.new_action("push_feature_template_configuration", "Push Feature Template Configuration",
                                  [dev for _, dev, _ in work], done)
            self.save()
            return {"id": aid}

    def export_csv(self, req):
        """The variables a device template needs per device (catalystwan's attach reads the columns)."""
        body = req.obj()
        with self.lock:
            t = self.device_tpl(body.get("templateId") if isinstance(body.get("templateId"), str) else "")
            columns = [{"title": title, "property": prop, "editable": False, "mandatory": True}
                       for title, prop in (("Status", "csv-status"), ("Chassis Number", "csv-deviceId"),
                                           ("System IP", "csv-deviceIP"), ("Hostname", "csv-host-name"))]
            for fid in self.feature_ids(t):
                ft = self.state["featureTemplates"].get(fid, {})
                for key, val in (ft.get("templateDefinition") or {}).items():
                    if isinstance(val, dict) and val.get("vipType") == "variableName":
                        columns.append({"title": f"{val.get('vipVariableName')}({key})",
                                        "property": f"/0/{val.get('vipVariableName')}/{key}",
                                        "editable": True, "mandatory": True})
            rows = [{"csv-status": "complete", "csv-deviceId": d["uuid"], "csv-deviceIP": d["system-ip"],
                     "csv-host-name": d["host-name"]} for d in self.state["devices"]
                    if d["templateId"] == t["templateId"]]
            return {"header": {"generatedOn": int(time.time() * 1000), "columns": columns}, "data": rows}

    def system_info(self, req):
        wanted = set(req.query.get("deviceId", []))
        with self.lock:
            return {"data": [{"uuid": d["uuid"], "personality": "vedge", "deviceId": d["deviceId"],
                              "host-name": d["host-name"], "reachability": d["reachability"],
                              "local-system-ip": d["system-ip"], "system-ip": d["system-ip"],
                              "device-model": d["deviceModel"], "site-id": d["site-id"], "status": "normal",
                              "chasisNumber": d["chasisNumber"], "board-serial": d["serialNumber"]}
                             for d in self.state["devices"] if not wanted or d["deviceId"] in wanted]}

    def action_status(self, req):
        with self.lock:
            act = self.state["actions"].get(req.params["id"])
            if act is None:
                raise vm_error(404, "Action not found", f"No action with id {req.params['id']}", "ACTN0404")
            return copy.deepcopy(act)

    # ----- centralized policy ------------------------------------------------------------
    def list_defs(self, req):
        with self.lock:
            return {"data": list(self.state["policyDefinitions"].values())}

    def validate_def(self, body: dict) -> None:
        if not body.get("name"):
            raise vm_error(400, "Policy definition name is required", "", "POLD0001")
        if body.get("type") != "data":
            raise vm_error(400, f"Invalid definition type '{body.get('type')}' for the data endpoint", "", "POLD0002")
        seq = body.get("sequences", [])
        if not isinstance(seq, list) or not all(isinstance(x, dict) for x in seq):
            raise vm_error(400, "sequences must be a list", "", "POLD0003")
        ids = [s.get("sequenceId") for s in seq]
        if not all(isinstance(i, int) for i in ids):
            raise vm_error(400, "sequenceId must be an integer", f"sequenceIds: {ids}", "POLD0008")
        if len(ids) != len(set(ids)):
            raise vm_error(400, "Duplicate sequenceId in data policy", f"sequenceIds: {ids}", "POLD0004")
        for s in seq:
            if s.get("baseAction", "accept") not in ("accept", "drop"):
                raise vm_error(400, f"Invalid baseAction '{s.get('baseAction')}' in sequence {s.get('sequenceId')}",
                               "baseAction is accept or drop", "POLD0005")

    def create_def(self, req):
        body = req.obj()
        with self.lock:
            if any(d["name"] == body.get("name") for d in self.state["policyDefinitions"].values()):
                raise vm_error(400, f"Policy definition '{body.get('name')}' already exists", "", "POLD0006")
            self.validate_def(body)
            did = str(uuid.uuid4())
            self.state["policyDefinitions"][did] = {**body, "definitionId": did, "referenceCount": 0,
                                                    "isActivatedByVsmart": False, **self.stamp(req)}
            self.save()
            return {"definitionId": did}

    def definition(self, did: str) -> dict:
        d = self.state["policyDefinitions"].get(did)
        if d is None:
            raise vm_error(404, "Policy definition not found", f"No definition with id {did}", "POLD0404")
        return d

    def get_def(self, req):
        with self.lock:
            return copy.deepcopy(self.definition(req.params["id"]))

    def update_def(self, req):
        body = req.obj()
        with self.lock:
            d = self.definition(req.params["id"])
            self.validate_def({**d, **body})
            d.update(body)
            d.update(self.stamp(req))
            active = [p["policyId"] for p in self.state["vsmartPolicies"].values()
                      if p["isPolicyActivated"] and d["definitionId"] in repr(p["policyDefinition"])]
            self.save()
            return {"masterTemplatesAffected": [], "activatedPolicies": active}

    def delete_def(self, req):
        with self.lock:
            d = self.definition(req.params["id"])
            users = [p["policyName"] for p in self.state["vsmartPolicies"].values()
                     if d["definitionId"] in repr(p["policyDefinition"])]
            if users:
                raise vm_error(400, "Policy definition is in use", f"Used by {', '.join(users)}", "POLD0007")
            del self.state["policyDefinitions"][d["definitionId"]]
            self.save()
            return Response(200, b"", content_type="application/json")

    def list_lists(self, req):
        with self.lock:
            return {"data": [x for x in self.state["policyLists"].values() if x["type"] == req.params["type"]]}

    def create_list(self, req):
        body = req.obj()
        with self.lock:
            if not body.get("name") or not isinstance(body.get("entries"), list):
                raise vm_error(400, "A policy list needs a name and entries", "", "POLL0001")
            lid = str(uuid.uuid4())
            self.state["policyLists"][lid] = {**body, "listId": lid, "type": req.params["type"], **self.stamp(req)}
            self.save()
            return {"listId": lid}

    def vsmart(self, pid: str) -> dict:
        p = self.state["vsmartPolicies"].get(pid)
        if p is None:
            raise vm_error(404, "Policy not found", f"No vSmart policy with id {pid}", "POLV0404")
        return p

    def validate_vsmart(self, body: dict) -> None:
        if not body.get("policyName"):
            raise vm_error(400, "policyName is required", "", "POLV0001")
        if body.get("policyType", "feature") not in ("feature", "cli"):
            raise vm_error(400, f"Invalid policyType '{body.get('policyType')}'", "", "POLV0002")
        pdef = body.get("policyDefinition", {})
        if not isinstance(pdef, dict) or not isinstance(pdef.get("assembly", []), list):
            raise vm_error(400, "policyDefinition must be an object with an assembly list", "", "POLV0006")
        for a in pdef.get("assembly", []):
            if not isinstance(a, dict) or not isinstance(a.get("definitionId"), str) or \
                    a["definitionId"] not in self.state["policyDefinitions"]:
                raise vm_error(400, "Invalid policy definition reference",
                               f"Definition {a.get('definitionId')} does not exist", "POLV0003")

    def list_vsmart(self, req):
        with self.lock:
            return {"data": [{k: v for k, v in p.items() if k != "policyDefinition"}
                             for p in self.state["vsmartPolicies"].values()]}

    def create_vsmart(self, req):
        body = req.obj()
        with self.lock:
            self.validate_vsmart(body)
            if any(p["policyName"] == body["policyName"] for p in self.state["vsmartPolicies"].values()):
                raise vm_error(400, f"Policy '{body['policyName']}' already exists", "", "POLV0004")
            pid = str(uuid.uuid4())
            self.state["vsmartPolicies"][pid] = {
                "policyId": pid, "policyName": body["policyName"],
                "policyDescription": body.get("policyDescription", ""), "policyType": body.get("policyType", "feature"),
                "policyDefinition": body.get("policyDefinition", {}), "isPolicyActivated": False,
                "createdBy": req.user, "createdOn": int(time.time() * 1000), **self.stamp(req)}
            self.save()
            return {"policyId": pid}

    def get_vsmart(self, req):
        with self.lock:
            return copy.deepcopy(self.vsmart(req.params["id"]))

    def update_vsmart(self, req):
        body = req.obj()
        with self.lock:
            p = self.vsmart(req.params["id"])
            merged = {**p, **body}
            self.validate_vsmart(merged)
            for k in ("policyName", "policyDescription", "policyDefinition"):
                p[k] = merged[k]
            p.update(self.stamp(req))
            self.save()
            return Response(200, b"", content_type="application/json")

    def delete_vsmart(self, req):
        with self.lock:
            p = self.vsmart(req.params["id"])
            if p["isPolicyActivated"]:
                raise vm_error(400, "Policy is active", f"Deactivate '{p['policyName']}' first", "POLV0005")
            del self.state["vsmartPolicies"][p["policyId"]]
            self.save()
            return Response(200, b"", content_type="application/json")

    def activate(self, req, on: bool):
        with self.lock:
            p = self.vsmart(req.params["id"])
            pid = p["policyId"]

            def done():
                for other in self.state["vsmartPolicies"].values():
                    other["isPolicyActivated"] = on and other["policyId"] == pid if on else \
                        (other["isPolicyActivated"] and other["policyId"] != pid)

            controller = {"uuid": "vsmart-sim-1", "deviceId": "10.255.0.2", "host-name": "vsmart1",
                          "system-ip": "10.255.0.2"}
            kind = "activate_vsmart_policy" if on else "deactivate_vsmart_policy"
            aid = self.new_action(kind, "Activate Vsmart Policy" if on else "Deactivate Vsmart Policy",
                                  [controller], done)
            self.save()
            return {"id": aid}


if __name__ == "__main__":
    simlib.serve(VManageSim, __doc__)
