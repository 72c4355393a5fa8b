#!/usr/bin/env python3
"""SSH `netconf` subsystem for the netconfd stand-in: yuma123's
netconf-subsystem behind a gate that works around a netconfd bug.

The bug (netconfd 2.13, Debian 12): when the client's <hello> and its first
<rpc> reach netconfd in one socket read, netconfd activates the session and
leaves the rpc in its input buffer until more input arrives. A client that
waits for the reply (every client does) waits forever. Seen with strace: one
416-byte read held hello + <lock>; the reply was written 30 s later, when
the client gave up and the EOF woke netconfd. Real IOS-XE does not do this,
and no client can avoid it: RFC 6241 lets the client send its rpc as soon as
the hellos are exchanged, and the server's hello is sent before ours is read.

The gate forwards the client's bytes up to the end of its hello, then holds
the rest until netconfd's log says the session is active (so the hello was
read and processed on its own), then relays both directions untouched.

usage: hello-gate.py NETCONFD_LOG -- NETCONF_SUBSYSTEM [ARGS...]
"""

import os
import re
import select
import subprocess
import sys
import time

EOM = b"]]>]]>"
GATE_TIMEOUT_S = 10.0


def session_active(log_path, session_id, offset):
    """Whether netconfd logged the session as active; returns (bool, offset)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, offset - 256))
            text = f.read()
            offset = f.tell()
    except OSError:
        return False, offset
    pat = rb"Session %d for \S+ now active" % session_id
    return re.search(pat, text) is not None, offset


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    split = sys.argv.index("--")
    log_path, cmd = sys.argv[1], sys.argv[split + 1 :]
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    to_child, from_child = child.stdin.fileno(), child.stdout.fileno()

    client_seen = b""  # client bytes up to the end of its hello
    held = b""  # client bytes after its hello, until the gate opens
    server_seen = b""  # server bytes until its session-id is known
    session_id = None
    gate_open = False
    gate_deadline = None
    log_offset = 0
    open_fds = {0, from_child}

    while open_fds:
        wait = 0.002 if (held and not gate_open) else None
        readable, _, _ = select.select(list(open_fds), [], [], wait)
        if not gate_open and held and session_id is not None:
            active, log_offset = session_active(log_path, session_id, log_offset)
            if not active and time.monotonic() > gate_deadline:
                sys.stderr.write("hello-gate: session %d never logged active\n" % session_id)
            if active or time.monotonic() > gate_deadline:
                write_all(to_child, held)
                held, gate_open = b"", True
        for fd in readable:
            data = os.read(fd, 65536)
            if fd == 0:
                if not data:
                    open_fds.discard(0)
                    if held:
                        write_all(to_child, held)
                        held = b""
                    child.stdin.close()
                    continue
                if gate_open:
                    write_all(to_child, data)
                elif held or EOM in client_seen:
                    held += data
                else:
                    client_seen += data
                    end = client_seen.find(EOM)
                    if end < 0:
                        write_all(to_child, data)
                    else:
                        cut = len(data) - (len(client_seen) - (end + len(EOM)))
                        write_all(to_child, data[:cut])
                        held = data[cut:]
                        gate_deadline = time.monotonic() + GATE_TIMEOUT_S
            else:
                if not data:
                    open_fds.discard(from_child)
                    open_fds.discard(0)
                    continue
                if session_id is None:
                    server_seen += data
                    m = re.search(rb"<session-id>(\d+)</session-id>", server_seen)
                    if m:
                        session_id = int(m.group(1))
                        server_seen = b""
                write_all(1, data)
        if not gate_open and EOM in client_seen and not held and session_id is not None:
            # The hello went through and nothing waits: check once whether the
            # session is already active so later bytes need not wait at all.
            active, log_offset = session_active(log_path, session_id, log_offset)
            gate_open = active
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
