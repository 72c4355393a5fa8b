//! NETCONF soak: many short sessions against one netconfd behind sshd, with
//! Cisco's IOS-XE models loaded and the CPU loaded, counting every failure by kind. It is the check behind the
//! fix for lost server data (`SshChannel`): before it, about one connect in a
//! few hundred lost the server's hello under load.
//!
//! Run as root after `scripts/install/netconfd.sh`:
//! `cargo run --release -p rampart-controller --example netconf_soak -- 2000 2`
//! (sessions, busy threads). Each session: connect + hello, lock, edit,
//! commit, get-config, unlock, close.
#![allow(clippy::print_stdout, reason = "a soak run prints its tally")]

#[allow(dead_code, reason = "the harness offers more than the soak uses")]
#[path = "../tests/support/netconfd.rs"]
mod netconfd;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::Context as _;
use netconfd::Netconfd;
use rampart_controller::transport::netconf::{
    Commit, Datastore, EditConfig, NetconfError, Session, SessionConfig,
};

const CONFIG: &str = "<config xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"><ip><access-list><extended xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-acl\"><name>SOAK</name><access-list-seq-rule><sequence>10</sequence><ace-rule><action>permit</action><protocol>tcp</protocol><any/><dst-any/><dst-eq>PORT</dst-eq></ace-rule></access-list-seq-rule></extended></access-list></ip></native></config>";

fn one_session(cfg: &SessionConfig, n: usize) -> Result<(), (&'static str, NetconfError)> {
    let mut s = Session::connect(cfg).map_err(|e| ("connect", e))?;
    s.lock(Datastore::Candidate).map_err(|e| ("lock", e))?;
    let config = CONFIG.replace("PORT", &(1024 + n % 60_000).to_string());
    s.edit_config(EditConfig::new(Datastore::Candidate, config))
        .map_err(|e| ("edit-config", e))?;
    s.commit(Commit::default()).map_err(|e| ("commit", e))?;
    s.get_config(Datastore::Running, None)
        .map_err(|e| ("get-config", e))?;
    s.unlock(Datastore::Candidate).map_err(|e| ("unlock", e))?;
    s.close().map_err(|e| ("close", e))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args
        .next()
        .map_or(Ok(2000), |a| a.parse())
        .context("sessions")?;
    let busy: usize = args
        .next()
        .map_or(Ok(2), |a| a.parse())
        .context("busy threads")?;
    let nc = Netconfd::start().context("netconfd cannot run here")?;
    let cfg = nc.session_config();

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..busy)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..sessions {
        if let Err((step, e)) = one_session(&cfg, n) {
            eprintln!("session {n}: {step}: {e}");
            *failures.entry(step.to_owned()).or_default() += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.join();
    }
    let failed: usize = failures.values().sum();
    println!(
        "{sessions} sessions with {busy} busy threads in {:.1} s: {failed} failed {failures:?}",
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failed == 0, "{failed} sessions failed");
    Ok(())
}
