//! Transaction benchmark (a command, not a test; needs root for netconfd):
//!
//! ```text
//! cargo run -p rampart-controller --example txn_bench [-- 1,10,50]
//! ```
//!
//! For N real netconfd instances (Cisco IOS-XE 16.9.3 models loaded) it
//! measures planning and committing one vFirewall change that touches all N
//! devices (two-phase: prepare everywhere, confirmed commit everywhere,
//! confirm), and planning a dry-run of 1,000 service instances spread over
//! the same devices. Prints a Markdown table (see docs/benchmarks.md).

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

#[path = "../tests/support/netconfd.rs"]
#[allow(dead_code, reason = "shared with the tests; the bench uses a subset")]
mod netconfd;

use std::{collections::BTreeMap, time::Instant};

use netconfd::{Netconfd, PASSWORD, USER};
use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
        spec::API_VERSION,
    },
    store::Store,
    txn::{Change, Engine, EngineConfig},
};

fn firewall(name: &str, devices: &[String], interface: &str, rules: usize) -> String {
    let mut s = format!(
        "apiVersion: rampart.io/v1\nkind: Firewall\nmetadata: {{name: {name}, tenant: bench}}\n\
         spec:\n  defaultAction: deny\n  rules:\n"
    );
    for i in 0..rules {
        s.push_str(&format!(
            "    - {{sequence: {}, action: permit, protocol: tcp, sources: [10.{}.{}.0/24], destinationPorts: [443]}}\n",
            (i + 1) * 10,
            i / 256,
            i % 256
        ));
    }
    s.push_str("  targets:\n    devices:\n");
    for d in devices {
        s.push_str(&format!(
            "      - {{device: {d}, interface: {interface}, direction: ingress}}\n"
        ));
    }
    s
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "1,10,50".to_owned())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let max = sizes.iter().copied().max().unwrap_or(1);
    eprintln!("starting {max} netconfd instances with the Cisco models...");
    let mut servers = Vec::new();
    for _ in 0..max {
        match Netconfd::start() {
            Some(n) => servers.push(n),
            None => {
                anyhow::bail!("netconfd unavailable (needs root and scripts/install/netconfd.sh)")
            }
        }
    }
    let dir = tempfile::tempdir()?;
    let creds = dir.path().join("credentials");
    std::fs::write(&creds, format!("{USER}:{PASSWORD}\n"))?;
    let known_hosts = dir.path().join("known_hosts");
    let mut hosts = String::new();
    for s in &servers {
        hosts.push_str(&std::fs::read_to_string(s.known_hosts())?);
    }
    std::fs::write(&known_hosts, hosts)?;
    let validator = Validator::new()?;

    println!(
        "| devices | plan (ms) | prepare+commit+confirm (ms) | per device (ms) | dry-run of 1,000 services (ms) | second rendering no longer made (ms) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for &n in &sizes {
        let store = Store::temporary()?;
        let mut inventory = BTreeMap::new();
        for (i, s) in servers.iter().take(n).enumerate() {
            let d = Device {
                name: format!("csr{i}"),
                platform: Platform::IosXe,
                address: format!("127.0.0.1:{}", s.port),
                credentials_ref: format!("file:{}", creds.display()),
                labels: BTreeMap::new(),
                created_unix: 0,
            };
            store.put_device(&d, false)?;
            inventory.insert(d.name.clone(), d);
        }
        let engine = Engine::new(
            store,
            EngineConfig {
                known_hosts: known_hosts.clone(),
                ..EngineConfig::default()
            },
        );
        let names: Vec<String> = inventory.keys().cloned().collect();
        let doc = firewall("edge", &names, "GigabitEthernet2", 10);
        let spec = validator
            .validate(
                &SourceDoc {
                    text: &doc,
                    format: DocFormat::Yaml,
                    name: "bench",
                },
                &inventory,
            )?
            .remove(0)
            .spec;
        let t = Instant::now();
        let planned = engine.plan(
            Change {
                apply: vec![(spec, API_VERSION.to_owned())],
                delete: vec![],
            },
            "bench",
        )?;
        let plan_ms = ms(t);
        let t = Instant::now();
        engine.execute(planned).await?;
        let commit_ms = ms(t);

        // 1,000 services, each on one device and its own interface.
        let mut specs = Vec::new();
        for i in 0..1000 {
            let dev = vec![names[i % names.len()].clone()];
            let doc = firewall(
                &format!("svc{i}"),
                &dev,
                &format!("GigabitEthernet{}", 10 + i),
                5,
            );
            let spec = validator
                .validate(
                    &SourceDoc {
                        text: &doc,
                        format: DocFormat::Yaml,
                        name: "bench",
                    },
                    &inventory,
                )?
                .remove(0)
                .spec;
            specs.push((spec, API_VERSION.to_owned()));
        }
        // Baseline, same run: the second rendering of every target the plan
        // made before each spec was compiled once (`compile::compile`,
        // kept for dry-run tools and tests).
        let t = Instant::now();
        for (spec, _) in &specs {
            rampart_controller::compile::compile(spec, &inventory)?;
        }
        let second_ms = ms(t);
        let t = Instant::now();
        let planned = engine.plan(
            Change {
                apply: specs,
                delete: vec![],
            },
            "bench",
        )?;
        let dry_ms = ms(t);
        assert_eq!(planned.record.devices.len(), n);
        println!(
            "| {n} | {plan_ms:.1} | {commit_ms:.0} | {:.1} | {dry_ms:.0} | {second_ms:.0} |",
            commit_ms / n as f64
        );
    }
    Ok(())
}
