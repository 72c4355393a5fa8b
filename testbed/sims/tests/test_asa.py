"""The ASA simulator (real OpenSSH + CLI emulator), driven by netmiko's cisco_asa driver."""

from __future__ import annotations

import json
import os
import re
import sys
import time

import paramiko
import pytest
from netmiko import ConnectHandler
from netmiko.exceptions import ConfigInvalidException

if os.geteuid() != 0:
    print("\nSKIP: ASA simulator tests need root (useradd + a private sshd)", file=sys.stderr)
    pytestmark = pytest.mark.skip(reason="SKIP: ASA simulator tests need root (useradd + a private sshd)")


@pytest.fixture
def asa(start_sim):
    return start_sim("asa_sim.py")


def creds(sim):
    user, password, enable = sim.lines["CREDENTIALS"].split()
    return user, password, enable


def connect(sim, **kw):
    user, password, enable = creds(sim)
    return ConnectHandler(device_type="cisco_asa", host=sim.host, port=sim.port, username=user,
                          password=password, secret=enable, fast_cli=True, **kw)


def shell(sim):
    """A raw interactive channel (pty), for what netmiko hides: pager, prompts."""
    user, password, _ = creds(sim)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(sim.host, port=sim.port, username=user, password=password, look_for_keys=False,
                   allow_agent=False, timeout=5)
    chan = client.invoke_shell(width=200)
    chan.settimeout(5)
    return client, chan


def read_until(chan, pattern: str, timeout: float = 5) -> str:
    buf, deadline = "", time.monotonic() + timeout
    while not re.search(pattern, buf):
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not seen in {buf!r}")
        if chan.recv_ready():
            buf += chan.recv(65536).decode(errors="replace")
        else:
            time.sleep(0.01)
    return buf


ACL_CMDS = [
    "object-group network WEB_SERVERS",
    "network-object host 10.0.0.10",
    "network-object 10.0.1.0 255.255.255.0",
    "access-list OUTSIDE_IN extended permit tcp any object-group WEB_SERVERS eq 443",
    "access-list OUTSIDE_IN extended permit udp any host 10.0.0.53 eq 53 log",
    "access-list OUTSIDE_IN extended deny ip any any",
    "access-group OUTSIDE_IN in interface outside",
]


def test_netmiko_config_show_and_write_memory(asa):
    conn = connect(asa)
    try:
        assert conn.find_prompt() == "asa-sim#"
        conn.send_config_set(ACL_CMDS, error_pattern=r"ERROR")
        acl = conn.send_command("show running-config access-list")
        assert acl.splitlines() == [
            "access-list OUTSIDE_IN extended permit tcp any object-group WEB_SERVERS eq https",
            "access-list OUTSIDE_IN extended permit udp any host 10.0.0.53 eq domain log",
            "access-list OUTSIDE_IN extended deny ip any any",
        ]
        assert conn.send_command("show running-config access-group").strip() == \
            "access-group OUTSIDE_IN in interface outside"
        groups = conn.send_command("show running-config object-group")
        assert "object-group network WEB_SERVERS\n network-object host 10.0.0.10\n" \
               " network-object 10.0.1.0 255.255.255.0" in groups
        # not saved yet
        assert "OUTSIDE_IN" not in conn.send_command("show startup-config")
        out = conn.save_config()
        assert "Building configuration..." in out and "[OK]" in out
        assert "access-list OUTSIDE_IN extended deny ip any any" in conn.send_command("show startup-config")
    finally:
        conn.disconnect()
    state = asa.state()
    assert state["write_count"] == 1
    assert state["startup"] == state["running"]
    assert state["running"]["access_groups"] == [{"acl": "OUTSIDE_IN", "dir": "in", "interface": "outside"}]


def test_errors_in_asa_style_and_nothing_half_applied(asa):
    conn = connect(asa)
    try:
        conn.config_mode()
        out = conn.send_command("access-list X extended permitt ip any any", expect_string=r"#")
        lines = out.splitlines()
        caret = next(line for line in lines if line.strip() == "^")
        assert lines[lines.index(caret) + 1] == "ERROR: % Invalid input detected at '^' marker."
        # the caret sits under the bad word, after the prompt
        assert caret.index("^") == len("asa-sim(config)# access-list X extended ")
        out = conn.send_command("access-list X extended permit tcp any object-group NOPE eq 80",
                                expect_string=r"#")
        assert "ERROR: specified object group <NOPE> not found" in out
        out = conn.send_command("network-object 10.0.0.1 255.255.255.0", expect_string=r"#")
        assert "ERROR" in out
        conn.exit_config_mode()
        with pytest.raises(ConfigInvalidException):
            conn.send_config_set(["object network SRV", "host 10.0.0.300"], error_pattern=r"ERROR")
    finally:
        conn.disconnect()
    running = asa.state()["running"]
    assert running["access_lists"] == {}


def test_running_config_persists_across_sessions_and_no_removes(asa):
    conn = connect(asa)
    conn.send_config_set(ACL_CMDS[:4] + ["object network SRV", "host 10.0.0.10",
                                         "nat (inside,outside) static 203.0.113.10",
                                         "nat (inside,outside) source dynamic any interface"])
    conn.disconnect()
    conn = connect(asa)
    try:
        assert "WEB_SERVERS eq https" in conn.send_command("show running-config access-list")
        nat = conn.send_command("show running-config nat")
        assert nat.splitlines() == ["nat (inside,outside) source dynamic any interface",
                                    "object network SRV", " nat (inside,outside) static 203.0.113.10"]
        out = conn.send_config_set(["no object-group network WEB_SERVERS"])
        assert "being used" in out
        conn.send_config_set(["no access-list OUTSIDE_IN extended permit tcp any object-group WEB_SERVERS eq https",
                              "no object-group network WEB_SERVERS"], error_pattern=r"ERROR")
        assert conn.send_command("show running-config access-list").strip() == ""
        assert conn.send_command("show running-config object-group").strip() == ""
    finally:
        conn.disconnect()


def test_pager_more_prompt_and_enable_password(asa):
    client, chan = shell(asa)
    try:
        read_until(chan, r"asa-sim> $")
        chan.send("enable\n")
        read_until(chan, r"Password: $")
        chan.send("wrong\n")
        out = read_until(chan, r"Password: $")
        assert "Invalid password" in out
        chan.send(creds(asa)[2] + "\n")
        read_until(chan, r"asa-sim# $")
        chan.send("show running-config\n")
        out = read_until(chan, r"<--- More --->")
        assert "ASA Version" in out and ": end" not in out
        assert len(out.splitlines()) <= 25
        chan.send(" ")
        out = read_until(chan, r"<--- More --->")
        chan.send("q")
        out = read_until(chan, r"asa-sim# $")
        chan.send("terminal pager 0\nshow running-config\n")
        out = read_until(chan, r": end\s+asa-sim# $")
        assert "<--- More --->" not in out
        chan.send("show curpriv\n")
        assert "Current privilege level : 15" in read_until(chan, r"P_PRIV")
        # `login` (what netmiko's asa_login does without an enable secret)
        user, password, _ = creds(asa)
        chan.send("disable\nlogin\n")
        read_until(chan, r"Username: $")
        chan.send(user + "\n")
        read_until(chan, r"Password: $")
        chan.send(password + "\n")
        read_until(chan, r"asa-sim# $")
        chan.send("show curpriv\n")
        assert f"Username : {user}" in read_until(chan, r"P_PRIV")
    finally:
        client.close()


def test_faults_drop_fail_write_and_delay(asa):
    conn = connect(asa)
    try:
        asa.faults(fail_next=1, message="Configuration locked by another session")
        out = conn.send_config_set(["object-group network A", "network-object host 10.1.1.1"])
        assert "ERROR: Configuration locked by another session" in out
        # the failed first line created nothing; the second then is invalid in config mode
        assert "A" not in asa.state()["running"]["object_groups"]
        assert asa.faults()["fail_next"] == 0
        asa.faults(write_fail=1)
        out = conn.save_config()
        assert "[FAILED]" in out
        assert asa.state()["write_count"] == 0
        asa.faults(delay_ms=400, delay_next=1)
        t0 = time.monotonic()
        conn.send_command("show curpriv")
        assert time.monotonic() - t0 >= 0.4
    finally:
        conn.disconnect()
    # a dropped session: the channel closes without any answer
    client, chan = shell(asa)
    try:
        read_until(chan, r"asa-sim> $")
        asa.faults(drop_next=1)
        chan.send("show curpriv\n")
        deadline = time.monotonic() + 5
        data = b""
        while not chan.exit_status_ready():
            assert time.monotonic() < deadline
            if chan.recv_ready():
                data += chan.recv(4096)
            time.sleep(0.01)
        assert b"Current privilege" not in data and chan.recv_exit_status() == 1
    finally:
        client.close()
    # the device is still there for a new session
    conn = connect(asa)
    assert conn.find_prompt() == "asa-sim#"
    conn.disconnect()


def test_state_file_sync_and_restart(start_sim, tmp_path):
    state_file = tmp_path / "asa.json"
    sim = start_sim("asa_sim.py", "--state-file", str(state_file), "--hostname", "edge-fw")
    conn = connect(sim)
    assert conn.find_prompt() == "edge-fw#"
    conn.send_config_set(["access-list KEEP extended permit icmp any any"])
    conn.save_config()
    conn.disconnect()
    deadline = time.monotonic() + 3
    while "KEEP" not in json.loads(state_file.read_text())["startup"]["access_lists"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sim.stop()
    sim2 = start_sim("asa_sim.py", "--state-file", str(state_file))
    conn = connect(sim2)
    try:
        assert "access-list KEEP extended permit icmp any any" in conn.send_command("show running-config")
    finally:
        conn.disconnect()
    sim2.admin("POST", "/_sim/reset")
    assert sim2.state()["running"]["access_lists"] == {}


def test_object_nat_subnet_interface_pat_and_port_static(asa):
    conn = connect(asa)
    try:
        conn.send_config_set(["object network LAN", "subnet 10.5.0.0 255.255.0.0",
                              "nat (inside,outside) dynamic interface",
                              "object network WEB", "host 10.5.0.9",
                              "nat (inside,outside) static 203.0.113.9 service tcp 8443 443"],
                             error_pattern=r"ERROR")
        objs = conn.send_command("show running-config object")
        assert "object network LAN\n subnet 10.5.0.0 255.255.0.0" in objs
        nat = conn.send_command("show running-config nat")
        assert nat.splitlines() == ["object network LAN", " nat (inside,outside) dynamic interface",
                                    "object network WEB",
                                    " nat (inside,outside) static 203.0.113.9 service tcp 8443 443"]
        conn.config_mode()
        conn.send_command("object network LAN", expect_string=r"#")
        out = conn.send_command("nat (inside,any) dynamic interface", expect_string=r"#")
        assert "ERROR: Cannot use interface PAT" in out
        out = conn.send_command("nat (inside,outside) dynamic interface service tcp 80 8080", expect_string=r"#")
        assert "Invalid input" in out
        conn.exit_config_mode()
    finally:
        conn.disconnect()
    objects = asa.state()["running"]["objects"]
    assert objects["LAN"]["nat"] == "(inside,outside) dynamic interface"
