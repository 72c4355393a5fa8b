#!/usr/bin/env bash
# The Rampart demo on embedded defaults: start rampartd with a fresh store,
# register the sample inventory, dry-run then apply the sample vFirewall,
# and show what was stored, the transaction log and the Prometheus metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/bin:$PATH"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "building rampartd and rampartctl"
cargo build --quiet --locked -p rampart-controller -p rampartctl
bin="$PWD/target/debug"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(free_port)
metrics_port=$(free_port)
work=$(mktemp -d /tmp/rampart-demo.XXXXXX)
cleanup() {
    if [ -n "${daemon:-}" ] && kill -0 "$daemon" 2>/dev/null; then
        kill -TERM "$daemon"
        wait "$daemon" 2>/dev/null || true
    fi
}
trap cleanup EXIT

say "starting rampartd (store in $work/data, API 127.0.0.1:$api_port, metrics :$metrics_port)"
"$bin/rampartd" --data-dir "$work/data" --listen "127.0.0.1:$api_port" \
    --metrics-listen "127.0.0.1:$metrics_port" >"$work/rampartd.log" 2>&1 &
daemon=$!
# TLS is on by default: rampartctl trusts the CA rampartd generated and
# authenticates with the bootstrap admin token it wrote (0600).
export RAMPART_SERVER="https://127.0.0.1:$api_port"
export RAMPART_CA_CERT="$work/data/tls/ca.crt"
export RAMPART_TOKEN_FILE="$work/data/admin.token"
ctl="$bin/rampartctl"
for _ in $(seq 100); do
    "$ctl" get devices >/dev/null 2>&1 && break
    kill -0 "$daemon" 2>/dev/null || { cat "$work/rampartd.log"; exit 1; }
    sleep 0.1
done

say "registering the sample inventory"
run "$ctl" devices add -f examples/inventory.yaml

say "dry-run of the sample vFirewall: the configuration each target would get"
run "$ctl" apply -f examples/firewall.yaml --dry-run

say "applying it"
run "$ctl" apply -f examples/firewall.yaml

say "what rampartd now holds"
run "$ctl" get services
run "$ctl" get transactions

say "an invalid spec is refused with its line and YANG path"
bad="$work/bad.yaml"
sed -e 's#10.0.0.0/8#10.0.0.0/33#' examples/firewall.yaml >"$bad"
run "$ctl" apply -f "$bad" || echo "(exit code $? as documented: 3 = invalid argument)"

say "who am I, and a read-only token for a tenant viewer"
run "$ctl" whoami
viewer=$("$ctl" -o json tokens create --name demo-viewer --role viewer --tenant acme --ttl 1h \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
run "$ctl" tokens list
echo '$ rampartctl --token <viewer> devices remove csr1'
RAMPART_TOKEN="$viewer" "$ctl" devices remove csr1 \
    || echo "(exit code $? as documented: 7 = permission denied)"

say "the audit log: every change, who made it, from where (JSON lines for a SIEM)"
run "$ctl" audit --since 1h
"$ctl" -o jsonl audit --since 1h | head -n 2 || true

say "Prometheus metrics (rampart_*)"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^rampart_(api_requests_total|services|devices|store)' || true

cat <<MSG

Demo done. rampartd is stopped and its store removed with $work when you like.
Explore further:
  target/debug/rampartd --data-dir /tmp/rampart --listen 127.0.0.1:50051 &
  export RAMPART_CA_CERT=/tmp/rampart/tls/ca.crt RAMPART_TOKEN_FILE=/tmp/rampart/admin.token
  target/debug/rampartctl devices add -f examples/inventory.yaml
  target/debug/rampartctl apply -f examples/<spec>.yaml --dry-run -o json
  target/debug/rampartctl get services|devices|transactions
  curl -s 127.0.0.1:9464/metrics
MSG
