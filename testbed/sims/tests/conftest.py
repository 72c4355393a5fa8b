"""Fixtures starting each simulator as its own process (the way the Rust tests do).

Each test gets a fresh simulator on a free port; teardown kills the whole
process group even when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl
from pathlib import Path

import pytest

SIMS = Path(__file__).resolve().parent.parent


class SimProcess:
    """A running simulator: address, CA certificate and admin helpers."""

    def __init__(self, script: str, *args: str, plain_http: bool = False, tmp_path: Path | None = None):
        cmd = [sys.executable, str(SIMS / script), "--port", "0", *args]
        if plain_http:
            cmd.append("--plain-http")
        self.stderr_path = Path(tempfile.mkstemp(prefix="sim-stderr-")[1])
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                     start_new_session=True)
        self.lines: dict[str, str] = {}
        try:
            first = self._readline(10)
            if not first.startswith("LISTENING "):
                raise RuntimeError(f"unexpected first line {first!r}")
            self.addr = first.split()[1]
            self.lines["LISTENING"] = self.addr
            expected = [] if plain_http else ["CERT"]
            if script == "asa_sim.py":
                expected = ["ADMIN", "CREDENTIALS"]
            for key in expected:
                line = self._readline(10)
                k, _, v = line.partition(" ")
                if k != key:
                    raise RuntimeError(f"expected {key} line, got {line!r}")
                self.lines[k] = v
        except Exception:
            self.stop()
            raise RuntimeError(f"{script} failed to start: {self.stderr_text()}")
        self.cert = self.lines.get("CERT")
        scheme = "http" if plain_http else "https"
        self.url = f"{scheme}://{self.addr}"
        admin = self.lines.get("ADMIN", self.addr)
        self.admin_url = f"{'http' if script == 'asa_sim.py' else scheme}://{admin}"
        self.host, self.port = self.addr.rsplit(":", 1)
        self.port = int(self.port)

    def _readline(self, timeout: float) -> str:
        """Reads one line straight from the pipe (no buffering, so a second
        startup line already sent is never hidden in a Python buffer)."""
        import select
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError("timed out waiting for the simulator's startup line")
            chunk = os.read(fd, 1)
            if not chunk:
                raise RuntimeError("simulator exited before printing its startup line")
            buf += chunk
        return buf.decode().strip()

    def admin(self, method: str, path: str, doc=None):
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        ctx = ssl.create_default_context(cafile=self.cert) if self.cert else None
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def faults(self, **doc):
        return self.admin("POST", "/_sim/faults", doc)

    def state(self):
        return self.admin("GET", "/_sim/state")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture
def start_sim():
    """Factory fixture: start_sim('meraki_sim.py', '--networks', '7')."""
    started: list[SimProcess] = []

    def _start(script: str, *args: str, **kw) -> SimProcess:
        sim = SimProcess(script, *args, **kw)
        started.append(sim)
        return sim

    yield _start
    for sim in started:
        sim.stop()
        sim.stderr_path.unlink(missing_ok=True)


def wait_for(pred, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")
