#!/usr/bin/env python3
"""Cisco ASA simulator: a private OpenSSH server whose sessions run the ASA CLI
emulator (asa_cli.py), plus a plain-HTTP admin endpoint for state and faults.

Needs root (it creates the system user `rampart-asa-sim` once and starts
sshd). Prints on stdout:
  LISTENING 127.0.0.1:<ssh port>
  ADMIN 127.0.0.1:<admin http port>
  CREDENTIALS <username> <password> <enable password>

Run: python3 testbed/sims/asa_sim.py --port 0 [--state-file F]
See docs/simulators.md.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional

import asa_cli
import simlib
from simlib import Request, Response

USER = "rampart-asa-sim"
SECRET_DIR = "/var/lib/rampart-asa-sim"
LOG = logging.getLogger("asa-sim")
FAULT_KEYS = {"fail_next", "message", "delay_ms", "delay_next", "drop_next", "write_fail"}


def ensure_user(user: str) -> str:
    """Creates the login user once and returns its password.

    The password is random, generated on first use and kept root-only in
    SECRET_DIR, so the account is no open door on a machine that also runs a
    system sshd. A lock serialises concurrent simulator starts.
    """
    os.makedirs(SECRET_DIR, mode=0o700, exist_ok=True)
    with open(os.path.join(SECRET_DIR, ".lock"), "a+") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/bin/sh", "--comment", "Rampart ASA simulator login", user],
                           check=True)
        secret_file = os.path.join(SECRET_DIR, f"{user}.password")
        if os.path.exists(secret_file):
            with open(secret_file) as fh:
                password = fh.read().strip()
        else:
            password = "Sim-" + secrets.token_urlsafe(12)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
        # make sure the account matches the stored secret (e.g. after a manual change)
        status = subprocess.run(["passwd", "-S", user], capture_output=True, text=True).stdout.split()
        if len(status) > 1 and status[1] != "P":
            subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
        return password


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """Runs in the sshd child: SIGTERM it when the simulator process dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SshServer:
    """The private sshd with its own host key and config in a temp dir."""

    def __init__(self, workdir: str, host: str, port: int, user: str, state_file: str):
        self.workdir, self.host, self.user, self.state_file = workdir, host, user, state_file
        self.requested_port = port
        self.port = port
        self.proc: Optional[subprocess.Popen] = None
        key = os.path.join(workdir, "ssh_host_ed25519_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        # the emulator is copied so the session user needs no access to the checkout
        self.cli = os.path.join(workdir, "asa_cli.py")
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "asa_cli.py"), self.cli)
        os.chmod(self.cli, 0o755)
        os.chmod(workdir, 0o755)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

    def config(self, port: int) -> str:
        path = os.path.join(self.workdir, "sshd_config")
        with open(path, "w") as fh:
            fh.write(f"""Port {port}
ListenAddress {self.host}
HostKey {self.workdir}/ssh_host_ed25519_key
PidFile {self.workdir}/sshd.pid
AuthorizedKeysFile none
PasswordAuthentication yes
KbdInteractiveAuthentication yes
PubkeyAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers {self.user}
StrictModes no
PermitEmptyPasswords no
ForceCommand {self.python} {self.cli} --state-file {self.state_file}
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
UseDNS no
MaxStartups 100:30:200
MaxSessions 20
LoginGraceTime 20
ClientAliveInterval 0
LogLevel ERROR
""")
        return path

    def start(self) -> None:
        last_err = ""
        for _ in range(5):
            port = self.requested_port or free_port(self.host)
            cfg = self.config(port)
            self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", cfg], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=die_with_parent)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_err = self.proc.stderr.read().decode(errors="replace")
                    break
                try:
                    with socket.create_connection((self.host, port), timeout=1) as s:
                        if s.recv(64).startswith(b"SSH-2.0"):
                            self.port = port
                            threading.Thread(target=self.pump_stderr, daemon=True).start()
                            return
                except OSError:
                    time.sleep(0.02)
            else:
                last_err = "sshd did not answer within 5 s"
            self.stop()
            if self.requested_port:
                break
        raise RuntimeError(f"could not start sshd: {last_err}")

    def pump_stderr(self) -> None:
        for line in self.proc.stderr:
            text = line.decode(errors="replace").rstrip()
            if "kex_exchange_identification" not in text:  # our own readiness probe
                LOG.warning("sshd: %s", text)

    def stop(self) -> None:
        if not self.proc:
            return
        children = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(3)


def descendants(root: int) -> list[int]:
    """All processes below `root` (sshd session children run in their own sessions,
    so killing the simulator's process group does not reach them)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class AsaAdmin(simlib.Simulator):
    """Admin endpoint over the shared state file the CLI sessions use."""

    name = "asa"
    default_rps = None

    @staticmethod
    def extra_args(parser):
        parser.add_argument("--hostname", default="asa-sim")
        parser.add_argument("--enable-password", default="rampart-enable")
        parser.add_argument("--username", default=USER, help="login user (created if missing)")
        parser.add_argument("--admin-port", type=int, default=0, help="admin HTTP port (0: free)")
        parser.add_argument("--banner", default="", help="text shown before the first prompt")

    def __init__(self, args, live_file: str, password: str, uid: int, gid: int):
        self.password, self.uid, self.gid = password, uid, gid
        self.live_file = live_file
        self.device = asa_cli.Device(live_file)
        self.synced_mtime = 0.0
        super().__init__(args)

    def seed(self) -> dict:
        st = asa_cli.seed_state(self.args.hostname, {self.args.username: self.password},
                                self.args.enable_password)
        st["banner"] = self.args.banner
        return st

    def load_state(self) -> dict:
        """Prepares the live state file the sessions share (in the private work
        dir, owned by the session user), seeded from --state-file if it exists."""
        for p in (self.live_file, self.live_file + ".lock"):
            open(p, "a").close()
            os.chown(p, self.uid, self.gid)
            os.chmod(p, 0o600)
        src = self.args.state_file
        if src and os.path.exists(src) and os.path.getsize(src) > 0:
            with open(src, encoding="utf-8") as fh:
                doc = json.load(fh)
            doc["users"] = {self.args.username: self.password}
            doc["enable_password"] = self.args.enable_password
            self.write_state(doc)
        else:
            self.write_state(self.seed())
        self.sync()
        return {}

    def sync(self) -> None:
        """Copies the live state to --state-file when it changed."""
        if not self.args.state_file:
            return
        try:
            mtime = os.stat(self.live_file).st_mtime_ns
        except OSError:
            return
        if mtime == self.synced_mtime:
            return
        with self.device.locked() as st:
            doc = json.dumps(st, indent=1, sort_keys=True)
        tmp = f"{self.args.state_file}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(doc)
        os.replace(tmp, self.args.state_file)
        self.synced_mtime = mtime

    def sync_loop(self, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            self.sync()

    def write_state(self, doc: dict) -> None:
        with open(self.device.lock_path, "a+") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            with open(self.live_file, "r+") as fh:
                fh.seek(0)
                fh.truncate()
                json.dump(doc, fh, indent=1, sort_keys=True)
            fcntl.flock(lk, fcntl.LOCK_UN)

    def save(self) -> None:
        """State is written by the CLI sessions themselves."""

    def public_state(self) -> dict:
        with self.device.locked() as st:
            doc = dict(st)
        doc.pop("users", None)
        doc.pop("enable_password", None)
        doc["running_config"] = asa_cli.render(doc["running"])
        doc["startup_config"] = asa_cli.render(doc["startup"]) if doc.get("startup") else []
        return doc

    def reset(self) -> None:
        self.write_state(self.seed())
        self.sync()

    def count_hits(self, req: Request) -> Response:
        """POST /_sim/hits {"acl": L, "line": K, "hits": N[, "element": E]}: N
        packets matched element E (default 1) of entry K, as traffic would."""
        try:
            doc = json_object(req)
            unknown = set(doc) - {"acl", "line", "hits", "element"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            for key in ("line", "hits", "element"):
                val = doc.get(key, 1 if key == "element" else None)
                if not isinstance(val, int) or isinstance(val, bool) or val < (0 if key == "hits" else 1):
                    raise ValueError(f"'{key}' must be a {'non-negative' if key == 'hits' else 'positive'} integer")
            if not isinstance(doc.get("acl"), str):
                raise ValueError("'acl' must be the access-list name")
        except ValueError as exc:
            return Response(400, {"error": str(exc)})
        with self.device.locked() as st:
            try:
                return Response(200, asa_cli.count_hits(st, doc["acl"], doc["line"], doc["hits"],
                                                        doc.get("element", 1)))
            except KeyError as exc:
                return Response(404, {"error": exc.args[0]})
            except ValueError as exc:
                return Response(400, {"error": str(exc)})


    def set_link(self, req: Request) -> Response:
        """POST /_sim/interface {"name": IF, "status": "up"|"down"|"administratively down"}."""
        try:
            doc = json_object(req)
            if set(doc) != {"name", "status"}:
                raise ValueError("expected exactly the keys 'name' and 'status'")
            if doc["status"] not in asa_cli.LINK_STATES:
                raise ValueError(f"'status' must be one of {list(asa_cli.LINK_STATES)}")
        except ValueError as exc:
            return Response(400, {"error": str(exc)})
        with self.device.locked() as st:
            names = [i["name"] for i in st["running"]["interfaces"]]
            if doc["name"] not in names:
                return Response(404, {"error": f"no interface {doc['name']!r}; known: {names}"})
            st.setdefault("links", {})[doc["name"]] = doc["status"]
            return Response(200, dict(st["links"]))

    def dispatch(self, req: Request) -> Optional[Response]:
        if req.path == "/_sim/faults":
            if req.method == "GET":
                with self.device.locked() as st:
                    return Response(200, st.get("faults", {}))
            if req.method in ("POST", "DELETE"):
                try:
                    doc = json.loads(req.body or b"{}") if req.method == "POST" else {"clear": True}
                except ValueError as exc:
                    return Response(400, {"error": f"malformed JSON: {exc}"})
                if not isinstance(doc, dict):
                    return Response(400, {"error": "fault document must be a JSON object"})
                unknown = set(doc) - FAULT_KEYS - {"clear"}
                if unknown:
                    return Response(400, {"error": f"unknown fault keys {sorted(unknown)}; known: "
                                                   f"{sorted(FAULT_KEYS)}"})
                for key in ("fail_next", "delay_ms", "drop_next", "write_fail", "delay_next"):
                    if key in doc and (not isinstance(doc[key], int) or isinstance(doc[key], bool) or doc[key] < 0):
                        return Response(400, {"error": f"fault '{key}' must be a non-negative integer"})
                if "message" in doc and not isinstance(doc["message"], str):
                    return Response(400, {"error": "fault 'message' must be a string"})
                with self.device.locked() as st:
                    faults = {} if doc.pop("clear", False) else st.get("faults", {})
                    faults.update(doc)
                    st["faults"] = faults
                    return Response(200, faults)
        if req.path == "/_sim/hits" and req.method == "POST":
            return self.count_hits(req)
        if req.path == "/_sim/interface" and req.method == "POST":
            return self.set_link(req)
        if req.path in ("/_sim/state", "/_sim/reset"):
            return self.admin(req)
        return Response(404, {"error": f"unknown admin endpoint {req.method} {req.path}"})


def json_object(req: Request) -> dict:
    try:
        doc = json.loads(req.body or b"{}")
    except ValueError as exc:
        raise ValueError(f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    return doc


def main() -> None:
    parser = simlib.common_parser(__doc__)
    AsaAdmin.extra_args(parser)
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s asa-sim %(levelname)s %(message)s")
    if os.geteuid() != 0:
        print("asa_sim.py needs root: it creates a system user and runs sshd", file=sys.stderr)
        sys.exit(2)
    def early_exit(*_):
        raise SystemExit(1)

    # until the admin server runs, SIGTERM unwinds through the clean-up below
    signal.signal(signal.SIGTERM, early_exit)
    signal.signal(signal.SIGINT, early_exit)
    password = ensure_user(args.username)
    pw = pwd.getpwnam(args.username)
    workdir = tempfile.mkdtemp(prefix="rampart-asa-sim-")
    admin: Optional[AsaAdmin] = None
    ssh: Optional[SshServer] = None
    server = None
    stop_sync = threading.Event()
    try:
        os.chmod(workdir, 0o755)
        live = os.path.join(workdir, "asa-state.json")
        if args.state_file:
            args.state_file = os.path.abspath(args.state_file)
        admin = AsaAdmin(args, live, password, pw.pw_uid, pw.pw_gid)
        threading.Thread(target=admin.sync_loop, args=(stop_sync,), daemon=True).start()
        ssh = SshServer(workdir, args.host, args.port, args.username, live)
        ssh.start()
        simlib.SimServer.address_family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        server = simlib.SimServer((args.host, args.admin_port), simlib.make_handler(admin), None)

        def stop(*_):
            threading.Thread(target=server.shutdown, daemon=True).start()

        # handlers first: a client may SIGTERM us as soon as it has read the address
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"LISTENING {host}:{ssh.port}", flush=True)
        print(f"ADMIN {host}:{server.server_address[1]}", flush=True)
        print(f"CREDENTIALS {args.username} {password} {args.enable_password}", flush=True)
        sshd = ssh.proc
        threading.Thread(target=lambda: (sshd.wait(), stop()), daemon=True).start()
        server.serve_forever(poll_interval=0.05)
    finally:
        if ssh is not None:
            ssh.stop()
        stop_sync.set()
        if admin is not None:
            admin.sync()
        if server is not None:
            server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)

if __name__ == "__main__":
    main()
