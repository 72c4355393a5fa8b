#!/usr/bin/env python3
"""Cisco ASA command line emulator, run by a private OpenSSH server as the
login session of the simulator user (see asa_sim.py).

One process per SSH session. The device state (running and startup
configuration, users, faults) lives in a JSON file shared by all sessions of a
simulator instance; every command takes an exclusive lock on it, so the running
configuration survives across sessions and concurrent sessions see each other's
changes. Standard library only.
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import ipaddress
import json
import os
import re
import termios
import time
import tty
import zlib
from contextlib import contextmanager
from typing import Optional

VERSION = "9.16(4)"
INVALID = "ERROR: % Invalid input detected at '^' marker."

TCP_PORTS = {21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 49: "tacacs", 53: "domain", 80: "www",
             110: "pop3", 143: "imap4", 179: "bgp", 389: "ldap", 443: "https", 445: "cifs",
             636: "ldaps", 1521: "sqlnet", 1723: "pptp", 5060: "sip"}
UDP_PORTS = {53: "domain", 67: "bootps", 68: "bootpc", 69: "tftp", 123: "ntp", 161: "snmp",
             162: "snmptrap", 500: "isakmp", 514: "syslog", 1812: "radius", 1813: "radius-acct",
             4500: "4500", 5060: "sip"}
PORT_NAMES = {}
for _table in (TCP_PORTS, UDP_PORTS):
    for _num, _name in _table.items():
        if not _name.isdigit():
            PORT_NAMES[_name] = _num
PORT_NAMES.update({"http": 80, "telnet": 23, "echo": 7})
PROTOCOLS = {"ip", "tcp", "udp", "icmp", "icmp6", "esp", "ah", "gre", "sctp", "ospf", "eigrp", "pim",
             "igmp", "ipsec", "pptp", "snp", "nos", "pcp", "igrp", "ipinip"}
LOG_LEVELS = {"emergencies", "alerts", "critical", "errors", "warnings", "notifications",
              "informational", "debugging"}


def seed_state(hostname: str = "asa-sim", users: Optional[dict] = None, enable: str = "rampart-enable") -> dict:
    running = {
        "hostname": hostname,
        "interfaces": [
            {"name": "GigabitEthernet0/0", "nameif": "outside", "level": 0, "ip": "192.0.2.1 255.255.255.0"},
            {"name": "GigabitEthernet0/1", "nameif": "inside", "level": 100, "ip": "10.0.0.1 255.255.255.0"},
            {"name": "GigabitEthernet0/2", "nameif": "dmz", "level": 50, "ip": "172.16.0.1 255.255.255.0"},
            {"name": "Management0/0", "nameif": "management", "level": 100,
             "ip": "198.51.100.1 255.255.255.0", "mgmt": True},
        ],
        "objects": {},
        "object_groups": {},
        "access_lists": {},
        "nat": [],
        "access_groups": [],
    }
    return {"hostname": hostname, "running": running, "startup": copy.deepcopy(running),
            "users": users or {}, "enable_password": enable, "write_count": 0, "sessions": 0,
            "commands": [], "faults": {}, "hits": {}, "links": {}}


# ----------------------------------------------------------------------------
# operational state: hit counters and interface status
# ----------------------------------------------------------------------------

LINK_STATES = ("up", "down", "administratively down")
ACL_LOG_HEADER = ["access-list cached ACL log flows: total 0, denied 0 (deny-flow-max 4096)",
                  "            alert-interval 300"]


def ace_hash(text: str) -> str:
    """A stable per-ACE hash (the real ASA prints one per entry and element)."""
    return f"0x{zlib.crc32(text.encode()):08x}"


def group_members(cfg: dict, name: str, seen: frozenset = frozenset()) -> Optional[list[str]]:
    """The addresses or port operators an object-group (or object) stands
    for, nested groups flattened; None for what is not expanded."""
    grp = cfg["object_groups"].get(name)
    if grp is None or name in seen or grp["type"] not in ("network", "service"):
        return None
    out: list[str] = []
    for line in grp["lines"]:
        kind, _, arg = line.partition(" ")
        if kind == "group-object":
            out += group_members(cfg, arg, seen | {name}) or []
        elif kind == "network-object" and arg.startswith("object "):
            out += object_members(cfg, arg.split()[1]) or []
        elif kind in ("network-object", "port-object"):
            out.append(arg)
    return out


def object_members(cfg: dict, name: str) -> Optional[list[str]]:
    obj = cfg["objects"].get(name)
    if obj is None or not obj["lines"]:
        return None
    kind, _, arg = obj["lines"][0].partition(" ")
    return [f"host {arg}" if kind == "host" else arg if kind == "subnet" else obj["lines"][0]]


def expand_ace(cfg: dict, ace: str) -> list[str]:
    """The elements an ACE compiles to: every object-group or object
    replaced by each of its members (the ASA shows them indented under the
    entry). An ACE without groups is its own single element."""
    words = ace.split()
    variants = [[]]
    i = 0
    while i < len(words):
        members = None
        if words[i] in ("object-group", "object") and i + 1 < len(words) and i != 2:
            fn = group_members if words[i] == "object-group" else object_members
            members = fn(cfg, words[i + 1])
        if members is None:
            variants = [v + [words[i]] for v in variants]
            i += 1
        else:
            variants = [v + [m] for v in variants for m in members]
            i += 2
    return [" ".join(v) for v in variants]


def show_access_list(cfg: dict, hits: dict, name: Optional[str]) -> list[str]:
    """`show access-list [NAME]` as ASA 9.x prints it: a header per list, each
    entry with its line number; an entry using object-groups is printed once
    without a counter and then once per element, indented, each with its own
    hitcnt."""
    lines = [] if name else list(ACL_LOG_HEADER)
    for aname, aces in cfg["access_lists"].items():
        if name and aname != name:
            continue
        counts = hits.get(aname, {})
        body, elements = [], 0
        for n, ace in enumerate(aces, 1):
            prefix = f"access-list {aname} line {n}"
            if ace.startswith("remark "):
                body.append(f"{prefix} {ace}")
                continue
            parts = expand_ace(cfg, ace)
            elements += len(parts)
            per = counts.get(ace, {})
            if parts == [ace]:
                body.append(f"{prefix} {ace} (hitcnt={per.get(ace, 0)}) {ace_hash(aname + ' ' + ace)}")
                continue
            body.append(f"{prefix} {ace} {ace_hash(aname + ' ' + ace)}")
            body += [f"  {prefix} {p} (hitcnt={per.get(p, 0)}) {ace_hash(aname + ' ' + p)}" for p in parts]
        lines.append(f"access-list {aname}; {elements} elements; name hash: {ace_hash(aname)}")
        lines += body
    return lines


def prune_hits(cfg: dict, hits: dict) -> None:
    """Drops counters of entries no longer configured, so an entry removed
    and added again starts from zero as on the device."""
    for aname in list(hits):
        aces = cfg["access_lists"].get(aname)
        if aces is None:
            del hits[aname]
            continue
        for ace in list(hits[aname]):
            if ace not in aces:
                del hits[aname][ace]


def count_hits(st: dict, acl: str, line: int, hits: int, element: int = 1) -> dict:
    """Adds `hits` to element `element` (1-based, in the order shown) of entry
    `line` of `acl`: the admin endpoint's stand-in for matching traffic.
    Raises KeyError/ValueError with a message naming what is wrong."""
    cfg = st["running"]
    aces = cfg["access_lists"].get(acl)
    if aces is None:
        raise KeyError(f"access-list {acl} does not exist")
    if not 1 <= line <= len(aces):
        raise KeyError(f"access-list {acl} has no line {line} (it has {len(aces)})")
    ace = aces[line - 1]
    if ace.startswith("remark "):
        raise ValueError(f"access-list {acl} line {line} is a remark and has no counter")
    parts = expand_ace(cfg, ace)
    if not 1 <= element <= len(parts):
        raise KeyError(f"access-list {acl} line {line} has no element {element} (it has {len(parts)})")
    store = st.setdefault("hits", {})
    prune_hits(cfg, store)
    per = store.setdefault(acl, {}).setdefault(ace, {})
    per[parts[element - 1]] = per.get(parts[element - 1], 0) + hits
    return {"acl": acl, "line": line, "element": parts[element - 1], "hitcnt": per[parts[element - 1]],
            "total": sum(per.values())}


def show_interface_brief(cfg: dict, links: dict) -> list[str]:
    """`show interface ip brief` in the documented column layout."""
    out = ["Interface                  IP-Address      OK? Method Status                Protocol"]
    for i in cfg["interfaces"]:
        status = links.get(i["name"], "up")
        ip = i["ip"].split()[0] if i.get("ip") else "unassigned"
        method = "CONFIG" if i.get("ip") else "unset"
        proto = "up" if status == "up" else "down"
        out.append(f"{i['name']:<27}{ip:<16}YES {method:<7}{status:<22}{proto}")
    return out


class CliError(Exception):
    """A command failed; `text` is printed verbatim (ASA style)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class Invalid(Exception):
    """Invalid input at character offset `pos` of the command line."""

    def __init__(self, pos: int):
        super().__init__(pos)
        self.pos = pos


class Tokens:
    """Command words with their offsets, consumed left to right."""

    def __init__(self, line: str):
        self.items = [(m.group(), m.start()) for m in re.finditer(r"\S+", line)]
        self.i = 0
        self.line = line

    def peek(self) -> Optional[str]:
        return self.items[self.i][0] if self.i < len(self.items) else None

    def pos(self) -> int:
        return self.items[self.i][1] if self.i < len(self.items) else len(self.line.rstrip()) + 1

    def next(self) -> str:
        if self.i >= len(self.items):
            raise Invalid(self.pos())
        tok = self.items[self.i][0]
        self.i += 1
        return tok

    def kw(self, *options: str, optional: bool = False, first: bool = False) -> Optional[str]:
        """Consumes a keyword, accepting unique abbreviations like the ASA parser
        (with first=True an ambiguous abbreviation picks the earliest option)."""
        tok = self.peek()
        if tok is None:
            if optional:
                return None
            raise Invalid(self.pos())
        low = tok.lower()
        exact = [o for o in options if o == low]
        matches = exact or [o for o in options if o.startswith(low)]
        if first and matches:
            matches = matches[:1]
        if len(matches) != 1:
            if optional:
                return None
            raise Invalid(self.pos())
        self.i += 1
        return matches[0]

    def rest(self) -> str:
        if self.i >= len(self.items):
            return ""
        start = self.items[self.i][1]
        self.i = len(self.items)
        return self.line[start:].strip()

    def done(self) -> bool:
        return self.i >= len(self.items)

    def end(self) -> None:
        if not self.done():
            raise Invalid(self.pos())


def is_ip(s: str) -> bool:
    try:
        ipaddress.IPv4Address(s)
        return True
    except ValueError:
        return False


def check_pair(addr: str, mask: str) -> None:
    try:
        net = ipaddress.IPv4Network(f"{addr}/{mask}", strict=False)
    except ValueError:
        raise CliError(f"ERROR: {mask} is not a valid network mask")
    if str(net.network_address) != addr:
        raise CliError("ERROR: IP address,mask doesn't pair")


class Device:
    """The shared device: state file plus lock."""

    def __init__(self, state_path: str):
        self.path = state_path
        self.lock_path = state_path + ".lock"

    @contextmanager
    def locked(self):
        """Yields the state under an exclusive lock and writes it back if it
        changed, also when the command failed (fault counters must stick)."""
        with open(self.lock_path, "a+") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            try:
                with open(self.path, encoding="utf-8") as fh:
                    state = json.load(fh)
                before = json.dumps(state, sort_keys=True)
                try:
                    yield state
                finally:
                    if json.dumps(state, sort_keys=True) != before:
                        # in place: the directory may not be writable by the session user
                        with open(self.path, "r+", encoding="utf-8") as fh:
                            fh.seek(0)
                            fh.truncate()
                            json.dump(state, fh, indent=1, sort_keys=True)
                            fh.flush()
            finally:
                fcntl.flock(lk, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------
# configuration parsing
# ----------------------------------------------------------------------------

def parse_port_op(t: Tokens, proto: str, cfg: dict) -> Optional[str]:
    """Parses `eq P | neq P | lt P | gt P | range A B | object-group SVC` when present."""
    if proto not in ("tcp", "udp", "sctp", "tcp-udp") or t.done():
        return None
    save = t.i
    op = t.kw("eq", "neq", "lt", "gt", "range", "object-group", optional=True)
    if op is None:
        t.i = save
        return None
    if op == "object-group":
        name = t.next()
        grp = cfg["object_groups"].get(name)
        if grp is None or grp["type"] != "service":
            t.i = save  # maybe a network object-group that follows
            return None
        return f"object-group {name}"
    ports = [port_name(t, proto)]
    if op == "range":
        ports.append(port_name(t, proto))
    return f"{op} {' '.join(ports)}"


def port_name(t: Tokens, proto: str) -> str:
    pos = t.pos()
    tok = t.next().lower()
    if tok.isdigit():
        num = int(tok)
        if not 0 <= num <= 65535:
            raise Invalid(pos)
    elif tok in PORT_NAMES:
        num = PORT_NAMES[tok]
    else:
        raise Invalid(pos)
    table = TCP_PORTS if proto == "tcp" else UDP_PORTS if proto == "udp" else {}
    name = table.get(num)
    return name if name and not name.isdigit() else str(num)


def parse_address(t: Tokens, cfg: dict) -> str:
    pos = t.pos()
    tok = t.peek()
    if tok is None:
        raise Invalid(pos)
    low = tok.lower()
    if low in ("any", "any4", "any6"):
        t.next()
        return low
    if low == "host":
        t.next()
        apos = t.pos()
        addr = t.next()
        if not is_ip(addr):
            raise Invalid(apos)
        return f"host {addr}"
    if low in ("object", "object-group"):
        t.next()
        name = t.next()
        if low == "object":
            if name not in cfg["objects"]:
                raise CliError(f"ERROR: specified object ({name}) does not exist")
        else:
            grp = cfg["object_groups"].get(name)
            if grp is None:
                raise CliError(f"ERROR: specified object group <{name}> not found")
        return f"{low} {name}"
    if low == "interface":
        t.next()
        name = t.next()
        nameif(cfg, name)
        return f"interface {name}"
    if is_ip(tok):
        t.next()
        mpos = t.pos()
        mask = t.next()
        if not is_ip(mask):
            raise Invalid(mpos)
        check_pair(tok, mask)
        return f"{tok} {mask}"
    raise Invalid(pos)


def nameif(cfg: dict, name: str) -> None:
    if name != "any" and name not in [i["nameif"] for i in cfg["interfaces"]]:
        raise CliError(f"ERROR: '{name}' is not a valid interface name")


def parse_ace(t: Tokens, cfg: dict) -> str:
    """`extended {permit|deny} PROTO SRC [PORT] DST [PORT] [log ...] [inactive]` (after the ACL name)."""
    t.kw("extended")
    action = t.kw("permit", "deny")
    pos = t.pos()
    tok = t.peek()
    if tok is None:
        raise Invalid(pos)
    low = tok.lower()
    if low == "object-group":
        t.next()
        name = t.next()
        if name not in cfg["object_groups"]:
            raise CliError(f"ERROR: specified object group <{name}> not found")
        proto = f"object-group {name}"
        base_proto = "ip"
    elif low in PROTOCOLS or (low.isdigit() and 0 <= int(low) <= 255):
        t.next()
        proto = base_proto = low
    else:
        raise Invalid(pos)
    src = parse_address(t, cfg)
    sport = parse_port_op(t, base_proto, cfg)
    dst = parse_address(t, cfg)
    dport = parse_port_op(t, base_proto, cfg)
    parts = ["extended", action, proto, src] + ([sport] if sport else []) + [dst] + ([dport] if dport else [])
    while not t.done():
        opt = t.kw("log", "inactive", "time-range")
        if opt == "log":
            parts.append("log")
            lvl = t.peek()
            if lvl and (lvl.isdigit() or lvl.lower() in LOG_LEVELS):
                parts.append(t.next().lower())
            if t.peek() and t.peek().lower() == "interval":
                t.next()
                ipos = t.pos()
                secs = t.next()
                if not secs.isdigit():
                    raise Invalid(ipos)
                parts += ["interval", secs]
        elif opt == "time-range":
            parts += ["time-range", t.next()]
        else:
            parts.append("inactive")
    return " ".join(parts)


def acl_uses(cfg: dict, name: str) -> bool:
    """Whether an object or object-group is referenced anywhere."""
    pat = re.compile(rf"\bobject(-group)? {re.escape(name)}(\s|$)")
    return any(pat.search(ace) for aces in cfg["access_lists"].values() for ace in aces) or \
        any(pat.search(n) for n in cfg["nat"]) or \
        any(pat.search(o.get("nat") or "") for o in cfg["objects"].values()) or \
        any(pat.search(line) for g in cfg["object_groups"].values() for line in g["lines"])


def parse_nat_body(t: Tokens, cfg: dict, in_object: bool) -> str:
    """Parses the words after `nat` (twice NAT, or object NAT when in_object)."""
    pos = t.pos()
    ifs = t.next()
    m = re.fullmatch(r"\(([\w-]+),([\w-]+)\)", ifs)
    if not m:
        raise Invalid(pos)
    nameif(cfg, m.group(1))
    nameif(cfg, m.group(2))
    parts = [ifs]
    if in_object:
        kind = t.kw("static", "dynamic")
        mapped = t.next()
        if mapped.lower() == "interface":
            mapped = "interface"
        elif not is_ip(mapped) and mapped not in cfg["objects"] and mapped not in cfg["object_groups"]:
            raise CliError(f"ERROR: Address {mapped} is neither an IP address nor an object")
        if kind == "dynamic" and mapped == "interface" and m.group(2) == "any":
            # interface PAT needs one mapped interface whose address it uses
            raise CliError("ERROR: Cannot use interface PAT when the mapped interface is 'any'")
        parts += [kind, mapped]
        spos = t.pos()
        if t.kw("service", optional=True):
            # `service tcp|udp REAL MAPPED`: static NAT only (port translation)
            if kind != "static":
                raise Invalid(spos)
            proto = t.kw("tcp", "udp")
            ports = []
            for _ in range(2):
                pos = t.pos()
                p = t.next()
                if not (p.isdigit() and 1 <= int(p) <= 65535) and p not in PORT_NAMES:
                    raise Invalid(pos)
                ports.append(p)
            parts += ["service", proto] + ports
        if not t.done():
            parts.append(t.rest())
        return " ".join(parts)
    extra = t.kw("after-auto", "source", optional=True)
    if extra == "after-auto":
        parts.append("after-auto")
        t.kw("source")
    elif extra is None:
        raise Invalid(t.pos())
    kind = t.kw("static", "dynamic")
    real = t.next()
    mapped = t.next()
    for name in (real, mapped):
        if name in ("any", "interface") or (name == mapped and is_ip(name) and kind == "static"):
            continue
        if name not in cfg["objects"] and name not in cfg["object_groups"]:
            raise CliError(f"ERROR: NAT unable to find object ({name})")
    parts += ["source", kind, real, mapped]
    if not t.done():
        parts.append(t.rest())
    return " ".join(parts)


def render(cfg: dict, section: Optional[str] = None, name: Optional[str] = None) -> list[str]:
    out: list[str] = []

    def objects():
        for oname, obj in cfg["objects"].items():
            if name and oname != name:
                continue
            out.append(f"object {obj['type']} {oname}")
            out.extend(f" {line}" for line in obj["lines"])

    def object_nat():
        for oname, obj in cfg["objects"].items():
            if obj.get("nat"):
                out.append(f"object network {oname}")
                out.append(f" nat {obj['nat']}")

    def groups():
        for gname, grp in cfg["object_groups"].items():
            if name and gname != name:
                continue
            head = f"object-group {grp['type']} {gname}"
            if grp.get("proto"):
                head += f" {grp['proto']}"
            out.append(head)
            if grp.get("description"):
                out.append(f" description {grp['description']}")
            out.extend(f" {line}" for line in grp["lines"])

    def acls():
        for aname, aces in cfg["access_lists"].items():
            if name and aname != name:
                continue
            out.extend(f"access-list {aname} {ace}" for ace in aces)

    def nat():
        out.extend(f"nat {n}" for n in cfg["nat"] if not n.startswith("(") or "after-auto" not in n)
        object_nat()
        out.extend(f"nat {n}" for n in cfg["nat"] if "after-auto" in n)

    def access_groups():
        out.extend(f"access-group {g['acl']} {g['dir']} interface {g['interface']}" for g in cfg["access_groups"])

    sections = {"object": objects, "object-group": groups, "access-list": acls, "nat": nat,
                "access-group": access_groups}
    if section:
        sections[section]()
        return out
    out += [": Saved", ":", ": Serial Number: 9A5KSIMRAMP", ": Hardware:   ASAv, 2048 MB RAM, CPU Xeon 4100/6100/8100 series 2200 MHz",
            ":", f"ASA Version {VERSION} ", "!", f"hostname {cfg['hostname']}",
            "enable password ***** pbkdf2", "names", "no mac-address auto", "", "!"]
    for i in cfg["interfaces"]:
        out.append(f"interface {i['name']}")
        if i.get("mgmt"):
            out.append(" management-only")
        out += [f" nameif {i['nameif']}", f" security-level {i['level']}", f" ip address {i['ip']} ", "!"]
    out += ["ftp mode passive"]
    objects()
    groups()
    acls()
    out += ["pager lines 24", "logging enable", "logging asdm informational"]
    out += [f"mtu {i['nameif']} 1500" for i in cfg["interfaces"]]
    out += ["no failover", "no monitor-interface service-module", "icmp unreachable rate-limit 1 burst-size 1",
            "no asdm history enable", "arp timeout 14400", "no arp permit-nonconnected", "arp rate-limit 16384"]
    nat()
    access_groups()
    out += ["route outside 0.0.0.0 0.0.0.0 192.0.2.254 1", "timeout xlate 3:00:00", "timeout pat-xlate 0:00:30",
            "timeout conn 1:00:00 half-closed 0:10:00 udp 0:02:00 sctp 0:02:00 icmp 0:00:02",
            "user-identity default-domain LOCAL", "aaa authentication ssh console LOCAL",
            "http server enable", "http 0.0.0.0 0.0.0.0 management", "no snmp-server location",
            "no snmp-server contact", "crypto ipsec security-association pmtu-aging infinite",
            "telnet timeout 5", "ssh stricthostkeycheck", "ssh 0.0.0.0 0.0.0.0 management",
            "ssh timeout 5", "ssh key-exchange group dh-group14-sha256", "console timeout 0",
            "threat-detection basic-threat", "threat-detection statistics access-list",
            "no threat-detection statistics tcp-intercept", "dynamic-access-policy-record DfltAccessPolicy",
            "!", "class-map inspection_default", " match default-inspection-traffic", "!",
            "policy-map global_policy", " class inspection_default", "  inspect dns preset_dns_map",
            "  inspect ftp", "  inspect icmp", "!", "service-policy global_policy global",
            "prompt hostname context", "no call-home reporting anonymous",
            f"Cryptochecksum:{cfg_checksum(cfg)}", ": end"]
    return out


def cfg_checksum(cfg: dict) -> str:
    import hashlib
    return hashlib.md5(json.dumps(cfg, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------
# the session
# ----------------------------------------------------------------------------

class Session:
    MODES = {"user": ">", "priv": "#", "config": "(config)#", "obj": "(config-network-object)#",
             "ogn": "(config-network-object-group)#", "ogs": "(config-service-object-group)#"}

    def __init__(self, device: Device, infd: int = 0, outfd: int = 1):
        self.dev = device
        self.infd, self.outfd = infd, outfd
        self.tty = os.isatty(infd)
        self.mode = "user"
        self.pager = 24
        self.width = 80
        self.context: Optional[str] = None  # object / object-group being edited
        self.buf = b""
        self.hostname = "asa"
        self.username = os.environ.get("USER", "")
        self.logged_in = False  # reached privilege 15 through `login` rather than `enable`

    # ----- I/O -----------------------------------------------------------
    def write(self, text: str) -> None:
        if not self.tty:
            text = text.replace("\n", "\r\n")
        data = text.encode()
        while data:
            n = os.write(self.outfd, data)
            data = data[n:]

    def readline(self, echo: bool = True) -> Optional[str]:
        old = None
        if self.tty and not echo:
            old = termios.tcgetattr(self.infd)
            new = copy.deepcopy(old)
            new[3] &= ~termios.ECHO
            termios.tcsetattr(self.infd, termios.TCSADRAIN, new)
        try:
            while b"\n" not in self.buf and b"\r" not in self.buf:
                chunk = os.read(self.infd, 4096)
                if not chunk:
                    return None
                self.buf += chunk
        finally:
            if old is not None:
                termios.tcsetattr(self.infd, termios.TCSADRAIN, old)
        m = re.search(rb"\r\n|\n|\r", self.buf)
        line, self.buf = self.buf[:m.start()], self.buf[m.end():]
        text = line.decode("utf-8", "replace")
        if not self.tty and echo:
            self.write(text + "\n")
        elif not echo:
            self.write("\n" if not self.tty else "\n")
        return text

    def readkey(self) -> Optional[str]:
        if self.buf:
            ch, self.buf = self.buf[:1], self.buf[1:]
            return ch.decode("latin-1")
        old = None
        if self.tty:
            old = termios.tcgetattr(self.infd)
            tty.setcbreak(self.infd, termios.TCSADRAIN)
            new = termios.tcgetattr(self.infd)
            new[3] &= ~termios.ECHO
            termios.tcsetattr(self.infd, termios.TCSADRAIN, new)
        try:
            ch = os.read(self.infd, 1)
        finally:
            if old is not None:
                termios.tcsetattr(self.infd, termios.TCSADRAIN, old)
        return ch.decode("latin-1") if ch else None

    def prompt(self) -> str:
        return self.hostname + self.MODES[self.mode]

    def page(self, lines: list[str]) -> None:
        """Prints output through the pager (`terminal pager 0` disables it)."""
        if not self.pager:
            self.write("".join(line + "\n" for line in lines))
            return
        shown, budget = 0, self.pager - 1
        while shown < len(lines):
            chunk = lines[shown:shown + budget]
            self.write("".join(line + "\n" for line in chunk))
            shown += len(chunk)
            if shown >= len(lines):
                break
            self.write("<--- More --->")
            key = self.readkey()
            self.write("\r" + " " * 14 + "\r")
            if key is None or key in ("q", "Q", "\x03"):
                break
            budget = 1 if key in ("\r", "\n") else self.pager - 1

    # ----- main loop ------------------------------------------------------
    def run(self) -> None:
        with self.dev.locked() as st:
            st["sessions"] = st.get("sessions", 0) + 1
            self.hostname = st["running"]["hostname"]
            banner = st.get("banner")
        if banner:
            self.write(banner.rstrip("\n") + "\n")
        self.write("Type help or '?' for a list of available commands.\n")
        while True:
            self.write(self.prompt() + " " if self.mode in ("user",) else self.prompt() + " ")
            line = self.readline()
            if line is None:
                return
            if not self.execute(line):
                return

    def execute(self, line: str) -> bool:
        """Runs one command line; returns False when the session ends."""
        stripped = line.strip()
        if not stripped or stripped.startswith("!") or stripped.startswith(":"):
            return True
        with self.dev.locked() as st:
            faults = st.setdefault("faults", {})
            delay = faults.get("delay_ms", 0)
            drop = faults.get("drop_next", 0)
            if drop:
                faults["drop_next"] = drop - 1
            if delay and faults.get("delay_next") is not None:
                faults["delay_next"] -= 1
                if faults["delay_next"] <= 0:
                    faults["delay_ms"], faults["delay_next"] = 0, None
        if delay:
            time.sleep(delay / 1000.0)
        if drop:
            os._exit(1)  # the SSH session dies without an answer
        offset = len(self.prompt()) + 1 + (len(line) - len(line.lstrip()))
        try:
            return self.dispatch(stripped)
        except Invalid as inv:
            self.write(" " * (offset + inv.pos) + "^\n" + INVALID + "\n")
        except CliError as err:
            self.write(err.text.rstrip("\n") + "\n")
        return True

    def dispatch(self, line: str) -> bool:
        t = Tokens(line)
        # commands valid in every mode, in the order used to resolve abbreviations ("en" is enable)
        if self.mode == "user":
            common = t.kw("show", "enable", "exit", "quit", "logout", "login", "terminal",
                          optional=True, first=True)
            if common is None:
                raise Invalid(0)
        else:
            common = t.kw("show", "enable", "end", "exit", "write", "configure", "copy", "quit", "logout",
                          "login", "terminal", "disable", "ping", "clear", optional=True, first=True)
        if common == "show":
            self.show(t)
            return True
        if common == "clear":
            if (t.peek() or "").lower() == "access-list":
                self.clear_counters(t)
                return True
            if self.mode == "priv":
                raise Invalid(t.pos())
            t.i = 0  # `clear configure ...` in configuration mode
            self.configure(t)
            return True
        if common in ("exit", "quit", "logout"):
            t.end()
            if common == "exit" and self.mode in ("obj", "ogn", "ogs"):
                self.mode, self.context = "config", None
                return True
            if common == "exit" and self.mode == "config":
                self.mode = "priv"
                return True
            self.write("\nLogoff\n\n")
            return False
        if common == "end":
            t.end()
            if self.mode in ("config", "obj", "ogn", "ogs"):
                self.mode, self.context = "priv", None
                return True
            raise Invalid(0)
        if common == "enable":
            t.end()
            if self.mode == "user":
                self.enable()
            return True
        if common == "login":
            t.end()
            self.login()
            return True
        if common == "disable":
            t.end()
            self.mode = "user"
            return True
        if common == "terminal":
            what = t.kw("pager", "width")
            pos = t.pos()
            val = t.next()
            if what == "pager" and val.lower() == "lines":
                pos, val = t.pos(), t.next()
            if not val.isdigit():
                raise Invalid(pos)
            t.end()
            if what == "pager":
                self.pager = int(val)
            else:
                if not 24 <= int(val) <= 511 and int(val) != 0:
                    raise Invalid(pos)
                self.width = int(val)
            return True
        if common == "write":
            what = t.kw("memory", "terminal", optional=True) or "memory"
            t.end()
            if what == "terminal":
                with self.dev.locked() as st:
                    lines = render(st["running"])
                self.page(lines)
            else:
                self.write_memory()
            return True
        if common == "copy":
            t.kw("running-config")
            t.kw("startup-config")
            t.end()
            self.write_memory()
            return True
        if common == "configure" and self.mode == "priv":
            t.kw("terminal")
            t.end()
            self.mode = "config"
            return True
        if common == "ping":
            pos = t.pos()
            target = t.next()
            if not is_ip(target):
                raise Invalid(pos)
            self.write("Type escape sequence to abort.\nSending 5, 100-byte ICMP Echos to "
                       f"{target}, timeout is 2 seconds:\n!!!!!\nSuccess rate is 100 percent (5/5), "
                       "round-trip min/avg/max = 1/1/1 ms\n")
            return True
        if self.mode == "priv":
            raise Invalid(0)
        # configuration modes
        t.i = 0
        self.configure(t)
        return True

    def clear_counters(self, t: Tokens) -> None:
        """`clear access-list [NAME] counters`: hit counts back to zero."""
        t.kw("access-list")
        name = None
        if (t.peek() or "").lower() != "counters":
            name = t.next()
        t.kw("counters")
        t.end()
        with self.dev.locked() as st:
            if name and name not in st["running"]["access_lists"]:
                raise CliError(f"ERROR: access-list <{name}> does not exist")
            hits = st.setdefault("hits", {})
            for aname in [name] if name else list(hits):
                hits.pop(aname, None)

    # ----- privilege -------------------------------------------------------
    def enable(self) -> None:
        with self.dev.locked() as st:
            secret = st.get("enable_password", "")
        for _ in range(3):
            self.write("Password: ")
            pw = self.readline(echo=False)
            if pw is None:
                raise SystemExit(0)
            if pw == secret:
                self.mode = "priv"
                return
            self.write("Invalid password\n")
        self.write("Access denied.\n")

    def login(self) -> None:
        self.write("Username: ")
        user = self.readline()
        self.write("Password: ")
        pw = self.readline(echo=False)
        with self.dev.locked() as st:
            users = st.get("users", {})
        if user is not None and users.get(user.strip()) == pw:
            self.mode = "priv"
            self.username = user.strip()
            self.logged_in = True
        else:
            self.write("Invalid password\n")

    # ----- show ---------------------------------------------------------------
    def show(self, t: Tokens) -> None:
        what = t.kw("running-config", "startup-config", "version", "curpriv", "clock", "access-list",
                    "hostname", "interface")
        with self.dev.locked() as st:
            running = copy.deepcopy(st["running"])
            startup = copy.deepcopy(st.get("startup"))
        if what == "curpriv":
            t.end()
            level, modes = {"user": (1, "P_UNPR"), "priv": (15, "P_PRIV")}.get(self.mode, (15, "P_CONF"))
            user = self.username if self.mode == "user" or self.logged_in else "enable_15"
            self.write(f"Username : {user}\nCurrent privilege level : {level}\nCurrent Mode/s : {modes}\n")
            return
        if what == "version":
            t.end()
            self.page([f"Cisco Adaptive Security Appliance Software Version {VERSION} ",
                       "SSP Operating System Version 2.10(1.162)", "Device Manager Version 7.16(1)", "",
                       "Compiled on Mon 21-Feb-22 11:41 GMT by builders",
                       "System image file is \"boot:/asa9164-smp-k8.bin\"",
                       "Config file at boot was \"startup-config\"", "",
                       f"{running['hostname']} up 1 day 2 hours", "",
                       "Hardware:   ASAv, 2048 MB RAM, CPU Xeon 4100/6100/8100 series 2200 MHz,",
                       "Serial Number: 9A5KSIMRAMP", "Configuration has not been modified since last system restart."])
            return
        if what == "clock":
            t.end()
            self.write(time.strftime("%H:%M:%S.000 UTC %a %b %d %Y", time.gmtime()) + "\n")
            return
        if what == "hostname":
            t.end()
            self.write(running["hostname"] + "\n")
            return
        if what == "access-list":
            name = t.next() if not t.done() else None
            t.end()
            if name and name not in running["access_lists"]:
                raise CliError(f"ERROR: access-list <{name}> does not exist")
            with self.dev.locked() as st:
                prune_hits(st["running"], st.setdefault("hits", {}))
                hits = copy.deepcopy(st["hits"])
            self.page(show_access_list(running, hits, name))
            return
        if what == "interface":
            t.kw("ip")
            t.kw("brief")
            t.end()
            with self.dev.locked() as st:
                links = dict(st.get("links", {}))
            self.page(show_interface_brief(running, links))
            return
        cfg = running if what == "running-config" else startup
        if cfg is None:
            self.write("\n")
            return
        section = t.kw("access-list", "object-group", "object", "access-group", "nat", optional=True)
        if section is None and not t.done():
            raise Invalid(t.pos())
        name = None
        if section in ("access-list", "object-group", "object") and not t.done():
            if section == "object-group" and (t.peek() or "").lower() in ("network", "service"):
                t.next()
            elif section == "object" and (t.peek() or "").lower() == "network":
                t.next()
            if not t.done():
                name = t.next()
        t.end()
        lines = render(cfg, section, name)
        if section and name and not lines:
            self.write("\n")
            return
        self.page(lines)

    # ----- write memory ----------------------------------------------------------
    def write_memory(self) -> None:
        with self.dev.locked() as st:
            faults = st.setdefault("faults", {})
            if faults.get("write_fail"):
                faults["write_fail"] -= 1
                failed = True
            else:
                failed = False
                st["startup"] = copy.deepcopy(st["running"])
                st["write_count"] = st.get("write_count", 0) + 1
                size = len("\n".join(render(st["running"])))
                checksum = cfg_checksum(st["running"])
        self.write("Building configuration...\n")
        if failed:
            self.write("%Error writing disk0:/.private/startup-config (No space left on device)\n"
                       "Error executing command\n[FAILED]\n")
            return
        self.write(f"Cryptochecksum: {checksum[:8]} {checksum[8:16]} {checksum[16:24]} {checksum[24:]} \n\n"
                   f"{size} bytes copied in 0.120 secs\n[OK]\n")

    # ----- configuration ------------------------------------------------------------
    def configure(self, t: Tokens) -> None:
        with self.dev.locked() as st:
            faults = st.setdefault("faults", {})
            if faults.get("fail_next"):
                faults["fail_next"] -= 1
                raise CliError("ERROR: " + faults.get("message", "Injected fault"))
            cfg = st["running"]
            work = copy.deepcopy(cfg)
            self.config_line(t, work)
            # only a fully parsed and validated command changes the device
            st["running"] = work
            prune_hits(work, st.setdefault("hits", {}))
            self.hostname = work["hostname"]
            st.setdefault("commands", []).append(t.line)
            del st["commands"][:-200]

    def config_line(self, t: Tokens, cfg: dict) -> None:
        if self.mode in ("obj", "ogn", "ogs"):
            save = t.i
            try:
                if self.sub_line(t, cfg):
                    return
            except Invalid:
                # any global configuration command leaves the sub-mode (ASA behaviour)
                t.i = save
                top = t.peek().lower()
                if not any(k.startswith(top) for k in ("hostname", "object", "object-group", "access-list",
                                                      "access-group", "nat", "no", "clear", "interface")):
                    raise
                self.mode, self.context = "config", None
        negate = t.kw("no", optional=True) is not None
        if not negate and t.kw("clear", optional=True):
            t.kw("configure")
            self.clear_configure(t, cfg)
            return
        cmd = t.kw("hostname", "object", "object-group", "access-list", "access-group", "nat",
                   "interface")
        if cmd == "hostname":
            pos = t.pos()
            name = t.next()
            t.end()
            if negate:
                cfg["hostname"] = "ciscoasa"
            elif not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,62}", name):
                raise Invalid(pos)
            else:
                cfg["hostname"] = name
        elif cmd == "object":
            t.kw("network")
            name = t.next()
            t.end()
            if negate:
                if name not in cfg["objects"]:
                    raise CliError(f"ERROR: Object {name} does not exist")
                if acl_uses(cfg, name):
                    raise CliError(f"ERROR: unable to delete object ({name}), it is being used")
                del cfg["objects"][name]
                return
            if name in cfg["object_groups"]:
                raise CliError(f"ERROR: Object {name} already exists as an object-group")
            cfg["objects"].setdefault(name, {"type": "network", "lines": [], "nat": None})
            self.mode, self.context = "obj", name
        elif cmd == "object-group":
            kind = t.kw("network", "service")
            name = t.next()
            proto = t.kw("tcp", "udp", "tcp-udp", optional=True) if kind == "service" else None
            t.end()
            if negate:
                grp = cfg["object_groups"].get(name)
                if grp is None or grp["type"] != kind:
                    raise CliError(f"ERROR: object-group {name} does not exist")
                if acl_uses(cfg, name):
                    raise CliError(f"ERROR: object-group {name} is being used; remove its references first")
                del cfg["object_groups"][name]
                return
            if name in cfg["objects"]:
                raise CliError(f"ERROR: Object {name} already exists as a network object")
            grp = cfg["object_groups"].setdefault(name, {"type": kind, "lines": [], "proto": proto})
            if grp["type"] != kind:
                raise CliError(f"ERROR: object-group {name} already exists with type {grp['type']}")
            self.mode, self.context = ("ogn" if kind == "network" else "ogs"), name
        elif cmd == "access-list":
            pos = t.pos()
            name = t.next()
            if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,241}", name):
                raise Invalid(pos)
            if negate and t.done():
                if name not in cfg["access_lists"]:
                    raise CliError(f"ERROR: access-list <{name}> does not exist")
                self.remove_acl(cfg, name)
                return
            line_no = None
            if (t.peek() or "").lower() == "line":
                t.next()
                lpos = t.pos()
                num = t.next()
                if not num.isdigit() or int(num) < 1:
                    raise Invalid(lpos)
                line_no = int(num)
            if (t.peek() or "").lower() == "remark":
                t.next()
                ace = "remark " + t.rest()
            else:
                ace = parse_ace(t, cfg)
            aces = cfg["access_lists"].get(name, [])
            if negate:
                if ace not in aces:
                    raise CliError("ERROR: Specified access-list entry does not exist")
                aces.remove(ace)
                if aces:
                    cfg["access_lists"][name] = aces
                else:
                    self.remove_acl(cfg, name)
                return
            if ace in aces and not ace.startswith("remark"):
                self.write(f"WARNING: <{name}> found duplicate element\n")
                return
            if line_no is not None and line_no <= len(aces):
                aces.insert(line_no - 1, ace)
            else:
                aces.append(ace)
            cfg["access_lists"][name] = aces
        elif cmd == "access-group":
            acl = t.next()
            direction = t.kw("in", "out")
            t.kw("interface")
            ifname = t.next()
            t.end()
            nameif(cfg, ifname)
            entry = {"acl": acl, "dir": direction, "interface": ifname}
            if negate:
                if entry not in cfg["access_groups"]:
                    raise CliError("ERROR: Specified access-group does not exist")
                cfg["access_groups"].remove(entry)
                return
            if acl not in cfg["access_lists"]:
                raise CliError(f"ERROR: access-list <{acl}> does not exist")
            cfg["access_groups"] = [g for g in cfg["access_groups"]
                                    if not (g["dir"] == direction and g["interface"] == ifname)] + [entry]
        elif cmd == "nat":
            body = parse_nat_body(t, cfg, in_object=False)
            if negate:
                if body not in cfg["nat"]:
                    raise CliError("ERROR: NAT rule does not exist")
                cfg["nat"].remove(body)
                return
            if body in cfg["nat"]:
                raise CliError("ERROR: NAT rule already exists")
            cfg["nat"].append(body)
        elif cmd == "interface":
            raise CliError("ERROR: interface configuration is read-only in the simulator")

    def remove_acl(self, cfg: dict, name: str) -> None:
        if any(g["acl"] == name for g in cfg["access_groups"]):
            # the ASA removes the binding together with the ACL
            cfg["access_groups"] = [g for g in cfg["access_groups"] if g["acl"] != name]
        del cfg["access_lists"][name]

    def clear_configure(self, t: Tokens, cfg: dict) -> None:
        what = t.kw("access-list", "object-group", "object", "nat", "access-group")
        name = t.next() if not t.done() else None
        t.end()
        if what == "access-list":
            for n in [name] if name else list(cfg["access_lists"]):
                if n not in cfg["access_lists"]:
                    raise CliError(f"ERROR: access-list <{n}> does not exist")
                self.remove_acl(cfg, n)
        elif what == "object-group":
            cfg["object_groups"] = {} if not name else {k: v for k, v in cfg["object_groups"].items() if k != name}
        elif what == "object":
            cfg["objects"] = {}
        elif what == "nat":
            cfg["nat"] = []
            for o in cfg["objects"].values():
                o["nat"] = None
        else:
            cfg["access_groups"] = []

    def sub_line(self, t: Tokens, cfg: dict) -> bool:
        negate = t.kw("no", optional=True) is not None
        if self.mode == "obj":
            obj = cfg["objects"][self.context]
            what = t.kw("host", "subnet", "range", "fqdn", "description", "nat")
            if what == "nat":
                body = parse_nat_body(t, cfg, in_object=True)
                obj["nat"] = None if negate else body
                return True
            if what == "description":
                obj["description"] = None if negate else t.rest()
                return True
            args = []
            if what == "host":
                pos = t.pos()
                a = t.next()
                if not is_ip(a):
                    raise Invalid(pos)
                args = [a]
            elif what == "subnet":
                pos = t.pos()
                a = t.next()
                mpos = t.pos()
                m = t.next()
                if not is_ip(a):
                    raise Invalid(pos)
                if not is_ip(m):
                    raise Invalid(mpos)
                check_pair(a, m)
                args = [a, m]
            elif what == "range":
                pos = t.pos()
                a, b = t.next(), t.next()
                if not (is_ip(a) and is_ip(b)):
                    raise Invalid(pos)
                if ipaddress.IPv4Address(a) > ipaddress.IPv4Address(b):
                    raise CliError("ERROR: Invalid range: start address is greater than end address")
                args = [a, b]
            else:
                args = [t.next()]
            t.end()
            line = " ".join([what] + args)
            obj["lines"] = [] if negate else [line]  # one value per object; a new one replaces it
            return True
        grp = cfg["object_groups"][self.context]
        if self.mode == "ogn":
            what = t.kw("network-object", "group-object", "description")
            if what == "description":
                grp["description"] = None if negate else t.rest()
                return True
            if what == "group-object":
                name = t.next()
                t.end()
                if name not in cfg["object_groups"] or cfg["object_groups"][name]["type"] != "network":
                    raise CliError(f"ERROR: specified object group <{name}> not found")
                if name == self.context:
                    raise CliError("ERROR: An object-group cannot include itself")
                line = f"group-object {name}"
            else:
                pos = t.pos()
                tok = t.next()
                if tok.lower() == "host":
                    apos = t.pos()
                    a = t.next()
                    if not is_ip(a):
                        raise Invalid(apos)
                    line = f"network-object host {a}"
                elif tok.lower() == "object":
                    name = t.next()
                    if name not in cfg["objects"]:
                        raise CliError(f"ERROR: Object {name} does not exist")
                    line = f"network-object object {name}"
                elif is_ip(tok):
                    mpos = t.pos()
                    m = t.next()
                    if not is_ip(m):
                        raise Invalid(mpos)
                    check_pair(tok, m)
                    # the ASA shows a /32 entered with a mask as a host entry
                    line = f"network-object host {tok}" if m == "255.255.255.255" else f"network-object {tok} {m}"
                else:
                    raise Invalid(pos)
                t.end()
        else:
            what = t.kw("port-object", "description", "group-object")
            if what == "description":
                grp["description"] = None if negate else t.rest()
                return True
            if what == "group-object":
                name = t.next()
                t.end()
                line = f"group-object {name}"
            else:
                op = t.kw("eq", "range")
                proto = grp.get("proto") or "tcp"
                ports = [port_name(t, proto if proto != "tcp-udp" else "tcp")]
                if op == "range":
                    ports.append(port_name(t, proto if proto != "tcp-udp" else "tcp"))
                t.end()
                line = f"port-object {op} {' '.join(ports)}"
        if negate:
            if line not in grp["lines"]:
                raise CliError("ERROR: Object does not exist in the object-group")
            if len(grp["lines"]) == 1 and acl_uses(cfg, self.context):
                raise CliError(f"ERROR: Cannot remove the last object from object-group {self.context}, "
                               f"it is being used")
            grp["lines"].remove(line)
        elif line in grp["lines"]:
            self.write(f"WARNING: Duplicate object in object-group {self.context}\n")
        else:
            grp["lines"].append(line)
        return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--state-file", required=True)
    args = p.parse_args()
    session = Session(Device(args.state_file))
    try:
        session.run()
    except (BrokenPipeError, KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
