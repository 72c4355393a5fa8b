//! Shared by the managed-mode tests: a dataplane that decides acceptance
//! with the agent's own policy compiler against a given set of interfaces
//! (the part of the eBPF enforcer that can refuse a policy) and records
//! what it enforces, and a spawner for the real managed-mode client.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rampart_agent::managed::{self, Dataplane, ManagedConfig, ManagedError, Status};
use rampart_proto::v1 as pb;
use tokio::sync::oneshot;

use super::fleet_common::Rampartd;

/// A host's dataplane without eBPF.
pub struct TestDataplane {
    interfaces: &'static [&'static str],
    policy: Option<pb::HostPolicy>,
    applies: Arc<AtomicU64>,
    /// The next `apply` (activation) fails, as a map write error would.
    fail_apply: Arc<AtomicBool>,
}

impl TestDataplane {
    fn check(&self, policy: &pb::HostPolicy) -> Result<(), String> {
        let ifs = self.interfaces;
        rampart_agent::fw::policy::compile(policy, &|i| i == "*" || ifs.contains(&i))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl Dataplane for TestDataplane {
    fn apply(&mut self, policy: &pb::HostPolicy) -> Result<(), String> {
        self.check(policy)?;
        if self.fail_apply.swap(false, Ordering::SeqCst) {
            return Err("map write failed: injected".into());
        }
        self.policy = Some(policy.clone());
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn validate(&self, policy: &pb::HostPolicy) -> Result<(), String> {
        self.check(policy)
    }

    fn health(&self) -> pb::Health {
        pb::Health {
            conntrack_max: 65_536,
            ..pb::Health::default()
        }
    }

    /// Five packets of 60 bytes on every rule, as if traffic had passed.
    fn counters(&self) -> Vec<pb::RuleCounter> {
        self.policy
            .iter()
            .flat_map(|p| &p.interfaces)
            .flat_map(|i| &i.rules)
            .map(|r| pb::RuleCounter {
                service: r.service.clone(),
                tenant: r.tenant.clone(),
                sequence: r.sequence,
                interface: "lo".into(),
                packets: 5,
                bytes: 300,
            })
            .collect()
    }
}

/// A running managed-mode agent.
pub struct Agent {
    pub dp: Arc<Mutex<TestDataplane>>,
    pub status: Arc<Status>,
    pub fail_apply: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), ManagedError>>,
}

impl Agent {
    /// Starts an agent named `host` with state in `state`, enrolling with
    /// `token` when it has no identity yet.
    pub fn spawn(
        d: &Rampartd,
        state: &std::path::Path,
        token: Option<String>,
        host: &str,
        interfaces: &'static [&'static str],
    ) -> Self {
        let mut cfg = ManagedConfig::new(format!("https://{}", d.agents), state);
        cfg.ca_file = Some(d.data.join("tls/ca.crt"));
        cfg.server_name = Some("localhost".into());
        cfg.enroll_token = token;
        cfg.hostname = host.into();
        cfg.heartbeat = Duration::from_millis(100);
        cfg.counters_every = 1;
        cfg.backoff_min = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(300);
        let fail_apply = Arc::new(AtomicBool::new(false));
        let dp = Arc::new(Mutex::new(TestDataplane {
            interfaces,
            policy: None,
            applies: Arc::default(),
            fail_apply: fail_apply.clone(),
        }));
        let status = Arc::new(Status::default());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(managed::run(cfg, dp.clone(), status.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            dp,
            status,
            fail_apply,
            stop: Some(tx),
            task,
        }
    }

    /// Policies enforced so far.
    pub fn applies(&self) -> u64 {
        self.dp.lock().unwrap().applies.load(Ordering::SeqCst)
    }

    /// The version the agent says it enforces.
    pub fn version(&self) -> u64 {
        self.status.applied_version.load(Ordering::SeqCst)
    }

    /// Destination ports of every rule enforced, in order.
    pub fn ports(&self) -> Vec<u32> {
        let g = self.dp.lock().unwrap();
        g.policy
            .iter()
            .flat_map(|p| &p.interfaces)
            .flat_map(|i| &i.rules)
            .flat_map(|r| r.destination_ports.iter().map(|p| p.first))
            .collect()
    }

    /// Stops the agent and returns how its run ended.
    pub async fn stop(mut self) -> Result<(), ManagedError> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("agent did not stop")
            .unwrap()
    }
}
