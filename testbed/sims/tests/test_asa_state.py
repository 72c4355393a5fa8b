"""ASA device state: `show access-list` hit counts (object-group entries
expanded), `clear access-list NAME counters`, `show interface ip brief`, read
through netmiko's cisco_asa driver while the admin endpoint stands in for
traffic and link changes."""

from __future__ import annotations

import os
import sys
import urllib.error
from pathlib import Path

import pytest

from test_asa import connect

if os.geteuid() != 0:
    print("\nSKIP: ASA simulator tests need root (useradd + a private sshd)", file=sys.stderr)
    pytestmark = pytest.mark.skip(reason="SKIP: ASA simulator tests need root (useradd + a private sshd)")

ACL = "RPA-acme-web-1a2b3c4d-9f"
CMDS = [
    "object-group network RPG-acme-web-src",
    "network-object host 10.0.0.1",
    "network-object 10.0.1.0 255.255.255.0",
    f"access-list {ACL} remark web tier",
    f"access-list {ACL} extended permit tcp object-group RPG-acme-web-src host 192.0.2.10 eq 80",
    f"access-list {ACL} extended deny ip any4 any4",
]
# Where the Rust parser's fixtures live (captured from this simulator).
FIXTURES = Path(__file__).resolve().parents[3] / "controller/src/observe/fixtures"


@pytest.fixture
def asa(start_sim):
    return start_sim("asa_sim.py")


def hits(sim, line: int, n: int, element: int = 1):
    return sim.admin("POST", "/_sim/hits", {"acl": ACL, "line": line, "hits": n, "element": element})


def entry_lines(out: str) -> list[str]:
    return [l for l in out.splitlines() if "access-list" in l]


def test_hit_counts_per_element_totals_and_clear(asa):
    conn = connect(asa)
    try:
        conn.send_config_set(CMDS, error_pattern=r"ERROR")
        hits(asa, 2, 7, element=1)
        hits(asa, 2, 5, element=2)
        got = hits(asa, 3, 3)
        assert got["hitcnt"] == 3 and got["element"] == "extended deny ip any4 any4"
        out = conn.send_command(f"show access-list {ACL}")
        lines = entry_lines(out)
        assert lines[0].startswith(f"access-list {ACL}; 3 elements; name hash: 0x")
        assert lines[1] == f"access-list {ACL} line 1 remark web tier"
        # the object-group entry carries no counter itself; its elements do, indented
        assert lines[2].startswith(f"access-list {ACL} line 2 extended permit tcp object-group "
                                   "RPG-acme-web-src host 192.0.2.10 eq www 0x")
        assert "hitcnt" not in lines[2]
        assert lines[3].startswith(f"  access-list {ACL} line 2 extended permit tcp host 10.0.0.1 "
                                   "host 192.0.2.10 eq www (hitcnt=7) 0x")
        assert lines[4].startswith(f"  access-list {ACL} line 2 extended permit tcp 10.0.1.0 255.255.255.0 "
                                   "host 192.0.2.10 eq www (hitcnt=5) 0x")
        assert lines[5].startswith(f"access-list {ACL} line 3 extended deny ip any4 any4 (hitcnt=3) 0x")
        assert len(lines) == 6
        if os.environ.get("RAMPART_CAPTURE_FIXTURES"):
            (FIXTURES / "asa-show-access-list.txt").write_text(out.rstrip("\n") + "\n")

        # counters follow the entry, not its line number
        conn.send_config_set([f"access-list {ACL} line 1 extended permit icmp any4 any4"], error_pattern=r"ERROR")
        moved = entry_lines(conn.send_command(f"show access-list {ACL}"))
        assert any(l.startswith(f"access-list {ACL} line 4 extended deny ip any4 any4 (hitcnt=3)") for l in moved)
        assert any(l.startswith(f"access-list {ACL} line 1 extended permit icmp any4 any4 (hitcnt=0)")
                   for l in moved)

        conn.send_command(f"clear access-list {ACL} counters")
        cleared = conn.send_command(f"show access-list {ACL}")
        assert "(hitcnt=0)" in cleared and not any(f"(hitcnt={n})" in cleared for n in (3, 5, 7))
        if os.environ.get("RAMPART_CAPTURE_FIXTURES"):
            (FIXTURES / "asa-show-access-list-cleared.txt").write_text(cleared.rstrip("\n") + "\n")
        out = conn.send_command("clear access-list NOPE counters")
        assert "ERROR: access-list <NOPE> does not exist" in out
    finally:
        conn.disconnect()


def test_removed_entry_restarts_from_zero_and_admin_rejects_bad_targets(asa):
    conn = connect(asa)
    try:
        conn.send_config_set(CMDS, error_pattern=r"ERROR")
        hits(asa, 3, 9)
        conn.send_config_set([f"no access-list {ACL} extended deny ip any4 any4",
                              f"access-list {ACL} extended deny ip any4 any4"], error_pattern=r"ERROR")
        assert "line 3 extended deny ip any4 any4 (hitcnt=0)" in conn.send_command(f"show access-list {ACL}")
    finally:
        conn.disconnect()
    for body, code, word in [({"acl": "NOPE", "line": 1, "hits": 1}, 404, "does not exist"),
                             ({"acl": ACL, "line": 9, "hits": 1}, 404, "no line 9"),
                             ({"acl": ACL, "line": 1, "hits": 1}, 400, "remark"),
                             ({"acl": ACL, "line": 2, "hits": 1, "element": 3}, 404, "no element 3"),
                             ({"acl": ACL, "line": 2, "hits": -1}, 400, "hits"),
                             ({"acl": ACL, "line": 2, "hit": 1}, 400, "unknown keys")]:
        with pytest.raises(urllib.error.HTTPError) as err:
            asa.admin("POST", "/_sim/hits", body)
        assert err.value.code == code
        assert word in err.value.read().decode()


def test_interface_ip_brief_follows_link_state(asa):
    asa.admin("POST", "/_sim/interface", {"name": "GigabitEthernet0/1", "status": "down"})
    asa.admin("POST", "/_sim/interface", {"name": "GigabitEthernet0/2", "status": "administratively down"})
    conn = connect(asa)
    try:
        out = conn.send_command("show interface ip brief")
    finally:
        conn.disconnect()
    lines = out.strip("\n").splitlines()
    assert lines == [
        "Interface                  IP-Address      OK? Method Status                Protocol",
        "GigabitEthernet0/0         192.0.2.1       YES CONFIG up                    up",
        "GigabitEthernet0/1         10.0.0.1        YES CONFIG down                  down",
        "GigabitEthernet0/2         172.16.0.1      YES CONFIG administratively down down",
        "Management0/0              198.51.100.1    YES CONFIG up                    up",
    ]
    if os.environ.get("RAMPART_CAPTURE_FIXTURES"):
        (FIXTURES / "asa-show-interface-ip-brief.txt").write_text(out.strip("\n") + "\n")
    with pytest.raises(urllib.error.HTTPError) as err:
        asa.admin("POST", "/_sim/interface", {"name": "Gi9/9", "status": "up"})
    assert err.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as err:
        asa.admin("POST", "/_sim/interface", {"name": "GigabitEthernet0/1", "status": "sideways"})
    assert err.value.code == 400


def test_nested_network_and_service_groups_expand_to_every_combination(asa):
    conn = connect(asa)
    try:
        conn.send_config_set([
            "object network WEB1", "host 192.0.2.21",
            "object-group network INNER", "network-object host 192.0.2.22",
            "object-group network SERVERS", "network-object object WEB1", "group-object INNER",
            "object-group service WEBPORTS tcp", "port-object eq 80", "port-object eq 443",
            "access-list NEST extended permit tcp any4 object-group SERVERS object-group WEBPORTS",
        ], error_pattern=r"ERROR")
        asa.admin("POST", "/_sim/hits", {"acl": "NEST", "line": 1, "hits": 4, "element": 4})
        lines = entry_lines(conn.send_command("show access-list NEST"))
    finally:
        conn.disconnect()
    assert lines[0].startswith("access-list NEST; 4 elements;")
    elements = [l.split(" line 1 ")[1].split(" (hitcnt=")[0] for l in lines[2:]]
    assert elements == ["extended permit tcp any4 host 192.0.2.21 eq www",
                        "extended permit tcp any4 host 192.0.2.21 eq https",
                        "extended permit tcp any4 host 192.0.2.22 eq www",
                        "extended permit tcp any4 host 192.0.2.22 eq https"]
    assert "object-group SERVERS object-group WEBPORTS" in lines[1] and "hitcnt" not in lines[1]
    assert "(hitcnt=4)" in lines[5]
    assert all("(hitcnt=0)" in l for l in lines[2:5])
