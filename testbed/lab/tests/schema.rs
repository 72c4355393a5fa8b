//! Every containerlab topology in the repository against the lab runner's
//! schema, its inventory, its `exec` lines and its startup configurations;
//! and precise errors for broken topologies. No root needed.

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use rampart_lab::{
    inventory,
    runner::{self, roles::prometheus},
    topology::{self, AgentMode, Kind, Lab, Role, TopologyError},
};
use support::repo;

/// Every `*.clab.yml` under the repository (build output and tools skipped).
fn topology_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | "tools" | ".git" | ".lab" | "node_modules"
                ) {
                    walk(&p, out);
                }
            } else if name.ends_with(".clab.yml") || name.ends_with(".clab.yaml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), &mut out);
    out.sort();
    out
}

#[test]
fn every_topology_validates_and_agrees_with_its_inventory() {
    let files = topology_files();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("testbed/clab/rampart.clab.yml")),
        "the reference lab is found: {files:?}"
    );
    for f in &files {
        let lab = topology::load(f).unwrap_or_else(|e| panic!("{e}"));
        let inv_path = f.with_file_name("inventory.yaml");
        let inv = inventory::load(&inv_path).unwrap_or_else(|e| {
            panic!(
                "{}: every topology has an inventory next to it: {e}",
                f.display()
            )
        });
        let problems = inventory::check(&lab, &inv);
        assert!(
            problems.is_empty(),
            "{} vs {}:\n{}",
            f.display(),
            inv_path.display(),
            problems.join("\n")
        );
        check_exec_matches_labels(f, &lab);
    }
}

/// containerlab configures linux nodes through `exec`; the netns lab through
/// labels. Both must describe the same addresses and routes.
fn check_exec_matches_labels(file: &Path, lab: &Lab) {
    for n in lab.nodes.iter().filter(|n| n.kind == Kind::Linux) {
        let mut exec_addrs: Vec<(String, String)> = Vec::new();
        let mut exec_routes: Vec<(String, String)> = Vec::new();
        for cmd in &n.exec {
            let w: Vec<&str> = cmd.split_whitespace().collect();
            match w.as_slice() {
                ["ip", "addr", "replace", addr, "dev", dev] => {
                    exec_addrs.push(((*dev).to_owned(), (*addr).to_owned()));
                }
                ["ip", "route", "replace", dest, "via", via] => {
                    let dest = if *dest == "default" {
                        "0.0.0.0/0"
                    } else {
                        dest
                    };
                    exec_routes.push((dest.to_owned(), (*via).to_owned()));
                }
                ["sysctl", "-qw", "net.ipv4.ip_forward=1"] => assert!(
                    n.forwarding,
                    "{}: {} forwards in exec only",
                    file.display(),
                    n.name
                ),
                _ => panic!(
                    "{}: node {}: exec {cmd:?} is not one of the idempotent forms the netns lab also runs",
                    file.display(),
                    n.name
                ),
            }
        }
        let label_addrs: Vec<(String, String)> = n
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| (i.name.clone(), a.to_string())))
            .collect();
        let label_routes: Vec<(String, String)> = n
            .routes
            .iter()
            .map(|r| (r.dest.to_string(), r.via.to_string()))
            .collect();
        assert_eq!(
            exec_addrs,
            label_addrs,
            "{}: node {}: exec addresses vs rampart.address labels",
            file.display(),
            n.name
        );
        assert_eq!(
            exec_routes,
            label_routes,
            "{}: node {}: exec routes vs rampart.gateway/routes labels",
            file.display(),
            n.name
        );
    }
}

#[test]
fn reference_lab_has_every_platform_and_the_traffic_endpoints() {
    let lab = topology::load(&repo().join("testbed/clab/rampart.clab.yml")).unwrap();
    let role_of = |name: &str| {
        lab.node(name)
            .unwrap_or_else(|| panic!("node {name}"))
            .roles
            .clone()
    };
    assert_eq!(role_of("controller"), [Role::Controller]);
    assert_eq!(role_of("csr1"), [Role::NetconfDevice]);
    assert_eq!(role_of("asa1"), [Role::SimAsa]);
    assert_eq!(role_of("ftd1"), [Role::SimFdm]);
    assert_eq!(role_of("mx1"), [Role::SimMeraki]);
    assert_eq!(role_of("vmanage1"), [Role::SimSdwan]);
    assert_eq!(role_of("client"), [Role::Client]);
    for w in ["web1", "web2", "web3"] {
        assert_eq!(role_of(w), [Role::Server], "{w}");
    }
    assert!(role_of("host1").contains(&Role::Agent));
    assert!(role_of("host2").contains(&Role::Agent));
    // Real images in containerlab for the three Cisco boxes.
    assert_eq!(lab.node("csr1").unwrap().kind, Kind::CiscoCsr1000v);
    assert_eq!(lab.node("asa1").unwrap().kind, Kind::CiscoAsav);
    assert_eq!(lab.node("ftd1").unwrap().kind, Kind::CiscoFtdv);
    // The generated inventory is exactly the shipped one (minus comments).
    let shipped = inventory::load(&repo().join("testbed/clab/inventory.yaml")).unwrap();
    assert_eq!(inventory::from_lab(&lab), shipped);
    let platforms: Vec<&str> = shipped
        .devices
        .iter()
        .map(|d| d.platform.as_str())
        .collect();
    for p in ["iosxe", "asa", "ftd", "meraki-mx", "sdwan"] {
        assert!(platforms.contains(&p), "platform {p} in {platforms:?}");
    }
}

#[test]
fn startup_configs_enable_management_and_match_the_addresses() {
    let dir = repo().join("testbed/clab");
    let lab = topology::load(&dir.join("rampart.clab.yml")).unwrap();
    let addr = |n: &str| lab.node(n).unwrap().primary_address().unwrap().to_string();
    let csr = std::fs::read_to_string(dir.join("configs/csr1.cfg")).unwrap();
    for line in [
        "netconf-yang",
        "restconf",
        "ip ssh version 2",
        "username admin privilege 15",
        "interface GigabitEthernet2",
    ] {
        assert!(
            csr.lines().any(|l| l.trim_start().starts_with(line)),
            "csr1.cfg has {line:?}"
        );
    }
    assert!(
        csr.contains(&format!("ip address {} 255.255.255.0", addr("csr1"))),
        "csr1.cfg Gi2 address"
    );
    let asa = std::fs::read_to_string(dir.join("configs/asa1.cfg")).unwrap();
    for line in [
        "enable password",
        "aaa authentication ssh console LOCAL",
        "ssh version 2",
        "ssh 10.10.0.0 255.255.255.0 inside",
        "username admin",
    ] {
        assert!(
            asa.lines().any(|l| l.trim_start().starts_with(line)),
            "asa1.cfg has {line:?}"
        );
    }
    assert!(
        asa.contains(&format!("ip address {} 255.255.255.0", addr("asa1"))),
        "asa1.cfg address"
    );
    let day0: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("configs/ftd1-day0.json")).unwrap())
            .unwrap();
    assert_eq!(day0["EULA"], "accept");
    assert_eq!(
        day0["ManageLocally"], "Yes",
        "FDM (local manager) is what Rampart's FTD driver talks to"
    );
    assert_eq!(day0["Hostname"], "ftd1");
    // The controller's clab environment names every inventory variable.
    let text = std::fs::read_to_string(dir.join("rampart.clab.yml")).unwrap();
    for d in inventory::from_lab(&lab).devices {
        let var = d.credentials_ref.trim_start_matches("env:");
        assert!(
            text.contains(&format!("{var}: ")),
            "controller env sets {var}"
        );
    }
    // The containerlab controller serves the agents on the netns lab's
    // ports, with the controller's address in the agent port's certificate
    // (the managed agents verify it).
    let rampartd = std::fs::read_to_string(dir.join("configs/rampartd.toml")).unwrap();
    let agents = rampartd
        .split("\n[agents]\n")
        .nth(1)
        .expect("rampartd.toml has an [agents] section");
    assert!(
        agents.contains(&format!("listen = \"0.0.0.0:{}\"", runner::AGENT_PORT)),
        "{agents}"
    );
    assert!(
        agents.contains(&format!(
            "metrics_listen = \"0.0.0.0:{}\"",
            runner::FLEET_METRICS_PORT
        )),
        "{agents}"
    );
    assert!(
        agents.contains(&format!("\"{}\"", addr("controller"))),
        "agent port SANs: {agents}"
    );
}

// ===== precise errors =====

fn problems(yaml: &str) -> Vec<String> {
    match topology::parse(yaml, Path::new("bad.clab.yml")) {
        Err(TopologyError::Invalid { problems, .. }) => problems,
        Err(e) => vec![e.to_string()],
        Ok(lab) => panic!("accepted: {lab:?}"),
    }
}

fn base(extra_nodes: &str, links: &str) -> String {
    format!(
        "name: t1\ntopology:\n  nodes:\n    sw:\n      kind: bridge\n    a:\n      kind: linux\n      labels: {{rampart.role: client, rampart.address: 10.1.0.1/24}}\n{extra_nodes}  links:\n    - endpoints: [\"a:eth1\", \"sw:p-a\"]\n{links}"
    )
}

#[test]
fn a_minimal_topology_parses() {
    let lab = topology::parse(&base("", ""), Path::new("ok.clab.yml")).unwrap();
    assert_eq!(lab.nodes.len(), 2);
    assert_eq!(
        lab.node("a")
            .unwrap()
            .primary_address()
            .unwrap()
            .to_string(),
        "10.1.0.1"
    );
}

/// Agents are managed (enrolled with the lab's rampartd) when the lab has a
/// controller, standalone otherwise or when the label says so; the
/// reference lab's hosts carry the labels the demo's spec selects.
#[test]
fn agent_modes_default_from_the_controller_and_the_label() {
    let with_ctl = base(
        "    c:\n      kind: linux\n      labels: {rampart.role: controller, rampart.address: 10.1.0.10/24}\n    h1:\n      kind: linux\n      labels: {rampart.role: agent}\n    h2:\n      kind: linux\n      labels: {rampart.role: agent, rampart.agent-mode: standalone}\n",
        "    - endpoints: [\"c:eth1\", \"sw:p-c\"]\n    - endpoints: [\"h1:eth1\", \"sw:p-h1\"]\n    - endpoints: [\"h2:eth1\", \"sw:p-h2\"]\n",
    );
    let lab = topology::parse(&with_ctl, Path::new("ok.clab.yml")).unwrap();
    let mode = |lab: &Lab, n: &str| lab.node(n).unwrap().agent_mode;
    assert_eq!(mode(&lab, "h1"), Some(AgentMode::Managed));
    assert_eq!(mode(&lab, "h2"), Some(AgentMode::Standalone));
    assert_eq!(mode(&lab, "c"), None);
    let without = base(
        "    h1:\n      kind: linux\n      labels: {rampart.role: agent}\n",
        "    - endpoints: [\"h1:eth1\", \"sw:p-h1\"]\n",
    );
    let lab = topology::parse(&without, Path::new("ok.clab.yml")).unwrap();
    assert_eq!(mode(&lab, "h1"), Some(AgentMode::Standalone));

    let reference = topology::load(&repo().join("testbed/clab/rampart.clab.yml")).unwrap();
    for (host, role) in [("host1", "web"), ("host2", "gateway")] {
        let n = reference.node(host).unwrap();
        assert_eq!(n.agent_mode, Some(AgentMode::Managed), "{host}");
        assert_eq!(
            n.inventory_labels.get("role").map(String::as_str),
            Some(role),
            "{host}: the demo's spec selects it by this label"
        );
    }
}

#[test]
fn errors_name_the_node_and_field() {
    let cases: BTreeMap<&str, (String, &str)> = BTreeMap::from([
        (
            "unknown role",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: router}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "topology.nodes.b.labels.rampart.role: unknown role \"router\"",
            ),
        ),
        (
            "bad address",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: client, rampart.address: 10.1.0.300/24}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "topology.nodes.b.labels.rampart.address: \"10.1.0.300/24\"",
            ),
        ),
        (
            "address on a missing interface",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: client, rampart.address.eth7: 10.1.0.2/24}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "topology.nodes.b.labels.rampart.address.eth7: node has no interface eth7",
            ),
        ),
        (
            "typo in a label",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: client, rampart.adress: 10.1.0.2/24}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "topology.nodes.b.labels.rampart.adress: unknown Rampart label",
            ),
        ),
        (
            "managed agent without a controller",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: agent, rampart.agent-mode: managed}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "topology.nodes.b.labels.rampart.agent-mode: managed needs a node with the controller role",
            ),
        ),
        (
            "unknown agent mode",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: agent, rampart.agent-mode: remote}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "topology.nodes.b.labels.rampart.agent-mode: \"remote\" is not managed or standalone",
            ),
        ),
        (
            "agent mode on a node without an agent",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: client, rampart.agent-mode: standalone}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "topology.nodes.b.labels.rampart.agent-mode: only an agent node runs rampart-agent",
            ),
        ),
        (
            "link to a missing node",
            (
                base("", "    - endpoints: [\"ghost:eth1\", \"sw:p-g\"]\n"),
                "topology.links[1].endpoints[0]: node \"ghost\" is not in topology.nodes",
            ),
        ),
        (
            "interface used twice",
            (
                base("", "    - endpoints: [\"a:eth1\", \"sw:p-x\"]\n"),
                "topology.links[1].endpoints[0]: a:eth1 is already used",
            ),
        ),
        (
            "unknown kind",
            (
                base(
                    "    b:\n      kind: juniper_vmx\n      labels: {rampart.role: client}\n",
                    "",
                ),
                "topology.nodes.b.kind: \"juniper_vmx\" is not supported",
            ),
        ),
        (
            "unknown node field",
            (
                base(
                    "    b:\n      kind: linux\n      imagee: debian\n      labels: {rampart.role: client}\n",
                    "",
                ),
                "topology.nodes.b.imagee: not a containerlab node field",
            ),
        ),
        (
            "role on the wrong kind",
            (
                base(
                    "    b:\n      kind: cisco_asav\n      labels: {rampart.role: sim-meraki, rampart.address: 10.1.0.2/24}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "role sim-meraki cannot run on kind cisco_asav",
            ),
        ),
        (
            "device without address",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: sim-fdm}\n",
                    "",
                ),
                "topology.nodes.b.labels.rampart.address: a device needs an address",
            ),
        ),
        (
            "route off-link",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: client, rampart.address: 10.1.0.2/24, rampart.gateway: 192.0.2.1}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "route to 0.0.0.0/0 via 192.0.2.1 is not on a subnet",
            ),
        ),
        (
            "duplicate address",
            (
                base(
                    "    b:\n      kind: linux\n      labels: {rampart.role: client, rampart.address: 10.1.0.1/24}\n",
                    "    - endpoints: [\"b:eth1\", \"sw:p-b\"]\n",
                ),
                "address 10.1.0.1 is also used by node a",
            ),
        ),
        (
            "missing role",
            (
                base("    b:\n      kind: linux\n", ""),
                "topology.nodes.b.labels.rampart.role: missing",
            ),
        ),
    ]);
    for (case, (yaml, want)) in &cases {
        let got = problems(yaml);
        assert!(
            got.iter().any(|p| p.contains(want)),
            "{case}: want {want:?} in {got:#?}"
        );
    }
    // A lab name that could collide with another lab's prefix.
    let got = problems(&base("", "").replace("name: t1", "name: my-lab"));
    assert!(
        got.iter()
            .any(|p| p.starts_with("name: lab name \"my-lab\"")),
        "{got:?}"
    );
    // Several problems are reported at once.
    let two = base(
        "    b:\n      kind: linux\n      labels: {rampart.role: router, rampart.adress: x}\n",
        "",
    );
    assert!(problems(&two).len() >= 2, "{:?}", problems(&two));
    // YAML errors carry a line number.
    let bad = topology::parse("name: t1\ntopology:\n  nodes: [\n", Path::new("y.clab.yml"))
        .unwrap_err()
        .to_string();
    assert!(bad.contains("y.clab.yml") && bad.contains("line"), "{bad}");
}

#[test]
fn inventory_disagreements_are_named() {
    let lab = topology::parse(
        &base("    fw:\n      kind: linux\n      labels: {rampart.role: sim-fdm, rampart.address: 10.1.0.9/24}\n", "    - endpoints: [\"fw:eth1\", \"sw:p-fw\"]\n"),
        Path::new("i.clab.yml"),
    )
    .unwrap();
    let mut inv = inventory::from_lab(&lab);
    assert!(inventory::check(&lab, &inv).is_empty());
    inv.devices[0].address = "10.1.0.9:8443".to_owned();
    inv.devices[0].platform = "asa".to_owned();
    inv.devices.push(inventory::Device {
        name: "a".to_owned(),
        platform: "iosxe".to_owned(),
        address: "10.1.0.1:830".to_owned(),
        credentials_ref: String::new(),
        labels: BTreeMap::new(),
    });
    let p = inventory::check(&lab, &inv);
    assert!(
        p.iter()
            .any(|x| x == "device fw: platform asa in the inventory, ftd in the topology"),
        "{p:?}"
    );
    assert!(
        p.iter().any(|x| x
            == "device fw: address 10.1.0.9:8443 in the inventory, 10.1.0.9:443 in the topology"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x == "device a has no device role in the topology"),
        "{p:?}"
    );
}

/// `(job, target, node label)` of every scrape target in a Prometheus
/// configuration.
fn scrape_targets(config: &str) -> Vec<(String, String, String)> {
    let v: serde_json::Value = serde_norway::from_str(config).unwrap();
    let mut out = Vec::new();
    for job in v["scrape_configs"].as_array().unwrap() {
        for group in job["static_configs"].as_array().unwrap() {
            for t in group["targets"].as_array().unwrap() {
                out.push((
                    job["job_name"].as_str().unwrap().to_owned(),
                    t.as_str().unwrap().to_owned(),
                    group["labels"]["node"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The containerlab lab's Prometheus (configs/prometheus.yml, its node's
/// command and binds, the image) scrapes exactly what the netns lab's
/// does: rampartd, its fleet endpoint and both agents, at the topology's
/// addresses and the runner's ports, and loads the repository's rules.
#[test]
fn clab_prometheus_scrapes_what_the_netns_lab_does() {
    let dir = repo().join("testbed/clab");
    let lab = topology::load(&dir.join("rampart.clab.yml")).unwrap();
    let node = lab
        .nodes
        .iter()
        .find(|n| n.has(Role::Prometheus))
        .expect("the reference lab has a prometheus node");
    let clab = std::fs::read_to_string(dir.join("configs/prometheus.yml")).unwrap();
    let netns = prometheus::config(&lab, Some(Path::new("/etc/rampart/rules.yml")));
    let want: Vec<(String, String, String)> = {
        let mut v: Vec<_> = prometheus::jobs(&lab)
            .into_iter()
            .flat_map(|j| {
                j.targets
                    .into_iter()
                    .map(move |(t, n)| (j.job.to_owned(), t, n))
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(want.len(), 4, "rampartd, fleet, host1, host2: {want:?}");
    assert!(
        want.contains(&(
            "rampart-fleet".into(),
            format!("10.10.0.10:{}", runner::FLEET_METRICS_PORT),
            "controller".into()
        )),
        "{want:?}"
    );
    assert_eq!(scrape_targets(&clab), want, "configs/prometheus.yml");
    assert_eq!(scrape_targets(&netns), want, "the netns lab's config");
    for doc in [&clab, &netns] {
        let v: serde_json::Value = serde_norway::from_str(doc).unwrap();
        assert_eq!(v["rule_files"][0], "/etc/rampart/rules.yml", "{doc}");
        assert_eq!(
            v["global"]["scrape_interval"],
            prometheus::SCRAPE_INTERVAL,
            "{doc}"
        );
    }

    let raw: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("rampart.clab.yml")).unwrap())
            .unwrap();
    let clab_node = &raw["topology"]["nodes"][&node.name];
    let cmd = clab_node["cmd"].as_str().unwrap();
    let listen = format!("--web.listen-address={}", prometheus::address(node));
    assert!(cmd.contains(&listen), "{cmd}");
    assert!(
        cmd.contains("--config.file=/etc/rampart/prometheus.yml"),
        "{cmd}"
    );
    assert_eq!(
        clab_node["binds"][0],
        "configs/prometheus.yml:/etc/rampart/prometheus.yml:ro"
    );
    let docker = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    assert!(docker.contains(" prometheus "), "{docker}");
    assert!(
        docker.contains("COPY deploy/prometheus/rules.yml /etc/rampart/rules.yml"),
        "{docker}"
    );
}

/// promtool accepts both configurations (the rules path pointed at the
/// repository's file, as the containers bind it).
#[test]
fn prometheus_configs_pass_promtool_check_config() {
    if support::skip_because(
        "prometheus_configs_pass_promtool_check_config",
        (!Path::new("/usr/bin/promtool").is_file())
            .then(|| "needs promtool: bash scripts/install/prometheus.sh".to_owned()),
    ) {
        return;
    }
    let dir = repo().join("testbed/clab");
    let lab = topology::load(&dir.join("rampart.clab.yml")).unwrap();
    let rules = repo().join(prometheus::RULES);
    let tmp = tempfile::tempdir().unwrap();
    let clab = std::fs::read_to_string(dir.join("configs/prometheus.yml"))
        .unwrap()
        .replace("/etc/rampart/rules.yml", &rules.display().to_string());
    for (name, text) in [
        ("clab.yml", clab),
        ("netns.yml", prometheus::config(&lab, Some(&rules))),
    ] {
        let f = tmp.path().join(name);
        std::fs::write(&f, text).unwrap();
        let out = std::process::Command::new("/usr/bin/promtool")
            .args(["check", "config"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
