//! Apply latency on sled vs etcd (a command, not a test; needs root for
//! netconfd and Debian's etcd):
//!
//! ```text
//! cargo run -p rampart-controller --example ha_apply_bench [-- ROUNDS]
//! ```
//!
//! For 1 and 10 real netconfd devices (Cisco IOS-XE models loaded) it runs
//! the same sequence of vFirewall changes touching every device through the
//! transaction engine, once with the store on sled and once on a 3-member
//! etcd cluster on loopback, and prints the median and max latency of one
//! apply (plan + journal + prepare + commit + confirm + finish) and the
//! resulting applies per second. Same machine, same run (docs/ha.md).

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

#[path = "../tests/support/etcd.rs"]
mod etcd_cluster;
#[path = "../tests/support/netconfd.rs"]
#[allow(dead_code, reason = "shared with the tests; the bench uses a subset")]
mod netconfd;

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use netconfd::{Netconfd, PASSWORD, USER};
use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
        spec::API_VERSION,
    },
    store::{EtcdOptions, Store},
    txn::{Change, Engine, EngineConfig},
};

fn firewall(devices: &[String], rules: usize) -> String {
    let mut s = String::from(
        "apiVersion: rampart.io/v1\nkind: Firewall\nmetadata: {name: edge, tenant: bench}\n\
         spec:\n  defaultAction: deny\n  rules:\n",
    );
    for i in 0..rules {
        s.push_str(&format!(
            "    - {{sequence: {}, action: permit, protocol: tcp, sources: [10.0.{i}.0/24], destinationPorts: [443]}}\n",
            (i + 1) * 10
        ));
    }
    s.push_str("  targets:\n    devices:\n");
    for d in devices {
        s.push_str(&format!(
            "      - {{device: {d}, interface: GigabitEthernet2, direction: ingress}}\n"
        ));
    }
    s
}

/// Applies `rounds` changes on `servers` with `store`; one duration each.
async fn run(
    store: Store,
    servers: &[Netconfd],
    dir: &Path,
    validator: &Validator,
    rounds: usize,
) -> anyhow::Result<Vec<Duration>> {
    let creds = dir.join("credentials");
    let mut inventory = BTreeMap::new();
    for (i, s) in servers.iter().enumerate() {
        let d = Device {
            name: format!("csr{i}"),
            platform: Platform::IosXe,
            address: format!("127.0.0.1:{}", s.port),
            credentials_ref: format!("file:{}", creds.display()),
            labels: BTreeMap::new(),
            created_unix: 0,
        };
        store.put_device(&d, true)?;
        inventory.insert(d.name.clone(), d);
    }
    let engine = Engine::new(
        store,
        EngineConfig {
            known_hosts: dir.join("known_hosts"),
            ..EngineConfig::default()
        },
    );
    let names: Vec<String> = inventory.keys().cloned().collect();
    let mut out = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // A different rule count each round: every apply changes every device.
        let doc = firewall(&names, 3 + round % 5 + usize::from(round % 2 == 0) * 5);
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
        engine.execute(planned).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10);
    let cluster = etcd_cluster::start().ok_or_else(|| anyhow::anyhow!("etcd is not installed"))?;
    eprintln!("starting 10 netconfd instances with the Cisco models...");
    let mut servers = Vec::new();
    for _ in 0..10 {
        servers.push(Netconfd::start().ok_or_else(|| anyhow::anyhow!("netconfd unavailable"))?);
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("credentials"),
        format!("{USER}:{PASSWORD}\n"),
    )?;
    let hosts: String = servers
        .iter()
        .map(|s| std::fs::read_to_string(s.known_hosts()))
        .collect::<Result<_, _>>()?;
    std::fs::write(dir.path().join("known_hosts"), hosts)?;
    let validator = Validator::new()?;

    println!("| devices | store | median apply (ms) | max (ms) | applies/s |");
    println!("| ---: | --- | ---: | ---: | ---: |");
    for n in [1, 10] {
        for backend in ["sled", "etcd (3 members)"] {
            let store = if backend == "sled" {
                Store::open(&dir.path().join(format!("sled-{n}")))?
            } else {
                Store::open_etcd(&EtcdOptions {
                    endpoints: cluster.endpoints.clone(),
                    ca_pem: None,
                    identity_pem: None,
                    prefix: format!("/bench-{n}/"),
                    timeout: Duration::from_secs(5),
                })?
            };
            let mut t = run(store, &servers[..n], dir.path(), &validator, rounds).await?;
            t.sort();
            let total: f64 = t.iter().map(Duration::as_secs_f64).sum();
            println!(
                "| {n} | {backend} | {:.0} | {:.0} | {:.1} |",
                t[t.len() / 2].as_secs_f64() * 1000.0,
                t[t.len() - 1].as_secs_f64() * 1000.0,
                t.len() as f64 / total
            );
        }
    }
    Ok(())
}
