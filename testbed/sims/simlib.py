"""Shared machinery for Rampart's vendor API simulators.

Every HTTP simulator (Meraki, FDM, SD-WAN Manager) is one process built on
this module: a threaded stdlib HTTP server with TLS by default (self-signed
certificate made with the `openssl` CLI at start-up), a regex router, JSON
state that can be persisted to a file, fault injection and the `/_sim/*`
admin endpoints. Only the standard library is used so that the simulators run
with the system `python3` as well as with the project venv.

Startup contract (relied on by the Rust integration tests):
  line 1 on stdout: `LISTENING <host>:<port>`
  line 2 on stdout (TLS only): `CERT <path to the PEM CA certificate to trust>`
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

LOG = logging.getLogger("sim")


class HttpError(Exception):
    """Raised by a handler to answer with an error in the vendor's format."""

    def __init__(self, status: int, message: str, *, body: Any = None, headers: Optional[dict] = None,
                 code: str = "", details: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.headers = headers or {}
        self.code = code
        self.details = details


class Response:
    """A handler's answer: status, body (JSON-able, str or bytes) and headers."""

    def __init__(self, status: int = 200, body: Any = None, headers: Optional[dict] = None,
                 content_type: Optional[str] = None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.content_type = content_type
        self.cookies: list[str] = []


class Request:
    """The parsed request handed to handlers."""

    def __init__(self, method: str, raw_path: str, headers, body: bytes, client: str):
        self.method = method
        parsed = urllib.parse.urlsplit(raw_path)
        self.path = parsed.path
        self.raw_path = raw_path
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.client = client
        self.params: dict[str, str] = {}
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("Cookie", ""))
        except Exception:  # malformed cookies are ignored like most servers do
            pass
        self.cookies = {k: v.value for k, v in cookie.items()}

    def q(self, name: str, default: Optional[str] = None) -> Optional[str]:
        vals = self.query.get(name)
        return vals[0] if vals else default

    def json(self) -> Any:
        if not self.body:
            raise HttpError(400, "Request body is empty; a JSON document is required")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"Malformed JSON in request body: {exc}") from exc

    def obj(self) -> dict:
        """The JSON body, which must be an object."""
        doc = self.json()
        if not isinstance(doc, dict):
            raise HttpError(400, f"Request body must be a JSON object, got {type(doc).__name__}")
        return doc

    def form(self) -> dict[str, str]:
        data = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in data.items()}


class TokenBucket:
    """Requests-per-second limiter answering how long to wait when empty."""

    def __init__(self, rps: float, burst: Optional[float] = None):
        self.rps = float(rps)
        self.capacity = float(burst if burst is not None else rps)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Takes a token; returns 0 if allowed, else seconds until one is free."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rps)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rps


class Faults:
    """Fault injection state, changed through `POST /_sim/faults`.

    Accepted keys (all optional, merged into the current faults):
      fail_next: N      answer the next N API requests with `status`
      status: S         status for fail_next (default 500)
      message: TEXT     error message for fail_next (vendor error format)
      retry_after: S    Retry-After header for fail_next (useful with 429)
      path: REGEX       only requests whose path matches count for fail_next/drop_next/delay
      method: M         only requests with this method count
      delay_ms: D       delay every matching request by D ms (0 clears)
      delay_next: N     limit the delay to the next N requests
      drop_next: N      close the connection without answering, N times
      rate_limit: {"rps": R, "retry_after": S} or null  override the rate limit
    plus simulator-specific keys kept in `extra` (see each simulator).
    """

    KNOWN = {"fail_next", "status", "message", "retry_after", "path", "method", "delay_ms",
             "delay_next", "drop_next", "rate_limit"}

    def __init__(self):
        self.fail_next = 0
        self.status = 500
        self.message = "Injected fault"
        self.retry_after: Optional[int] = None
        self.path: Optional[str] = None
        self.method: Optional[str] = None
        self.delay_ms = 0
        self.delay_next: Optional[int] = None
        self.drop_next = 0
        self.rate_limit: Optional[dict] = None
        self.extra: dict[str, Any] = {}

    def update(self, doc: dict, extra_keys: set[str]) -> None:
        if not isinstance(doc, dict):
            raise HttpError(400, "fault document must be a JSON object")
        unknown = set(doc) - self.KNOWN - extra_keys
        if unknown:
            raise HttpError(400, f"unknown fault keys {sorted(unknown)}; known: "
                                 f"{sorted(self.KNOWN | extra_keys)}")
        for key in ("fail_next", "delay_ms", "drop_next", "delay_next", "retry_after"):
            if key in doc and doc[key] is None and key in ("delay_next", "retry_after"):
                continue
            if key in doc and (not isinstance(doc[key], int) or isinstance(doc[key], bool) or doc[key] < 0):
                raise HttpError(400, f"fault '{key}' must be a non-negative integer, got {doc[key]!r}")
        for key in ("message", "path", "method"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise HttpError(400, f"fault '{key}' must be a string, got {doc[key]!r}")
        if "status" in doc and (not isinstance(doc["status"], int) or not 100 <= doc["status"] <= 599):
            raise HttpError(400, f"fault 'status' must be an HTTP status code, got {doc['status']!r}")
        if "path" in doc and doc["path"] is not None:
            try:
                re.compile(doc["path"])
            except re.error as exc:
                raise HttpError(400, f"fault 'path' is not a valid regex: {exc}") from exc
        rl = doc.get("rate_limit")
        if rl is not None and "rate_limit" in doc:
            if not isinstance(rl, dict) or not isinstance(rl.get("rps"), (int, float)) or rl["rps"] <= 0 or \
                    not isinstance(rl.get("retry_after", 1), int) or rl.get("retry_after", 1) < 1:
                raise HttpError(400, "fault 'rate_limit' must be {\"rps\": <positive number>, "
                                     "\"retry_after\": <seconds, optional>} or null")
        for key, val in doc.items():
            if key in self.KNOWN:
                setattr(self, key, val)
            else:
                self.extra[key] = val

    def matches(self, req: Request) -> bool:
        if self.path and not re.search(self.path, req.path):
            return False
        if self.method and self.method.upper() != req.method:
            return False
        return True

    def to_json(self) -> dict:
        doc = {k: getattr(self, k) for k in sorted(self.KNOWN)}
        doc.update(self.extra)
        return doc


Route = tuple[str, re.Pattern, Callable[[Request], Any]]


class Simulator:
    """Base class of one vendor simulator; subclasses add routes and state."""

    name = "sim"
    #: extra fault keys understood by the subclass
    extra_fault_keys: set[str] = set()
    #: default rate limit in requests per second (None: unlimited)
    default_rps: Optional[float] = None

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.lock = threading.RLock()
        self.faults = Faults()
        self.request_log: list[dict] = []
        self.buckets: dict[str, TokenBucket] = {}
        self.base_url = ""
        self.routes: list[Route] = []
        self.register_routes()
        self.state = self.load_state()

    # ----- to override -------------------------------------------------
    def seed(self) -> dict:
        """Returns the initial state document."""
        return {}

    def register_routes(self) -> None:
        """Adds routes with `self.route(method, pattern, handler)`."""

    def error_response(self, err: HttpError) -> Response:
        """Renders an error in the vendor's format."""
        return Response(err.status, err.body if err.body is not None else {"error": err.message},
                        headers=err.headers)

    def rate_key(self, req: Request) -> Optional[str]:
        """Which bucket a request counts against (None: not limited)."""
        return "global"

    def rate_limited_response(self, retry_after: int) -> Response:
        return Response(429, {"errors": ["Too Many Requests"]}, headers={"Retry-After": str(retry_after)})

    def public_state(self) -> dict:
        """The document served by `GET /_sim/state`."""
        return self.state

    @staticmethod
    def extra_args(parser: argparse.ArgumentParser) -> None:
        """Adds simulator-specific command line options."""

    # ----- helpers -----------------------------------------------------
    def route(self, method: str, pattern: str, handler: Callable[[Request], Any]) -> None:
        self.routes.append((method, re.compile("^" + pattern + "$"), handler))

    def load_state(self) -> dict:
        path = self.args.state_file
        if path and os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        state = self.seed()
        self.state = state
        self.save()
        return state

    def save(self) -> None:
        """Persists the state atomically when a state file is configured."""
        path = self.args.state_file
        if not path:
            return
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.public_state(), fh, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def reset(self) -> None:
        with self.lock:
            self.state = self.seed()
            self.faults = Faults()
            self.buckets.clear()
            self.request_log.clear()
            self.save()

    def current_rps(self) -> tuple[Optional[float], int]:
        rl = self.faults.rate_limit
        if rl:
            return float(rl["rps"]), int(rl.get("retry_after", 1))
        rps = getattr(self.args, "rate_limit", None)
        if rps is None:
            rps = self.default_rps
        if not rps:
            return None, 1
        return float(rps), 1

    # ----- dispatch ------------------------------------------------------
    def admin(self, req: Request) -> Optional[Response]:
        if req.path == "/_sim/state" and req.method == "GET":
            with self.lock:
                return Response(200, copy.deepcopy(self.public_state()))
        if req.path == "/_sim/faults":
            with self.lock:
                if req.method == "GET":
                    return Response(200, self.faults.to_json())
                if req.method == "DELETE":
                    self.faults = Faults()
                    return Response(200, self.faults.to_json())
                if req.method == "POST":
                    try:
                        doc = json.loads(req.body or b"{}")
                    except ValueError as exc:
                        return Response(400, {"error": f"malformed JSON: {exc}"})
                    if not isinstance(doc, dict):
                        return Response(400, {"error": "fault document must be a JSON object"})
                    try:
                        if doc.get("clear"):
                            self.faults = Faults()
                            doc = {k: v for k, v in doc.items() if k != "clear"}
                        self.faults.update(doc, self.extra_fault_keys)
                    except HttpError as err:
                        return Response(400, {"error": err.message})
                    return Response(200, self.faults.to_json())
        if req.path == "/_sim/reset" and req.method == "POST":
            self.reset()
            return Response(200, {"reset": True})
        if req.path == "/_sim/requests" and req.method == "GET":
            with self.lock:
                return Response(200, list(self.request_log))
        if req.path.startswith("/_sim/"):
            return Response(404, {"error": f"unknown admin endpoint {req.method} {req.path}"})
        return None

    def pre_faults(self, req: Request) -> Optional[str]:
        """Applies delay/drop/fail faults. Returns 'drop' or None; may raise HttpError."""
        with self.lock:
            f = self.faults
            delay = 0
            if f.delay_ms and f.matches(req):
                delay = f.delay_ms
                if f.delay_next is not None:
                    f.delay_next -= 1
                    if f.delay_next <= 0:
                        f.delay_ms, f.delay_next = 0, None
            drop = False
            if f.drop_next and f.matches(req):
                f.drop_next -= 1
                drop = True
            fail = None
            if not drop and f.fail_next and f.matches(req):
                f.fail_next -= 1
                fail = (f.status, f.message, f.retry_after)
        if delay:
            time.sleep(delay / 1000.0)
        if drop:
            return "drop"
        if fail:
            status, message, retry_after = fail
            if status == 429:
                resp = self.rate_limited_response(int(retry_after or 1))
                raise HttpError(429, message, body=resp.body, headers=resp.headers)
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            raise HttpError(status, message, headers=headers, code="INJECTED")
        return None

    def check_rate(self, req: Request) -> Optional[Response]:
        rps, retry_after = self.current_rps()
        if not rps:
            return None
        key = self.rate_key(req)
        if key is None:
            return None
        with self.lock:
            bucket = self.buckets.get(key)
            if bucket is None or bucket.rps != rps:
                bucket = self.buckets[key] = TokenBucket(rps)
            wait = bucket.take()
        if wait > 0:
            return self.rate_limited_response(max(retry_after, int(wait + 0.999)))
        return None

    def dispatch(self, req: Request) -> Optional[Response]:
        """Returns the response, or None to drop the connection."""
        admin = self.admin(req)
        if admin is not None:
            return admin
        try:
            if self.pre_faults(req) == "drop":
                return None
            limited = self.check_rate(req)
            if limited is not None:
                return limited
            allowed = []
            for method, pattern, handler in self.routes:
                m = pattern.match(req.path)
                if not m:
                    continue
                if method != req.method and not (req.method == "HEAD" and method == "GET"):
                    allowed.append(method)
                    continue
                req.params = m.groupdict()
                try:
                    result = handler(req)
                except (TypeError, AttributeError) as exc:
                    # a value of the wrong JSON type somewhere a validator did not expect it
                    LOG.warning("ill-typed request %s %s: %r", req.method, req.path, exc)
                    raise HttpError(400, f"Invalid request body: a field has the wrong JSON type ({exc})")
                if isinstance(result, Response):
                    return result
                return Response(200, result)
            if allowed:
                raise HttpError(405, f"Method {req.method} not allowed for {req.path}; allowed: "
                                     f"{', '.join(sorted(set(allowed)))}")
            raise HttpError(404, f"No resource at {req.path}")
        except HttpError as err:
            resp = self.error_response(err)
            for k, v in err.headers.items():
                resp.headers.setdefault(k, v)
            return resp


def make_handler(sim: Simulator):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"rampart-{sim.name}-sim"

        def log_message(self, fmt, *args):  # route access logs through logging
            LOG.debug("%s %s", self.address_string(), fmt % args)

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(self.command, self.path, self.headers, body, self.client_address[0])
            try:
                resp = sim.dispatch(req)
            except Exception as exc:  # a simulator bug must not kill the server
                LOG.exception("handler crashed")
                resp = sim.error_response(HttpError(500, f"simulator internal error: {exc}"))
            if not req.path.startswith("/_sim/"):
                with sim.lock:
                    sim.request_log.append({"method": req.method, "path": req.path,
                                            "status": None if resp is None else resp.status,
                                            "t": round(time.time(), 3)})
                    del sim.request_log[:-1000]
            if resp is None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            body_bytes, ctype = encode_body(resp)
            self.send_response(resp.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body_bytes)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            for c in resp.cookies:
                self.send_header("Set-Cookie", c)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body_bytes)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    return Handler


def encode_body(resp: Response) -> tuple[bytes, str]:
    body = resp.body
    if body is None:
        return b"", resp.content_type or "application/json"
    if isinstance(body, bytes):
        return body, resp.content_type or "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), resp.content_type or "text/plain; charset=utf-8"
    return json.dumps(body).encode(), resp.content_type or "application/json"


class SimServer(ThreadingHTTPServer):
    """Threaded server doing the TLS handshake in the worker thread, so a stalled
    client never blocks accept()."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, ssl_ctx: Optional[ssl.SSLContext]):
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        if self.ssl_ctx is not None:
            request.settimeout(10)
            try:
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                LOG.debug("TLS handshake failed from %s: %s", client_address, exc)
                return
            request.settimeout(None)
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address):
        LOG.debug("connection error from %s", client_address, exc_info=True)


def make_cert(directory: str, extra_sans: Optional[list[str]] = None) -> tuple[str, str, str]:
    """Creates a throw-away CA and a server certificate it signs, valid for
    127.0.0.1, ::1, localhost, api.meraki.com (see docs) and `extra_sans`.

    A separate CA (rather than one self-signed certificate) because webpki /
    rustls refuse a CA certificate used as the server's own. Returns
    (CA certificate, server chain, server key) paths.
    """
    ca, ca_key = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca-key.pem")
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    csr, ext = os.path.join(directory, "server.csr"), os.path.join(directory, "server.ext")
    sans = ["IP:127.0.0.1", "IP:::1", "DNS:localhost", "DNS:api.meraki.com"]
    for name in extra_sans or []:
        try:
            ipaddress.ip_address(name)
            entry = f"IP:{name}"
        except ValueError:
            entry = f"DNS:{name}"
        if entry not in sans:
            sans.append(entry)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*cmd):
        subprocess.run(["openssl", *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    run("req", "-x509", *ec, "-days", "30", "-subj", "/CN=rampart-sim-ca", "-keyout", ca_key, "-out", ca,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-subj", "/CN=rampart-sim", "-keyout", key, "-out", csr)
    with open(ext, "w") as fh:
        fh.write(f"subjectAltName={','.join(sans)}\nbasicConstraints=critical,CA:FALSE\n"
                 "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
        "-days", "30", "-extfile", ext, "-out", cert)
    with open(cert, "a") as out, open(ca) as ca_fh:
        out.write(ca_fh.read())  # serve the chain
    for f in (csr, ext, ca_key):
        os.unlink(f)
    return ca, cert, key


def common_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    p.add_argument("--state-file", help="JSON file holding the state (loaded if present, "
                                        "rewritten on every change); default: in memory")
    p.add_argument("--plain-http", action="store_true", help="serve plain HTTP instead of TLS")
    p.add_argument("--cert-dir", help="where to write cert.pem/key.pem (default: a temp dir)")
    p.add_argument("--cert-san", action="append", default=[],
                   help="extra subjectAltName (IP or DNS name; repeatable); --host is added when specific")
    p.add_argument("--rate-limit", type=float, default=None,
                   help="requests per second before 429 (0 disables; default: the vendor's)")
    p.add_argument("--log-level", default="WARNING")
    return p


def serve(sim_cls: type[Simulator], description: str, argv: Optional[list[str]] = None) -> None:
    """Parses the command line, starts the server and prints the startup lines."""
    parser = common_parser(description)
    sim_cls.extra_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {sim_cls.name}-sim %(levelname)s %(message)s")

    def early_exit(*_):
        raise SystemExit(1)

    # until the server runs, SIGTERM unwinds through the clean-up below
    signal.signal(signal.SIGTERM, early_exit)
    signal.signal(signal.SIGINT, early_exit)
    tmpdir = None
    server = None
    try:
        ctx = None
        if not args.plain_http:
            cert_dir = args.cert_dir
            if not cert_dir:
                tmpdir = tempfile.mkdtemp(prefix=f"rampart-{sim_cls.name}-sim-")
                cert_dir = tmpdir
            os.makedirs(cert_dir, exist_ok=True)
            sans = list(args.cert_san)
            if args.host not in ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):
                sans.append(args.host)
            ca, cert, key = make_cert(cert_dir, sans)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
        sim = sim_cls(args)
        SimServer.address_family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        server = SimServer((args.host, args.port), make_handler(sim), ctx)
        host, port = server.server_address[:2]
        scheme = "https" if ctx else "http"
        hostpart = f"[{host}]" if ":" in host else host
        sim.base_url = f"{scheme}://{hostpart}:{port}"

        def stop(*_):
            threading.Thread(target=server.shutdown, daemon=True).start()

        # handlers first: a client may SIGTERM us as soon as it has read the address
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"LISTENING {hostpart}:{port}", flush=True)
        if ctx:
            print(f"CERT {ca}", flush=True)
        server.serve_forever(poll_interval=0.05)
    finally:
        if server is not None:
            server.server_close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def now_ms() -> int:
    return int(time.time() * 1000)
