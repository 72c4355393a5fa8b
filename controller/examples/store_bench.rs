//! Store benchmark (a command, not a test): the same operations on sled (a
//! data directory on local disk, flushed as rampartd flushes) and on a real
//! 3-member etcd cluster on loopback (Debian's etcd, `scripts/install/etcd.sh`),
//! in one run so the two are measured on the same machine at the same time.
//!
//! ```text
//! cargo run --release -p rampart-controller --example store_bench [-- OPS]
//! ```
//!
//! Per backend: latency (median, p99) of a point read, an exclusive device
//! add (compare-and-swap, then flush) and a journal write (`put_txn`: write
//! and flush); then journal-write throughput from 1 and 16 concurrent
//! writers. Then leader failover on etcd: a leader that stops without
//! giving up its key (as `kill -9` does) → the first journal write the new
//! leader gets accepted, over 20 such crashes with the default lease TTL.
//! Prints Markdown tables (docs/ha.md).

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

#[path = "../tests/support/etcd.rs"]
mod etcd_cluster;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rampart_controller::{
    model::device::{Device, Platform},
    store::{DeviceStatus, DeviceTxn, EtcdOptions, Store, TxnRecord, TxnState, leader},
};

fn device(name: String) -> Device {
    Device {
        name,
        platform: Platform::IosXe,
        address: "192.0.2.1:830".into(),
        credentials_ref: "env:PW".into(),
        labels: BTreeMap::new(),
        created_unix: 0,
    }
}

/// A journal record of realistic size (~2 KiB: one device's edit and
/// inverse).
fn record(store: &Store) -> anyhow::Result<TxnRecord> {
    let edit = "<config><native><ip><access-list>…</access-list></ip></native></config>".repeat(12);
    Ok(TxnRecord {
        id: store.next_txn_id()?,
        state: TxnState::Pending,
        operation: "apply".into(),
        services: vec!["bench/fw".into()],
        author: "bench".into(),
        started_unix_ms: 1,
        devices: vec![DeviceTxn {
            device: "csr1".into(),
            platform: "ios-xe".into(),
            prev: serde_json::Value::Null,
            next: serde_json::Value::Null,
            contributions: BTreeMap::new(),
            edit: rampart_controller::wire::edit::Edit::NetconfXml {
                config: edit.clone(),
            },
            inverse: rampart_controller::wire::edit::Edit::NetconfXml { config: edit },
            status: DeviceStatus::Planned,
            error: None,
            paths: Vec::new(),
        }],
        ..TxnRecord::default_pending()
    })
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    format!("{:.3} / {:.3}", at(0.5), at(0.99))
}

async fn latency(store: &Store, ops: usize, tag: &str) -> anyhow::Result<Vec<String>> {
    let mut rows = Vec::new();
    store.put_device(&device(format!("{tag}-read")), false)?;
    let mut t = Vec::with_capacity(ops);
    for _ in 0..ops {
        let s = Instant::now();
        store.device(&format!("{tag}-read"))?;
        t.push(s.elapsed());
    }
    rows.push(format!("point read | {}", stats(t)));
    let mut t = Vec::with_capacity(ops);
    for i in 0..ops {
        let s = Instant::now();
        store.put_device(&device(format!("{tag}-{i}")), false)?;
        store.flush().await?;
        t.push(s.elapsed());
    }
    rows.push(format!("device add (CAS) | {}", stats(t)));
    let mut t = Vec::with_capacity(ops);
    for _ in 0..ops {
        let r = record(store)?;
        let s = Instant::now();
        store.put_txn(&r).await?;
        t.push(s.elapsed());
    }
    rows.push(format!("journal write | {}", stats(t)));
    Ok(rows)
}

async fn throughput(store: &Store, writers: usize, total: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let s = store.clone();
        set.spawn(async move {
            for _ in 0..total / writers {
                let r = record(&s)?;
                s.put_txn(&r).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn etcd(cluster: &etcd_cluster::Cluster, prefix: &str) -> anyhow::Result<Store> {
    Ok(Store::open_etcd(&EtcdOptions {
        endpoints: cluster.endpoints.clone(),
        ca_pem: None,
        identity_pem: None,
        prefix: prefix.into(),
        timeout: Duration::from_secs(5),
    })?)
}

/// Crash → first write accepted by the next leader, `rounds` times.
async fn failover(cluster: &etcd_cluster::Cluster, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let mut store = etcd(cluster, "/failover/")?;
    let mut leading = store.campaign("replica-0", leader::DEFAULT_TTL);
    leading.until_leader().await;
    let mut out = Vec::with_capacity(rounds);
    for i in 1..=rounds {
        let next_store = etcd(cluster, "/failover/")?;
        let next = next_store.campaign(&format!("replica-{i}"), leader::DEFAULT_TTL);
        // Let it find the current leader first, as a running replica has.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let crash = Instant::now();
        leading.abandon();
        next.until_leader().await;
        next_store.put_txn(&record(&next_store)?).await?;
        out.push(crash.elapsed());
        (store, leading) = (next_store, next);
    }
    drop(store);
    Ok(out)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let ops: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300);
    let cluster = etcd_cluster::start().ok_or_else(|| anyhow::anyhow!("etcd is not installed"))?;
    let dir = tempfile::tempdir()?;
    let backends = [
        ("sled", Store::open(&dir.path().join("sled"))?),
        ("etcd (3 members)", etcd(&cluster, "/bench/")?),
    ];
    println!("| backend | operation | median / p99 (ms) |");
    println!("|---|---|---|");
    for (name, store) in &backends {
        for row in latency(store, ops, "lat").await? {
            println!("| {name} | {row} |");
        }
    }
    println!();
    println!("| backend | journal writers | records/s |");
    println!("|---|---|---|");
    for (name, store) in &backends {
        for writers in [1, 16] {
            let rate = throughput(store, writers, ops * 4).await?;
            println!("| {name} | {writers} | {rate:.0} |");
        }
    }
    let mut times = failover(&cluster, 20).await?;
    times.sort();
    println!();
    println!("| leader crashes | median | max |");
    println!("|---|---|---|");
    println!(
        "| {} | {:.2} s | {:.2} s |",
        times.len(),
        times[times.len() / 2].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    Ok(())
}
