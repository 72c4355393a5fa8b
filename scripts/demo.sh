#!/usr/bin/env bash
# The Rampart demo: a lab of Linux network namespaces (no Docker) with
# rampartd, a CSR1000v stand-in (netconfd with Cisco's IOS-XE models), the
# ASA / Firepower / Meraki / SD-WAN Manager simulators, two agent hosts,
# web servers and a client. One vFirewall spec is dry-run, applied to the
# router, the ASA, the Firepower and a host agent, shown filtering real
# traffic with per-rule hit counters, then rolled back.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/bin:$PATH"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [ "$(id -u)" != 0 ]; then
    echo "The demo builds its lab from network namespaces, veth links and eBPF: run it as root." >&2
    exit 1
fi

say "building rampartd, rampartctl, rampart-agent and the lab runner"
cargo build --quiet --locked -p rampart-controller -p rampartctl -p rampart-agent -p rampart-lab
bin="$PWD/target/debug"
export PATH="$bin:$PATH"

say "bringing up the lab (testbed/clab/rampart.clab.yml; idempotent)"
run rampart-lab up
set -a
# shellcheck disable=SC1091
. .lab/rampart/lab.env
set +a

say "registering the lab's inventory (credentials stay in rampartd's environment)"
run rampartctl devices add -f "$RAMPART_INVENTORY" --replace

spec=examples/demo/firewall.yaml
# A previous run's service is removed first, so the rollback at the end
# shows the devices returning to a clean state.
rampartctl delete service web-fw --tenant acme >/dev/null 2>&1 || true

say "dry-run of $spec: each device's change in its own native form"
run rampartctl apply -f "$spec" --dry-run

say "applying it: one transaction, all-or-nothing across csr1, asa1 and ftd1"
out=$(rampartctl -o json apply -f "$spec")
txn=$(jq -r .transactionId <<<"$out")
echo "committed $txn"
run rampartctl get transaction "$txn"
run rampartctl check-sync

say "host1 enforces the host section with eBPF (rampart-agent, XDP)"
# Until host agents enroll with rampartd (managed mode), the demo hands the
# compiled host policy to host1's agent through its policy file; the agent
# reloads it atomically.
saved_policy=$(mktemp)
cp "$RAMPART_POLICY_HOST1" "$saved_policy"
rampartctl -o json apply -f "$spec" --dry-run |
    jq -r '.rendered[] | select(.format == "agent-policy") | .content' |
    jq '.version = 1' >"$RAMPART_POLICY_HOST1.new"
mv "$RAMPART_POLICY_HOST1.new" "$RAMPART_POLICY_HOST1"
sleep 1.5
printf 'client -> host1:80   (rule 10 permits): '
rampart-lab exec client -- curl -s --max-time 2 http://"$RAMPART_ADDR_HOST1":80/ || echo "blocked"
printf 'client -> host1:8080 (rule 30 denies):  '
rampart-lab exec client -- curl -s --max-time 2 http://"$RAMPART_ADDR_HOST1":8080/ || echo "blocked"
say "per-rule hit counters on host1"
rampart-lab exec host1 -- curl -s "http://127.0.0.1:9469/metrics" |
    grep -E '^rampart_(rule_packets_total|verdict|drops)' | head -12 || true

say "rampartd's Prometheus metrics"
curl -s --max-time 3 "$RAMPART_METRICS_URL" |
    grep -E '^rampart_(transactions_total|services|devices|device_drift)' || true

say "rolling the change back (every device restored in one transaction)"
run rampartctl rollback "$txn"
cp "$saved_policy" "$RAMPART_POLICY_HOST1"
rm -f "$saved_policy"
run rampartctl check-sync
run rampartctl get transactions --limit 5

cat <<MSG

Demo done; the lab is still up. Explore further:
  source .lab/rampart/lab.env && export PATH=$bin:\$PATH
  rampartctl get services|devices|transactions      rampartctl whoami
  rampartctl apply -f examples/<spec>.yaml --dry-run -o json
  rampartctl check-sync        rampartctl audit -o jsonl
  rampart-lab status           rampart-lab exec client -- curl -s http://10.10.1.12/
  curl -s \$RAMPART_METRICS_URL
Take the lab down (removes every namespace, link, process and BPF pin):
  $bin/rampart-lab down
MSG
