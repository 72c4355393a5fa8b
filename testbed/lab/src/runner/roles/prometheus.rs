//! `prometheus`: Debian's Prometheus, scraping rampartd's `/metrics`, its
//! fleet endpoint and every agent of the lab, and evaluating the
//! repository's alert rules (`deploy/prometheus/rules.yml`).
//!
//! [`config`] is also what the containerlab topology's
//! `configs/prometheus.yml` must agree with (a schema test compares them).

use std::{fs, net::SocketAddr, path::Path};

use serde::Serialize;

use super::{
    agent::AGENT_METRICS_PORT,
    controller::{FLEET_METRICS_PORT, METRICS_PORT},
};
use crate::{
    runner::base::{Env, LabError, Launch, Pending, Ready, io, lab_env, launch, primary},
    state::State,
    topology::{Lab, Node, Role},
};

/// Prometheus's port in the lab.
pub const PROMETHEUS_PORT: u16 = 9090;
/// Scrape and rule evaluation interval: short, so the demo and the tests
/// see a change within seconds (production setups use 15 s or more).
pub const SCRAPE_INTERVAL: &str = "1s";
/// Debian's Prometheus.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
/// The alert rules, relative to the project root.
pub const RULES: &str = "deploy/prometheus/rules.yml";

/// One scrape job of the lab's Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// `job` label: `rampartd`, `rampart-fleet` or `rampart-agent`.
    pub job: &'static str,
    /// `(address:port, node name)` per target.
    pub targets: Vec<(String, String)>,
}

/// What the lab's Prometheus scrapes: rampartd and its fleet endpoint on
/// the controller, and the metrics port of every agent node with an
/// address (one without is not reachable from Prometheus).
#[must_use]
pub fn jobs(lab: &Lab) -> Vec<Job> {
    let on = |role: Role, port: u16| -> Vec<(String, String)> {
        lab.nodes
            .iter()
            .filter(|n| n.has(role))
            .filter_map(|n| {
                let a = n.primary_address()?;
                Some((SocketAddr::new(a, port).to_string(), n.name.clone()))
            })
            .collect()
    };
    vec![
        Job {
            job: "rampartd",
            targets: on(Role::Controller, METRICS_PORT),
        },
        Job {
            job: "rampart-fleet",
            targets: on(Role::Controller, FLEET_METRICS_PORT),
        },
        Job {
            job: "rampart-agent",
            targets: on(Role::Agent, AGENT_METRICS_PORT),
        },
    ]
}

/// The Prometheus configuration (YAML) for `lab`, loading `rules` when
/// given. Each target carries a `node` label naming the lab node.
#[must_use]
pub fn config(lab: &Lab, rules: Option<&Path>) -> String {
    let scrape: Vec<serde_json::Value> = jobs(lab)
        .into_iter()
        .map(|j| {
            let groups: Vec<serde_json::Value> = j
                .targets
                .iter()
                .map(
                    |(addr, node)| serde_json::json!({"targets": [addr], "labels": {"node": node}}),
                )
                .collect();
            serde_json::json!({"job_name": j.job, "static_configs": groups})
        })
        .collect();
    let doc = serde_json::json!({
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
            "external_labels": {"lab": lab.name},
        },
        "rule_files": rules.map(|r| vec![r.display().to_string()]).unwrap_or_default(),
        "scrape_configs": scrape,
    });
    format!(
        "# Prometheus of lab {} (written by rampart-lab up).\n{}",
        lab.name,
        serde_norway::to_string(&doc).unwrap_or_default()
    )
}

/// Where Prometheus answers in the lab (inside the lab's network).
#[must_use]
pub fn address(n: &Node) -> SocketAddr {
    SocketAddr::new(primary(n), PROMETHEUS_PORT)
}

/// Starts Prometheus on `n`; ready once `/-/ready` answers 200.
pub(crate) fn start(
    lab: &Lab,
    n: &Node,
    env: &Env,
    state: &mut State,
) -> Result<Pending, LabError> {
    let dir = env.node_dir(&n.name);
    let data = dir.join("tsdb");
    fs::create_dir_all(&data).map_err(io(&data))?;
    let rules = env.root.join(RULES);
    let file = dir.join("prometheus.yml");
    fs::write(
        &file,
        config(lab, rules.is_file().then_some(rules.as_path())),
    )
    .map_err(io(&file))?;
    let addr = address(n);
    let args = [
        format!("--config.file={}", file.display()),
        format!("--storage.tsdb.path={}", data.display()),
        format!("--web.listen-address={addr}"),
        "--storage.tsdb.retention.time=1d".to_owned(),
    ];
    let p = launch(
        lab,
        n,
        env,
        Launch {
            process: "prometheus",
            log: "prometheus",
            program: Path::new(PROMETHEUS_BIN),
            args: &args,
            env: &lab_env(lab),
            ready: Ready::Http {
                addr,
                path: "/-/ready".to_owned(),
            },
        },
    )?;
    if let Some(s) = state.nodes.get_mut(&n.name) {
        s.info
            .insert("prometheus".to_owned(), format!("http://{addr}"));
        s.info
            .insert("config".to_owned(), file.display().to_string());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"name: p
topology:
  nodes:
    sw: {kind: bridge}
    ctl:
      kind: linux
      labels: {rampart.role: controller, rampart.address: 10.9.0.10/24}
    h1:
      kind: linux
      labels: {rampart.role: agent, rampart.address: 10.9.0.31/24}
    h2:
      kind: linux
      labels: {rampart.role: "agent,server", rampart.address: 10.9.0.32/24}
    prom:
      kind: linux
      labels: {rampart.role: prometheus, rampart.address: 10.9.0.50/24}
  links:
    - endpoints: ["ctl:eth1", "sw:p1"]
    - endpoints: ["h1:eth1", "sw:p2"]
    - endpoints: ["h2:eth1", "sw:p3"]
    - endpoints: ["prom:eth1", "sw:p4"]
"#;

    fn lab() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.clab.yml");
        std::fs::write(&f, LAB).unwrap();
        crate::topology::load(&f).unwrap()
    }

    #[test]
    fn scrapes_the_controller_twice_and_every_agent_labelled_by_node() {
        let lab = lab();
        let got: Vec<(&str, Vec<(String, String)>)> =
            jobs(&lab).into_iter().map(|j| (j.job, j.targets)).collect();
        let t = |a: &str, n: &str| (a.to_owned(), n.to_owned());
        assert_eq!(
            got,
            [
                ("rampartd", vec![t("10.9.0.10:9464", "ctl")]),
                ("rampart-fleet", vec![t("10.9.0.10:9465", "ctl")]),
                (
                    "rampart-agent",
                    vec![t("10.9.0.31:9469", "h1"), t("10.9.0.32:9469", "h2")]
                ),
            ]
        );
        assert_eq!(
            address(lab.node("prom").unwrap()).to_string(),
            "10.9.0.50:9090"
        );
    }

    #[test]
    fn config_names_the_rules_only_when_given() {
        let lab = lab();
        let with: serde_json::Value =
            serde_norway::from_str(&config(&lab, Some(Path::new("/r.yml")))).unwrap();
        assert_eq!(with["rule_files"], serde_json::json!(["/r.yml"]));
        assert_eq!(with["global"]["external_labels"]["lab"], "p");
        assert_eq!(
            with["scrape_configs"][2]["static_configs"][1],
            serde_json::json!({"targets": ["10.9.0.32:9469"], "labels": {"node": "h2"}})
        );
        let without: serde_json::Value = serde_norway::from_str(&config(&lab, None)).unwrap();
        assert_eq!(without["rule_files"], serde_json::json!([]));
    }
}
