#!/usr/bin/env python3
"""ncclient side of the NETCONF benchmark (controller/examples/netconf_bench.rs).

Runs the same operations as the Rust client against the same netconfd
instances and prints one JSON object with the measurements. Two modes:
  stock  - ncclient 0.6.13 as shipped (its SSH transport thread polls the
           channel every 100 ms: ncclient.transport.ssh.TICK = 0.1);
  tuned  - TICK shortened to 1 ms and TCP_NODELAY set on the socket.
"""

import argparse
import json
import os
import socket
import statistics
import threading
import time

from ncclient import manager
import ncclient.transport.ssh as nc_ssh

NATIVE = "http://cisco.com/ns/yang/Cisco-IOS-XE-native"
ACL = "http://cisco.com/ns/yang/Cisco-IOS-XE-acl"


def connect(port, args, tuned):
    sock = None
    if tuned:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return manager.connect(
        host="127.0.0.1",
        port=port,
        username=args.user,
        key_filename=args.key,
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        sock=sock,
        timeout=60,
    )


def payload(args, k, variant):
    with open(os.path.join(args.payloads, f"k{k}-{variant}.xml")) as f:
        return f.read()


def edit_commit(m, cfg):
    m.edit_config(target="candidate", config=cfg)
    m.commit()


def p50(xs):
    return statistics.median(xs) * 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["stock", "tuned"], required=True)
    ap.add_argument("--ports", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--payloads", required=True)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tuned = args.mode == "tuned"
    nc_ssh.TICK = 0.001 if tuned else 0.1
    ports = [int(p) for p in args.ports.split(",")]
    n = args.iterations
    out = {"mode": args.mode}

    # Session setup: TCP + SSH + auth + hello.
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        m = connect(ports[0], args, tuned)
        lat.append(time.perf_counter() - t)
        m.close_session()
    out["setup_p50_ms"] = p50(lat)

    m = connect(ports[0], args, tuned)
    for k in (1, 10, 100):
        edit_commit(m, payload(args, k, 1))  # warm up, create
        lat = []
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        for i in range(n):
            cfg = payload(args, k, i % 2)
            t = time.perf_counter()
            edit_commit(m, cfg)
            lat.append(time.perf_counter() - t)
        wall = time.perf_counter() - wall0
        out[f"edit_k{k}_p50_ms"] = p50(lat)
        out[f"edit_k{k}_ops"] = n / wall
        out[f"edit_k{k}_cpu_ms"] = (time.process_time() - cpu0) * 1000.0 / n

    flt = (
        f'<native xmlns="{NATIVE}"><ip><access-list><extended xmlns="{ACL}">'
        f"<name>BENCH-K100</name></extended></access-list></ip></native>"
    )
    lat = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for _ in range(n * 2):
        t = time.perf_counter()
        r = m.get_config(source="running", filter=("subtree", flt))
        lat.append(time.perf_counter() - t)
        assert "BENCH-K100" in r.data_xml
    wall = time.perf_counter() - wall0
    out["get_p50_ms"] = p50(lat)
    out["get_ops"] = 2 * n / wall
    out["get_cpu_ms"] = (time.process_time() - cpu0) * 1000.0 / (2 * n)
    m.close_session()

    # One edit+commit round across all devices, sequential and parallel.
    sessions = [connect(p, args, tuned) for p in ports]
    for s in sessions:
        edit_commit(s, payload(args, 10, 1))
    seq = []
    for r in range(args.rounds):
        cfg = payload(args, 10, r % 2)
        t = time.perf_counter()
        for s in sessions:
            edit_commit(s, cfg)
        seq.append(time.perf_counter() - t)
    par = []
    for r in range(args.rounds):
        cfg = payload(args, 10, (r + 1) % 2)
        threads = [threading.Thread(target=edit_commit, args=(s, cfg)) for s in sessions]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        par.append(time.perf_counter() - t)
    out["devices_seq_ms"] = p50(seq)
    out["devices_par_ms"] = p50(par)
    for s in sessions:
        s.close_session()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
