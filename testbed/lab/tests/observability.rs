//! The dashboards (`deploy/grafana/*.json`) and alert rules
//! (`deploy/prometheus/rules.yml`) against real tools: promtool runs the
//! rules' unit tests, and every dashboard query runs against the lab's
//! Prometheus after real traffic through both agents and the devices. A
//! query must parse; a query over metrics exported today must return
//! series; a query over a metric in [`NOT_EXPORTED_YET`] must return none.

mod support;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use rampart_lab::{runner::roles::prometheus, sys};
use serde_json::Value;
use support::{Ctl, Lab, http_get_within, reference_yaml, repo, skip_because, skip_without, text};

/// Metric names the dashboards and rules use that nothing exports yet: the
/// device collector's and the rollouts' (issues #17 and #16). The lab test
/// asserts each has no series at all, so an entry must go when its metric
/// lands (the test fails until it does), and a query over any metric not
/// listed here must return series.
const NOT_EXPORTED_YET: &[&str] = &[
    "rampart_device_up",
    "rampart_device_poll_seconds",
    "rampart_device_interface_up",
    "rampart_device_bgp_neighbor_up",
    "rampart_service_rule_hits_total",
    "rampart_rollout_state",
    "rampart_rollout_current_wave",
    "rampart_rollout_gate_evaluations_total",
    "rampart_rollout_automatic_rollbacks_total",
    "rampart_rollout_time_to_detect_seconds_bucket",
];

const PROMTOOL: &str = "/usr/bin/promtool";

fn no_promtool(test: &str) -> bool {
    skip_because(
        test,
        (!Path::new(PROMTOOL).is_file())
            .then(|| "needs promtool: bash scripts/install/prometheus.sh".to_owned()),
    )
}

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new(PROMTOOL)
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .unwrap()
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    if no_promtool("alert_rules_pass_promtool_check_and_unit_tests") {
        return;
    }
    let check = promtool(&["check", "rules", "rules.yml"]);
    assert!(check.status.success(), "{}", text(&check));
    let tests = promtool(&["test", "rules", "rules.test.yml"]);
    assert!(tests.status.success(), "{}", text(&tests));
    assert!(
        String::from_utf8_lossy(&tests.stdout).contains("SUCCESS"),
        "{}",
        text(&tests)
    );
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Each alert of rules.yml is tested firing (expected alerts) and silent
/// (no alert expected) in rules.test.yml: a rule nobody tests, or one
/// tested only one way, is named.
#[test]
fn every_alert_rule_is_tested_firing_and_silent() {
    let rules = yaml("deploy/prometheus/rules.yml");
    let alerts: BTreeSet<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    let tests = yaml("deploy/prometheus/rules.test.yml");
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for t in tests["tests"].as_array().unwrap() {
        for case in t["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                firing.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    for a in &alerts {
        assert!(firing.contains(a), "{a} is never tested firing");
        assert!(silent.contains(a), "{a} is never tested silent");
    }
    let unknown: Vec<_> = firing
        .union(&silent)
        .filter(|a| !alerts.contains(*a))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts that do not exist: {unknown:?}"
    );
}

/// One query of a dashboard: a panel target, or a template variable's.
#[derive(Debug, Clone)]
struct Query {
    at: String,
    expr: String,
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/grafana");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).unwrap();
            let v = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Grafana's `label_values(SELECTOR, LABEL)` as the PromQL that answers it.
fn label_values(q: &str) -> Option<String> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some(format!("count by ({}) ({})", label.trim(), selector.trim()))
}

/// Every query of every dashboard, with Grafana's variables replaced: the
/// dashboard's own (multi-value, matched with `=~`) by `.*`, the built-in
/// ranges by fixed ones.
fn queries() -> Vec<Query> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        let vars: Vec<String> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "query")
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect();
        let fill = |e: &str| {
            let mut e = e
                .replace("$__rate_interval", "30s")
                .replace("$__range", "5m");
            for v in &vars {
                e = e.replace(&format!("${v}"), ".*");
            }
            assert!(!e.contains('$'), "{file}: unknown variable in {e}");
            e
        };
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                let q = v["query"]["query"].as_str().unwrap();
                let expr = label_values(q).unwrap_or_else(|| panic!("{file}: {q}"));
                out.push(Query {
                    at: format!("{file} variable {}", v["name"]),
                    expr: fill(&expr),
                });
            }
        }
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                out.push(Query {
                    at: format!("{file} panel {:?} {}", p["title"], t["refId"]),
                    expr: fill(t["expr"].as_str().unwrap()),
                });
            }
        }
    }
    out
}

/// The metric names a query reads (`rampart_*` and `up`).
fn metrics_of(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("rampart_") || *w == "up")
        .map(str::to_owned)
        .collect()
}

/// Importable into any Grafana: a unique uid, the Prometheus data source
/// as a variable (no installation's uid baked in), every query a PromQL
/// expression of that data source; and every metric of
/// [`NOT_EXPORTED_YET`] used by a dashboard or a rule.
#[test]
fn dashboards_are_importable_and_the_pending_list_is_used() {
    let mut uids = BTreeSet::new();
    let all = dashboards();
    assert!(
        all.len() >= 4,
        "{:?}",
        all.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    for (file, d) in &all {
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_owned()),
            "{file}: uid reused"
        );
        assert!(
            d["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Rampart / ")),
            "{file}"
        );
        let ds = &d["templating"]["list"][0];
        assert_eq!(
            (
                ds["name"].as_str(),
                ds["type"].as_str(),
                ds["query"].as_str()
            ),
            (Some("datasource"), Some("datasource"), Some("prometheus")),
            "{file}"
        );
        for p in d["panels"].as_array().unwrap() {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: {}",
                p["title"]
            );
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{file}: {}",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{file}: {}",
                    p["title"]
                );
            }
        }
    }
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/rules.yml")).unwrap();
    let used: BTreeSet<String> = queries().iter().flat_map(|q| metrics_of(&q.expr)).collect();
    for m in NOT_EXPORTED_YET {
        assert!(
            used.contains(*m) || rules.contains(m),
            "{m} is listed as pending but no dashboard or rule uses it"
        );
    }
}

/// The lab's Prometheus, reached from inside its node's namespace.
struct Prom {
    ns: String,
    addr: SocketAddr,
    url: String,
}

impl Prom {
    /// `GET /api/v1/<path>?query=<q>`, as JSON.
    fn get(&self, path: &str, query: Option<&str>) -> Value {
        let mut url = format!("/api/v1/{path}");
        if let Some(q) = query {
            url.push('?');
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .append_pair("query", q)
                    .finish(),
            );
        }
        let (_, body) = sys::http_get(&self.ns, self.addr, &url, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("Prometheus at {} does not answer {url}", self.addr));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
    }

    /// How many series `q` returns now; the query must parse.
    fn series(&self, q: &Query) -> usize {
        let v = self.get("query", Some(&q.expr));
        assert_eq!(v["status"], "success", "{}: {}: {v}", q.at, q.expr);
        v["data"]["result"].as_array().map_or(0, Vec::len)
    }
}

/// The demo's firewall with one more rule, letting the lab's Prometheus
/// reach the agent's metrics port through the default deny, on host1 only
/// (host2 load-balances at the same time).
fn firewall_spec(dir: &Path) -> String {
    let src = std::fs::read_to_string(repo().join("examples/demo/firewall.yaml")).unwrap();
    let rules = "  rules:\n    - sequence: 10\n";
    let gateway = "      - selector: {role: gateway}\n        interfaces: [eth1]\n        direction: ingress\n";
    assert!(
        src.contains(rules) && src.contains(gateway),
        "the demo firewall changed:\n{src}"
    );
    let spec = src.replacen(
        rules,
        "  rules:\n    - sequence: 5\n      action: permit\n      protocol: tcp\n      sources: [10.10.0.50/32]\n      destinationPorts: [9469]\n      description: the lab's Prometheus scrapes the agent\n    - sequence: 10\n",
        1,
    )
    .replacen(gateway, "", 1);
    let f = dir.join("firewall.yaml");
    std::fs::write(&f, spec).unwrap();
    f.display().to_string()
}

/// Applies the demo's load balancer and the firewall above, sends traffic
/// through both, checks sync; then cuts asa1 off (the periodic drift check
/// fails on it) and app2 (host2's health checks mark the backend down).
fn real_traffic(lab: &Lab, ctl: &Ctl, dir: &Path) {
    ctl.ok(&["devices", "add", "-f", &ctl.var("RAMPART_INVENTORY")]);
    let v0 = support::versions(&ctl.json(&["agents"]));
    let lb = repo().join("examples/demo/loadbalancer.yaml");
    ctl.json(&["apply", "-f", lb.to_str().unwrap()]);
    let v1 = ctl.agents_converged(&v0, &["host2"]);
    ctl.json(&["apply", "-f", &firewall_spec(dir)]);
    ctl.agents_converged(&v1, &["host1"]);
    let client = lab.ns("client");
    let get = |a: &str| http_get_within(&client, a.parse().unwrap(), Duration::from_secs(1));
    let vip_deadline = Instant::now() + Duration::from_secs(10);
    while get("10.10.2.100:80").is_err() {
        assert!(Instant::now() < vip_deadline, "the VIP never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..5 {
        assert_eq!(get("10.10.0.31:80").unwrap(), "host1 80\n");
        assert!(get("10.10.0.31:8080").is_err(), "host1:8080 is denied");
        assert!(get("10.10.2.100:80").unwrap().starts_with("app"));
    }
    let sync = ctl.ok(&["check-sync"]);
    assert!(sync.contains("csr1: in sync"), "{sync}");
    for node in ["asa1", "app2"] {
        sys::ip_in(&lab.ns(node), &["link", "set", "eth1", "down"]).unwrap();
    }
}

/// Every query parses; once scraped (bounded wait), every query over
/// exported metrics has series and every query over a pending metric has
/// none, nor has any pending metric itself. Returns (queries, pending).
fn assert_dashboard_queries(prom: &Prom) -> (usize, usize) {
    let all = queries();
    assert!(all.len() > 30, "{} queries", all.len());
    let pending: BTreeSet<&str> = NOT_EXPORTED_YET.iter().copied().collect();
    let is_pending = |q: &Query| {
        metrics_of(&q.expr)
            .iter()
            .any(|m| pending.contains(m.as_str()))
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut empty: Vec<&Query> = all.iter().filter(|q| !is_pending(q)).collect();
    while !empty.is_empty() && Instant::now() < deadline {
        empty.retain(|q| prom.series(q) == 0);
        std::thread::sleep(Duration::from_millis(500));
    }
    let empty: Vec<String> = empty
        .iter()
        .map(|q| format!("{}: {}", q.at, q.expr))
        .collect();
    assert!(
        empty.is_empty(),
        "queries over exported metrics without series:\n{}",
        empty.join("\n")
    );
    let over_pending: Vec<&Query> = all.iter().filter(|q| is_pending(q)).collect();
    for q in &over_pending {
        assert_eq!(
            prom.series(q),
            0,
            "{}: {} returns series: drop its metric from NOT_EXPORTED_YET",
            q.at,
            q.expr
        );
    }
    for m in NOT_EXPORTED_YET {
        let v = prom.get("query", Some(&format!("count({{__name__=\"{m}\"}})")));
        assert_eq!(
            v["data"]["result"],
            serde_json::json!([]),
            "{m} exists now: drop it from NOT_EXPORTED_YET"
        );
    }
    (all.len(), over_pending.len())
}

/// The rules load and evaluate without errors on the real series, and the
/// alerts for what `real_traffic` cut off fire.
fn assert_rules_and_alerts(prom: &Prom) {
    let rules = prom.get("rules", None);
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4, "{rules:#}");
    for r in groups.iter().flat_map(|g| g["rules"].as_array().unwrap()) {
        assert_eq!(r["health"], "ok", "{r:#}");
    }
    let expected = [
        ("RampartDevicePollErrors", "device", "asa1"),
        ("RampartLbBackendDown", "backend", "10.10.0.42:8080"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts = prom.get("alerts", None);
        let list = alerts["data"]["alerts"].as_array().unwrap();
        let firing = |(name, label, value): &(&str, &str, &str)| {
            list.iter().any(|a| {
                a["labels"]["alertname"] == *name
                    && a["labels"][*label] == *value
                    && a["state"] == "firing"
            })
        };
        if expected.iter().all(firing) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {expected:?} firing: {alerts:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The demo's query, as the demo runs it: promtool in Prometheus's node.
fn assert_demo_query(prom: &Prom) {
    let demo_query = r#"sum by (service, sequence) (rampart_fleet_rule_packets{tenant="acme"})"#;
    let out = Command::new("nsenter")
        .arg(format!("--net={}/{}", sys::NETNS_DIR, prom.ns))
        .args([PROMTOOL, "query", "instant", &prom.url, demo_query])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#"sequence="10", service="web-fw""#),
        "{}",
        text(&out)
    );
}

#[test]
fn every_dashboard_query_returns_series_on_the_lab_prometheus() {
    let test = "every_dashboard_query_returns_series_on_the_lab_prometheus";
    if skip_without(test, &["rampartd", "rampartctl", "rampart-agent"]) || no_promtool(test) {
        return;
    }
    let lab = Lab::new("obs", &reference_yaml()).ready_timeout(30);
    let up = lab.run(&["up"]);
    assert!(up.status.success(), "up: {}", text(&up));
    let ctl = Ctl::of(&lab);
    let url = ctl.var("RAMPART_PROMETHEUS_URL");
    let prom = Prom {
        ns: lab.ns("prometheus"),
        addr: url.trim_start_matches("http://").parse().unwrap(),
        url,
    };
    assert_eq!(prom.addr.port(), prometheus::PROMETHEUS_PORT);
    let dir = tempfile::tempdir().unwrap();
    real_traffic(&lab, &ctl, dir.path());
    let (queries, pending) = assert_dashboard_queries(&prom);
    assert_rules_and_alerts(&prom);
    assert_demo_query(&prom);
    eprintln!(
        "{queries} dashboard queries answered, {pending} of them over pending metrics (empty)"
    );
}
