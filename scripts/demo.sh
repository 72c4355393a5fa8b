#!/usr/bin/env bash
# The Rampart demo: a lab of Linux network namespaces (no Docker) with
# rampartd, a CSR1000v stand-in (netconfd with Cisco's IOS-XE models), the
# ASA / Firepower / Meraki / SD-WAN Manager simulators, two hosts whose
# rampart-agent enrolled with rampartd, web servers and a client. One
# vFirewall spec is dry-run, applied to the router, the ASA, the Firepower
# and — selected by label — to both host agents, shown filtering real
# traffic with per-rule hit counters from the API and Prometheus, then
# rolled back everywhere; the lab's Prometheus answers a query over what
# it scraped. Then a vLoadBalancer: host2's agent spreads the
# client's connections to a VIP over two backends, and is rolled back.
#
# The same steps run unattended, with assertions, in
# testbed/lab/tests/demo_e2e.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/bin:$PATH"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [ "$(id -u)" != 0 ]; then
    echo "The demo builds its lab from network namespaces, veth links and eBPF: run it as root." >&2
    exit 1
fi
for tool in jq curl; do
    command -v "$tool" >/dev/null || {
        echo "the demo needs $tool: bash scripts/install/demo.sh" >&2
        exit 1
    }
done

say "building rampartd, rampartctl, rampart-agent and the lab runner"
cargo build --quiet --locked -p rampart-controller -p rampartctl -p rampart-agent -p rampart-lab
bin="$PWD/target/debug"
export PATH="$bin:$PATH"

say "bringing up the lab (testbed/clab/rampart.clab.yml; idempotent)"
echo "(host1 and host2 run rampart-agent enrolled with rampartd through one-time tokens)"
run rampart-lab up
set -a
# shellcheck disable=SC1091
. .lab/rampart/lab.env
set +a

say "the host agents, connected to rampartd over mutual TLS"
run rampartctl agents

say "registering the lab's inventory (credentials stay in rampartd's environment)"
run rampartctl devices add -f "$RAMPART_INVENTORY" --replace

spec=examples/demo/firewall.yaml
# A previous run's service is removed first, so the rollback at the end
# shows the devices and hosts returning to a clean state.
rampartctl delete service web-fw --tenant acme >/dev/null 2>&1 || true

# Waits until every agent enforces the policy rampartd wants it to.
agents_converged() {
    for _ in $(seq 1 100); do
        if rampartctl -o json agents |
            jq -e 'length > 0 and all(.[]; .state == "online" and .appliedVersion == .desiredVersion)' >/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "!! the agents did not converge:" >&2
    rampartctl agents >&2
    return 1
}

# "client -> target: answer" for each URL, or "blocked".
probe() {
    local what=$1 url=$2
    printf '  client -> %-22s %s\n' "$what" \
        "$(rampart-lab exec client -- curl -s --max-time 1 "$url" || echo blocked)"
}
traffic() {
    probe "host1:80" "http://$RAMPART_ADDR_HOST1/"
    probe "host1:8080" "http://$RAMPART_ADDR_HOST1:8080/"
    probe "web1:80 (via host2)" "http://$RAMPART_ADDR_WEB1/"
    probe "web1:8080 (via host2)" "http://$RAMPART_ADDR_WEB1:8080/"
}

say "before: no policy, everything answers"
traffic

say "dry-run of $spec: each device's change in its own native form, each host's policy"
run rampartctl apply -f "$spec" --dry-run

say "applying it: one transaction across csr1, asa1 and ftd1; rampartd pushes the host policy to the agents selected by label"
out=$(rampartctl -o json apply -f "$spec")
txn=$(jq -r .transactionId <<<"$out")
echo "committed $txn"
run rampartctl get transaction "$txn"
run rampartctl check-sync
agents_converged
run rampartctl agents

say "traffic: rule 10 permits tcp/80 from the LAN, rule 30 denies tcp/8080 (host1 itself, and host2 in front of the web backends)"
traffic

say "per-rule hits, aggregated by rampartd from both agents"
sleep 1.5 # agents report counters every second
run rampartctl get service web-fw --tenant acme
echo '$ rampartctl -o json get service web-fw --tenant acme | jq .hits'
rampartctl -o json get service web-fw --tenant acme | jq -c '.hits[]'

say "Prometheus: rampartd's metrics"
curl -s --max-time 3 "$RAMPART_METRICS_URL" |
    grep -E '^rampart_(transactions_total|services|devices)' | head -12 || true
say "Prometheus: rampartd's fleet metrics (agents, per-rule counters)"
curl -s --max-time 3 "$RAMPART_FLEET_METRICS_URL" |
    grep -E '^rampart_fleet_(agents|agents_out_of_date|rule_packets)' || true
say "Prometheus in the lab, at $RAMPART_PROMETHEUS_URL (node prometheus): it scrapes rampartd, its fleet endpoint and both agents, and evaluates deploy/prometheus/rules.yml"
sleep 1.5 # one scrape interval
query='sum by (service, sequence) (rampart_fleet_rule_packets{tenant="acme"})'
echo "\$ promtool query instant \$RAMPART_PROMETHEUS_URL '$query'"
rampart-lab exec prometheus -- promtool query instant "$RAMPART_PROMETHEUS_URL" "$query"
say "Prometheus: host2's agent"
rampart-lab exec host2 -- curl -s --max-time 3 "http://127.0.0.1:9469/metrics" |
    grep -E '^rampart_(rule_packets_total|policy_version|agent_controller_connected)' | head -8 || true

say "rolling the change back: every device and every host restored"
run rampartctl rollback "$txn"
agents_converged
run rampartctl check-sync
run rampartctl agents
traffic

lbspec=examples/demo/loadbalancer.yaml
rampartctl delete service web-lb --tenant acme >/dev/null 2>&1 || true
say "load balancing: $lbspec — VIP 10.10.2.100:80 on host2 (role=gateway), backends app1 and app2"
run rampartctl apply -f "$lbspec" --dry-run
out=$(rampartctl -o json apply -f "$lbspec")
lbtxn=$(jq -r .transactionId <<<"$out")
echo "committed $lbtxn"
agents_converged
sleep 1 # the agent's first health checks mark the backends up
say "eight connections from the client to the VIP, spread over the backends"
for port in $(seq 41001 41008); do
    rampart-lab exec client -- curl -s --max-time 1 --local-port "$port" http://10.10.2.100/ || echo "no answer"
done | sort | uniq -c
say "host2's agent: new flows per backend, backend health"
rampart-lab exec host2 -- curl -s --max-time 3 "http://127.0.0.1:9469/metrics" |
    grep -E '^rampart_lb_(backend_new_flows_total|backend_up|vip_new_flows_total)' || true

say "rolling the load balancer back"
run rampartctl rollback "$lbtxn"
agents_converged
probe "VIP 10.10.2.100:80" "http://10.10.2.100/"
run rampartctl get transactions --limit 5

cat <<MSG

Demo done; the lab is still up. Explore further:
  source .lab/rampart/lab.env && export PATH=$bin:\$PATH
  rampartctl get services|devices|transactions      rampartctl agents
  rampartctl apply -f $spec --dry-run -o json
  rampartctl get service web-fw --tenant acme -o json     (after applying it again)
  rampartctl apply -f $lbspec      rampart-lab exec client -- curl -s http://10.10.2.100/
  rampartctl check-sync        rampartctl audit -o jsonl
  rampart-lab status           rampart-lab exec client -- curl -s http://10.10.1.12/
  curl -s \$RAMPART_METRICS_URL       curl -s \$RAMPART_FLEET_METRICS_URL
  rampart-lab exec prometheus -- promtool query instant \$RAMPART_PROMETHEUS_URL 'up'
  Grafana dashboards and alert rules for this Prometheus: deploy/ (docs/observability.md)
Take the lab down (removes every namespace, link, process, agent state and BPF pin):
  $bin/rampart-lab down
MSG
