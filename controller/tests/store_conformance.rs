//! Store conformance: the same cases against both backends, sled (a
//! temporary directory) and etcd (a real 3-member cluster of Debian's etcd
//! on loopback ports, started per test). Each etcd case gets a prefix of
//! its own, so the cases of one cluster never see each other's keys.
//!
//! Also: atomicity under real concurrency (exactly one compare-and-swap
//! wins; optimistic transactions lose no update), an etcd member killed
//! mid-run (no error), quorum lost (writes refused naming etcd, nothing
//! half-written) and backup → wipe → restore, sled → etcd included.

#[path = "support/etcd.rs"]
mod etcd_cluster;

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
        spec::{API_VERSION, ServiceSpec},
    },
    store::{
        EtcdOptions, Store, StoreError, StoredService, SyncedDevice, TxnRecord, TxnState,
        access::{RoleBinding, TokenRecord},
        audit::{AuditFilter, AuditRecord},
        backup::{BackupError, Snapshot},
        fleet::{self, AgentRecord, TokenUse},
        secrets::{Keyring, Secret},
    },
};

const KEY: [u8; 32] = [42; 32];

type Case = fn(Store, Fixture) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// What every case may need: a validated spec to store.
#[derive(Clone)]
struct Fixture {
    spec: ServiceSpec,
}

impl Fixture {
    fn new() -> Self {
        let yaml = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/router.yaml"),
        )
        .expect("examples/router.yaml");
        let inventory = BTreeMap::from([("csr1".to_owned(), device("csr1"))]);
        let doc = SourceDoc {
            text: &yaml,
            format: DocFormat::Yaml,
            name: "router.yaml",
        };
        let spec = Validator::new()
            .expect("validator")
            .validate(&doc, &inventory)
            .expect("valid example")
            .remove(0)
            .spec;
        Self { spec }
    }

    fn named(&self, tenant: &str, name: &str) -> (ServiceSpec, String) {
        let mut s = self.spec.clone();
        s.metadata.tenant = tenant.to_owned();
        s.metadata.name = name.to_owned();
        (s, API_VERSION.to_owned())
    }
}

fn device(name: &str) -> Device {
    Device {
        name: name.into(),
        platform: Platform::IosXe,
        address: "192.0.2.1:830".into(),
        credentials_ref: "env:PW".into(),
        labels: BTreeMap::new(),
        created_unix: 0,
    }
}

fn txn(store: &Store, services: &[&str], state: TxnState) -> TxnRecord {
    TxnRecord {
        id: store.next_txn_id().unwrap(),
        state,
        operation: "apply".into(),
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        author: "conformance".into(),
        started_unix_ms: 1,
        ..TxnRecord::default_pending()
    }
}

fn secret(pw: &str) -> Secret {
    Secret {
        username: "admin".into(),
        password: pw.into(),
        private_key: String::new(),
        api_key: String::new(),
    }
}

// ===== the cases =====

async fn devices(s: Store, fx: Fixture) {
    let first = s.put_device(&device("csr1"), false).unwrap();
    assert!(first.created_unix > 0);
    assert!(matches!(
        s.put_device(&device("csr1"), false),
        Err(StoreError::DeviceExists { name }) if name == "csr1"
    ));
    let mut changed = device("csr1");
    changed.address = "192.0.2.9".into();
    assert_eq!(
        s.put_device(&changed, true).unwrap().created_unix,
        first.created_unix
    );
    s.put_device(&device("asa1"), false).unwrap();
    let all = s.devices().unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["asa1", "csr1"]);
    assert_eq!(all["csr1"].address, "192.0.2.9");
    // A service on csr1 pins it.
    let t = txn(&s, &["acme/edge-rt"], TxnState::Committed);
    s.commit_apply(&[fx.named("acme", "edge-rt")], &t)
        .await
        .unwrap();
    assert!(matches!(
        s.remove_device("csr1"),
        Err(StoreError::DeviceInUse { services, .. }) if services == ["acme/edge-rt"]
    ));
    assert!(s.remove_device("asa1").unwrap());
    assert!(!s.remove_device("asa1").unwrap());
    assert!(s.device("asa1").unwrap().is_none());
}

async fn services_and_journal(s: Store, fx: Fixture) {
    let t1 = txn(&s, &["acme/a", "beta/b"], TxnState::Committed);
    let stored = s
        .commit_apply(&[fx.named("acme", "a"), fx.named("beta", "b")], &t1)
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|x| x.generation).collect::<Vec<_>>(),
        [1, 1]
    );
    let t2 = txn(&s, &["acme/a"], TxnState::Committed);
    let again = s.commit_apply(&[fx.named("acme", "a")], &t2).await.unwrap();
    assert_eq!(again[0].generation, 2);
    assert_eq!(again[0].created_unix, stored[0].created_unix);
    assert_eq!(again[0].last_transaction, t2.id);
    let keys: Vec<String> = s
        .services()
        .unwrap()
        .iter()
        .map(StoredService::key)
        .collect();
    assert_eq!(keys, ["acme/a", "beta/b"]);
    assert_eq!(s.service("acme", "a").unwrap().unwrap().generation, 2);

    // Deleting a missing service writes nothing, not even its transaction.
    let ghost = txn(&s, &["acme/ghost"], TxnState::Committed);
    assert!(
        s.commit_delete("acme", "ghost", &ghost)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.txn(ghost.id).unwrap().is_none());
    let t3 = txn(&s, &["beta/b"], TxnState::Committed);
    let gone = s.commit_delete("beta", "b", &t3).await.unwrap().unwrap();
    assert_eq!(gone.key(), "beta/b");
    assert!(s.service("beta", "b").unwrap().is_none());
    assert_eq!(s.txn(t3.id).unwrap().unwrap(), t3);

    // Newest first, filtered by full or bare name, bounded.
    let ids = |v: Vec<TxnRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.txns(10, None).unwrap()), [t3.id, t2.id, t1.id]);
    assert_eq!(ids(s.txns(1, None).unwrap()), [t3.id]);
    assert_eq!(ids(s.txns(10, Some("a")).unwrap()), [t2.id, t1.id]);
    assert_eq!(ids(s.txns(10, Some("beta/b")).unwrap()), [t3.id, t1.id]);
    assert!(s.txns(0, None).unwrap().is_empty());
    assert_eq!(ids(s.txns_after(t1.id).unwrap()), [t2.id, t3.id]);
    assert_eq!(s.services_per_kind().unwrap().values().sum::<usize>(), 1);
}

async fn finish_and_recovery(s: Store, fx: Fixture) {
    let t0 = txn(&s, &["acme/x", "acme/y"], TxnState::Committed);
    s.commit_apply(&[fx.named("acme", "x"), fx.named("acme", "y")], &t0)
        .await
        .unwrap();
    let mut t = txn(&s, &["acme/x", "acme/y"], TxnState::Pending);
    s.put_txn(&t).await.unwrap();
    assert_eq!(s.unfinished_txns().unwrap(), [t.clone()]);
    t.state = TxnState::Committed;
    let synced = SyncedDevice {
        merged: serde_json::json!({"hostname": "csr1"}),
        last_txn: t.id,
        ..SyncedDevice::default()
    };
    let out = s
        .finish_txn(
            &t,
            &[
                ("acme/x".into(), Some(fx.named("acme", "x"))),
                ("acme/y".into(), None),
            ],
            &[("csr1".into(), synced.clone())],
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].generation, 2);
    assert!(s.unfinished_txns().unwrap().is_empty());
    assert!(s.service("acme", "y").unwrap().is_none());
    assert_eq!(s.synced("csr1").unwrap().unwrap(), synced);
    let mut accepted = synced.clone();
    accepted.accepted = Some("<config/>".into());
    s.put_synced("csr2", &accepted).await.unwrap();
    assert_eq!(
        s.synced_devices().unwrap().keys().collect::<Vec<_>>(),
        ["csr1", "csr2"]
    );
}

async fn ids_are_monotonic(s: Store, _: Fixture) {
    let mut last = 0;
    for _ in 0..50 {
        let id = s.next_txn_id().unwrap();
        assert!(id > last, "{id} after {last}");
        last = id;
    }
}

async fn audit_log(s: Store, _: Fixture) {
    let mut ids = Vec::new();
    for (i, user) in ["ann", "bob", "ann"].iter().enumerate() {
        let rec = AuditRecord {
            id: 0,
            time_unix_ms: 1_000 + i64::try_from(i).unwrap(),
            user: (*user).into(),
            role: "admin".into(),
            auth: "token:tok-1".into(),
            peer: "127.0.0.1:1".into(),
            method: "ServiceManager/ApplyService".into(),
            tenant: "acme".into(),
            service: "acme/a".into(),
            request: "{}".into(),
            code: "Ok".into(),
            message: String::new(),
            transaction: None,
        };
        ids.push(s.append_audit(rec).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let filter = |user: Option<&str>, limit| AuditFilter {
        user: user.map(str::to_owned),
        limit,
        ..AuditFilter::default()
    };
    let got: Vec<u64> = s
        .audit_records(&filter(Some("ann"), 10), |_| true)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, [ids[2], ids[0]]);
    assert_eq!(
        s.audit_records(&filter(None, 2), |_| true).unwrap().len(),
        2
    );
    assert!(
        s.audit_records(&filter(None, 10), |r| r.user == "eve")
            .unwrap()
            .is_empty()
    );
}

async fn tokens_and_bindings(s: Store, _: Fixture) {
    assert!(!s.has_tokens().unwrap());
    let tok = |id: &str, created| TokenRecord {
        id: id.into(),
        name: "ci".into(),
        role: "operator".into(),
        tenants: vec!["acme".into()],
        created_unix: created,
        expires_unix: None,
        revoked: false,
        created_by: "root".into(),
    };
    s.put_token("aaaaaaaaaaaa0001", &tok("tok-aaaaaaaaaaaa", 2))
        .await
        .unwrap();
    s.put_token("bbbbbbbbbbbb0002", &tok("tok-bbbbbbbbbbbb", 1))
        .await
        .unwrap();
    assert!(s.has_tokens().unwrap());
    let names: Vec<String> = s.tokens().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(names, ["tok-bbbbbbbbbbbb", "tok-aaaaaaaaaaaa"]);
    let revoked = s.revoke_token("tok-aaaaaaaaaaaa").await.unwrap().unwrap();
    assert!(revoked.revoked);
    assert!(
        s.token_by_hash("aaaaaaaaaaaa0001")
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        !s.token_by_hash("bbbbbbbbbbbb0002")
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(s.revoke_token("tok-cccccccccccc").await.unwrap().is_none());

    let b = RoleBinding {
        user: "alice".into(),
        role: "viewer".into(),
        tenants: vec!["*".into()],
        created_unix: 5,
        created_by: "root".into(),
    };
    s.put_binding(&b).await.unwrap();
    assert_eq!(s.binding("alice").unwrap().unwrap(), b);
    assert_eq!(s.bindings().unwrap(), [b]);
    assert!(s.remove_binding("alice").await.unwrap());
    assert!(!s.remove_binding("alice").await.unwrap());
}

async fn credentials(s: Store, _: Fixture) {
    s.put_device_credentials("csr1", &secret("hunter2-SECRET"))
        .await
        .unwrap();
    let raw = s.sealed_credentials_bytes("csr1").unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("hunter2-SECRET"));
    assert_eq!(
        s.device_credentials("csr1").unwrap().unwrap(),
        secret("hunter2-SECRET")
    );
    assert!(s.has_device_credentials("csr1").unwrap());
    assert_eq!(s.reencrypt_secrets().await.unwrap().reencrypted, 0);
    s.remove_device_credentials("csr1").await.unwrap();
    assert!(!s.has_device_credentials("csr1").unwrap());
    assert!(s.device_credentials("csr1").unwrap().is_none());
}

async fn fleet_state(s: Store, _: Fixture) {
    let rec = fleet::TokenRecord {
        expires_ms: 10_000,
        labels: BTreeMap::from([("role".into(), "web".into())]),
        used_by: None,
    };
    s.put_enroll_token("h1", &rec).unwrap();
    s.put_enroll_token("h2", &rec).unwrap();
    assert_eq!(
        s.consume_enroll_token("h0", "a", 1).unwrap(),
        TokenUse::Unknown
    );
    assert_eq!(
        s.consume_enroll_token("h1", "a", 1).unwrap(),
        TokenUse::Consumed(rec)
    );
    assert_eq!(
        s.consume_enroll_token("h1", "b", 1).unwrap(),
        TokenUse::Reused("a".into())
    );
    assert_eq!(
        s.consume_enroll_token("h2", "b", 10_000).unwrap(),
        TokenUse::Expired
    );

    // More agents than one etcd transaction carries (128 operations).
    let agents: Vec<AgentRecord> = (0..300)
        .map(|i| AgentRecord {
            id: format!("agent-{i:03}"),
            desired_version: 7,
            ..AgentRecord::default()
        })
        .collect();
    s.put_agents(&agents).unwrap();
    let mut one = agents[5].clone();
    one.applied_version = 7;
    s.put_agent(&one).unwrap();
    let all = s.agents().unwrap();
    assert_eq!(all.len(), 300);
    assert!(all.values().all(|a| a.desired_version == 7));
    assert_eq!(s.agent("agent-005").unwrap().unwrap().applied_version, 7);
    assert!(s.agent("agent-999").unwrap().is_none());
}

/// Scans longer than one etcd page (512) keep key order and bounds.
async fn long_scans(s: Store, _: Fixture) {
    let mut ids = Vec::new();
    for _ in 0..1100 {
        let t = txn(&s, &["acme/a"], TxnState::Committed);
        ids.push(t.id);
        s.put_txn(&t).await.unwrap();
    }
    let newest: Vec<u64> = s.txns(700, None).unwrap().iter().map(|t| t.id).collect();
    let mut want: Vec<u64> = ids.iter().rev().take(700).copied().collect();
    assert_eq!(newest, want);
    let after: Vec<u64> = s
        .txns_after(ids[99])
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    want = ids[100..].to_vec();
    assert_eq!(after, want);
}

/// Concurrent compare-and-swaps on one key: exactly one wins, on devices
/// and on enrollment tokens; concurrent transactions on one service lose
/// no update (every generation is counted).
async fn atomicity(s: Store, fx: Fixture) {
    let n = 12;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let s = s.clone();
        set.spawn(async move { s.put_device(&device("contended"), false).is_ok() });
    }
    let wins = set.join_all().await.into_iter().filter(|w| *w).count();
    assert_eq!(wins, 1, "device adds that won");

    let rec = fleet::TokenRecord {
        expires_ms: i64::MAX,
        labels: BTreeMap::new(),
        used_by: None,
    };
    s.put_enroll_token("race", &rec).unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let s = s.clone();
        set.spawn(async move {
            matches!(
                s.consume_enroll_token("race", &format!("agent-{i}"), 1),
                Ok(TokenUse::Consumed(_))
            )
        });
    }
    let wins = set.join_all().await.into_iter().filter(|w| *w).count();
    assert_eq!(wins, 1, "token consumptions that won");

    let fx = Arc::new(fx);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (s, fx) = (s.clone(), fx.clone());
        set.spawn(async move {
            let t = txn(&s, &["acme/hot"], TxnState::Committed);
            s.commit_apply(&[fx.named("acme", "hot")], &t)
                .await
                .unwrap();
        });
    }
    set.join_all().await;
    assert_eq!(
        s.service("acme", "hot").unwrap().unwrap().generation,
        n as u64
    );
}

/// Backup, wipe (a new empty store), restore: every record back, byte for
/// byte, secrets decrypt, and new ids are above the restored ones.
async fn backup_restore_roundtrip(s: Store, fx: Fixture) {
    fill(&s, &fx).await;
    let snap = Snapshot::from_bytes(&s.backup().unwrap().to_bytes().unwrap()).unwrap();
    let target = Store::temporary().unwrap();
    target.install_keyring(Keyring::from_key(&KEY, &[]).unwrap());
    target.restore(&snap).await.unwrap();
    assert_same(&s, &target);
    assert!(matches!(
        target.restore(&snap).await,
        Err(BackupError::NotEmpty { .. })
    ));
}

/// Representative state in every tree.
async fn fill(s: &Store, fx: &Fixture) {
    s.put_device(&device("csr1"), false).unwrap();
    let t = txn(s, &["acme/a"], TxnState::Committed);
    s.commit_apply(&[fx.named("acme", "a")], &t).await.unwrap();
    s.put_txn(&txn(s, &["acme/a"], TxnState::Pending))
        .await
        .unwrap();
    s.put_synced("csr1", &SyncedDevice::default())
        .await
        .unwrap();
    s.put_device_credentials("csr1", &secret("pw-1"))
        .await
        .unwrap();
    audit_log(s.clone(), fx.clone()).await;
    s.put_enroll_token(
        "h",
        &fleet::TokenRecord {
            expires_ms: 1,
            labels: BTreeMap::new(),
            used_by: None,
        },
    )
    .unwrap();
    s.put_agent(&AgentRecord {
        id: "agent-1".into(),
        ..AgentRecord::default()
    })
    .unwrap();
}

/// Everything a user can observe through the store's API.
#[derive(Debug, PartialEq)]
struct View {
    devices: BTreeMap<String, Device>,
    services: Vec<StoredService>,
    txns: Vec<TxnRecord>,
    unfinished: Vec<TxnRecord>,
    synced: BTreeMap<String, SyncedDevice>,
    agents: BTreeMap<String, AgentRecord>,
    audit: Vec<AuditRecord>,
    sealed: Option<Vec<u8>>,
    secret: Option<Secret>,
}

fn view(s: &Store) -> View {
    let all = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    View {
        devices: s.devices().unwrap(),
        services: s.services().unwrap(),
        txns: s.txns(1000, None).unwrap(),
        unfinished: s.unfinished_txns().unwrap(),
        synced: s.synced_devices().unwrap(),
        agents: s.agents().unwrap(),
        audit: s.audit_records(&all, |_| true).unwrap(),
        sealed: s.sealed_credentials_bytes("csr1").unwrap(),
        secret: s.device_credentials("csr1").unwrap(),
    }
}

fn assert_same(a: &Store, b: &Store) {
    let (va, vb) = (view(a), view(b));
    assert_eq!(va.unfinished.len(), 1);
    assert_eq!(va.audit.len(), 3);
    assert_eq!(vb.secret, Some(secret("pw-1")));
    assert_eq!(va, vb);
    let newest = va.txns[0].id.max(va.audit[0].id);
    assert!(b.next_txn_id().unwrap() > newest);
}

const CASES: [(&str, Case); 11] = [
    ("devices", |s, f| Box::pin(devices(s, f))),
    ("services_and_journal", |s, f| {
        Box::pin(services_and_journal(s, f))
    }),
    ("finish_and_recovery", |s, f| {
        Box::pin(finish_and_recovery(s, f))
    }),
    ("ids_are_monotonic", |s, f| {
        Box::pin(ids_are_monotonic(s, f))
    }),
    ("audit_log", |s, f| Box::pin(audit_log(s, f))),
    ("tokens_and_bindings", |s, f| {
        Box::pin(tokens_and_bindings(s, f))
    }),
    ("credentials", |s, f| Box::pin(credentials(s, f))),
    ("fleet_state", |s, f| Box::pin(fleet_state(s, f))),
    ("long_scans", |s, f| Box::pin(long_scans(s, f))),
    ("atomicity", |s, f| Box::pin(atomicity(s, f))),
    ("backup_restore_roundtrip", |s, f| {
        Box::pin(backup_restore_roundtrip(s, f))
    }),
];

fn with_key(s: Store) -> Store {
    s.install_keyring(Keyring::from_key(&KEY, &[]).unwrap());
    s
}

fn etcd_store(cluster: &etcd_cluster::Cluster, prefix: &str) -> Store {
    with_key(
        Store::open_etcd(&EtcdOptions {
            endpoints: cluster.endpoints.clone(),
            ca_pem: None,
            identity_pem: None,
            prefix: prefix.to_owned(),
            timeout: Duration::from_secs(3),
        })
        .unwrap(),
    )
}

/// Runs `case` on a fresh store of each kind, naming it on failure.
async fn run_all(mut open: impl FnMut(&str) -> Store) {
    let fx = Fixture::new();
    for (name, case) in CASES {
        eprintln!("case {name}");
        case(open(name), fx.clone()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_backend_conforms() {
    let dirs = tempfile::tempdir().unwrap();
    run_all(|name| with_key(Store::open(&dirs.path().join(name)).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_backend_conforms() {
    let Some(cluster) = etcd_cluster::start() else {
        return;
    };
    run_all(|name| etcd_store(&cluster, &format!("/conformance/{name}/"))).await;
}

/// The store's API is synchronous; on a current-thread runtime (no
/// `block_in_place`) the etcd backend must still answer.
#[tokio::test(flavor = "current_thread")]
async fn etcd_backend_on_a_current_thread_runtime() {
    let Some(cluster) = etcd_cluster::start() else {
        return;
    };
    let s = etcd_store(&cluster, "/current-thread/");
    s.put_device(&device("csr1"), false).unwrap();
    assert_eq!(s.devices().unwrap().len(), 1);
    s.put_txn(&txn(&s, &["acme/a"], TxnState::Pending))
        .await
        .unwrap();
    assert_eq!(s.unfinished_txns().unwrap().len(), 1);
}

/// Losing one of three members changes nothing; losing quorum refuses
/// writes with an error naming etcd and writes nothing, while reads are
/// served from the surviving member, marked stale; quorum back, reads are
/// current and writes are accepted again, without reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_member_loss_and_quorum_loss() {
    let Some(mut cluster) = etcd_cluster::start() else {
        return;
    };
    let fx = Fixture::new();
    let s = etcd_store(&cluster, "/degraded/");
    s.put_device(&device("before"), false).unwrap();
    // The leader: the member whose loss costs an election.
    let leader = cluster.leader();
    cluster.kill(leader);
    for i in 0..50 {
        s.put_device(&device(&format!("d{i}")), false)
            .unwrap_or_else(|e| panic!("write {i} with one member down: {e}"));
        assert!(s.device(&format!("d{i}")).unwrap().is_some());
        let t = txn(&s, &["acme/a"], TxnState::Committed);
        s.commit_apply(&[fx.named("acme", "a")], &t)
            .await
            .unwrap_or_else(|e| panic!("transaction {i} with one member down: {e}"));
    }
    assert_eq!(s.devices().unwrap().len(), 51);
    assert!(!s.reads_stale(), "one member down made reads stale");

    let second = (leader + 1) % 3;
    cluster.kill(second);
    let t = txn_no_id(99_999);
    let err = s
        .commit_apply(&[fx.named("acme", "lost")], &t)
        .await
        .expect_err("a write without quorum was accepted");
    assert!(err.to_string().contains("etcd"), "{err}");
    let err = s
        .put_device(&device("lost"), false)
        .expect_err("device add without quorum");
    assert!(err.to_string().contains("etcd"), "{err}");
    // Reads go on, from the surviving member's copy, marked stale.
    assert_eq!(s.devices().unwrap().len(), 51);
    assert!(s.reads_stale(), "a read without quorum is not marked stale");
    assert_eq!(s.service("acme", "a").unwrap().unwrap().generation, 50);

    // Quorum back: the same handle reads current data and writes again.
    cluster.restart(second);
    assert_eq!(s.devices().unwrap().len(), 51);
    assert!(!s.reads_stale());
    s.put_device(&device("same-handle"), false).unwrap();
    drop(s);
    let s = etcd_store(&cluster, "/degraded/");
    assert!(s.service("acme", "lost").unwrap().is_none(), "half-written");
    assert!(s.txn(99_999).unwrap().is_none(), "half-written");
    assert!(s.device("lost").unwrap().is_none());
    s.put_device(&device("after"), false).unwrap();
    assert_eq!(s.devices().unwrap().len(), 53);
}

fn txn_no_id(id: u64) -> TxnRecord {
    TxnRecord {
        id,
        state: TxnState::Committed,
        operation: "apply".into(),
        services: vec!["acme/lost".into()],
        ..TxnRecord::default_pending()
    }
}

/// Migration: a sled store's backup restores into etcd, and the etcd
/// store's backup restores into a fresh prefix: everything comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_to_etcd_migration_and_back() {
    let Some(cluster) = etcd_cluster::start() else {
        return;
    };
    let fx = Fixture::new();
    let sled = with_key(Store::temporary().unwrap());
    fill(&sled, &fx).await;
    let snap = sled.backup().unwrap();
    assert_eq!(snap.backend, "sled");
    let etcd = etcd_store(&cluster, "/migrated/");
    etcd.restore(&snap).await.unwrap();
    assert_same(&sled, &etcd);

    let again = Snapshot::from_bytes(&etcd.backup().unwrap().to_bytes().unwrap()).unwrap();
    assert_eq!(again.backend, "etcd");
    assert_eq!(again.counts(), snap.counts());
    let wiped = etcd_store(&cluster, "/restored/");
    wiped.restore(&again).await.unwrap();
    assert_same(&etcd, &wiped);
}

#[test]
fn damaged_backups_are_refused_naming_the_problem() {
    let bad = |text: &str| {
        Snapshot::from_bytes(text.as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert!(bad("{").contains("not a backup file"));
    let base = r#"{"format":"rampart-store-backup","version":1,"created_unix_ms":0,"backend":"sled","secret_key_id":null,"id_floor":1,"trees":{}}"#;
    assert!(Snapshot::from_bytes(base.as_bytes()).is_ok());
    assert!(bad(&base.replace("\"version\":1", "\"version\":9")).contains("version 9"));
    assert!(bad(&base.replace("rampart-store-backup", "tarball")).contains("tarball"));
    assert!(bad(&base.replace("{}}", r#"{"bogus":[]}}"#)).contains("unknown tree \"bogus\""));
    assert!(
        bad(&base.replace("{}}", r#"{"devices":[{"k":"!!","v":""}]}}"#))
            .contains("record 0 is not base64")
    );
}

/// The commands: `rampartd backup` of a sled store, wipe, `rampartd
/// restore` into sled and into etcd (migration); a store that is not empty
/// and a wrong secret key are refused with errors naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rampartd_backup_wipe_restore() {
    let Some(cluster) = etcd_cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, base64_key(&KEY)).unwrap();
    let config = |name: &str, store: &str, key: &std::path::Path| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[store]\ndata_dir = {:?}\n{store}\n[secrets]\nkey_file = {:?}\n",
                data.display().to_string(),
                key.display().to_string()
            ),
        )
        .unwrap();
        path
    };
    let sled_cfg = config("sled.toml", "", &key_file);
    let etcd = |prefix: &str| {
        format!(
            "backend = \"etcd\"\netcd_endpoints = {:?}\netcd_prefix = \"{prefix}\"",
            cluster.endpoints
        )
    };
    let etcd_cfg = config("etcd.toml", &etcd("/cli/"), &key_file);

    let before = {
        let s = with_key(Store::open(&data).unwrap());
        fill(&s, &Fixture::new()).await;
        view(&s)
    };
    let file = dir.path().join("backup.json");
    rampartd(&sled_cfg, &["backup", "-o", file.to_str().unwrap()]).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    rampartd(&sled_cfg, &["restore", file.to_str().unwrap()]).unwrap();
    assert_eq!(view(&with_key(Store::open(&data).unwrap())), before);

    rampartd(&etcd_cfg, &["restore", file.to_str().unwrap()]).unwrap();
    assert_eq!(view(&etcd_store(&cluster, "/cli/")), before);
    let err = rampartd(&etcd_cfg, &["restore", file.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("not empty"), "{err}");

    let other_key = dir.path().join("other-key");
    std::fs::write(&other_key, base64_key(&[7; 32])).unwrap();
    let wrong = config("wrong.toml", &etcd("/wrong-key/"), &other_key);
    let err = rampartd(&wrong, &["restore", file.to_str().unwrap()]).unwrap_err();
    assert!(
        err.contains("do not decrypt with the configured key"),
        "{err}"
    );
}

fn base64_key(key: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Runs the daemon binary; its stderr on failure.
fn rampartd(config: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampartd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RAMPARTD_SECRET_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stderr)
    } else {
        Err(stderr)
    }
}

/// TLS with client-certificate authentication: the CA and client
/// certificate as `[store]` names them work; without the client
/// certificate the store does not open, and the error names etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_client_certificates() {
    let Some(cluster) = etcd_cluster::start_tls() else {
        return;
    };
    let tls = cluster.tls.as_ref().expect("a TLS cluster");
    let config = |cert: bool| rampart_controller::config::StoreConfig {
        backend: rampart_controller::config::StoreBackend::Etcd,
        etcd_endpoints: cluster.endpoints.clone(),
        etcd_ca_file: Some(tls.ca.clone()),
        etcd_cert_file: cert.then(|| tls.client.0.clone()),
        etcd_key_file: cert.then(|| tls.client.1.clone()),
        etcd_prefix: Some("/tls/".into()),
        etcd_timeout_ms: Some(2000),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let s = with_key(Store::open_configured(&config(true), dir.path()).unwrap());
    assert_eq!(s.backend(), "etcd");
    s.put_device(&device("csr1"), false).unwrap();
    assert_eq!(s.devices().unwrap().len(), 1);

    let err = Store::open_configured(&config(false), dir.path())
        .map(|_| ())
        .expect_err("opened without a client certificate");
    assert!(err.to_string().starts_with("etcd "), "{err}");
    let mut missing = config(true);
    missing.etcd_ca_file = Some(dir.path().join("nope.pem"));
    let err = Store::open_configured(&missing, dir.path())
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("store.etcd_ca_file"), "{err}");
}

/// Two replicas campaign on one cluster: exactly one leads and the other
/// names it; the leader "crashes" (stops without giving the key up): the
/// other leads within the lease TTL plus a keep-alive period, and a
/// transaction the deposed leader still sends is refused (`NotLeader`) and
/// writes nothing; a clean resignation hands over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_election_failover_and_fencing() {
    use rampart_controller::store::leader::Role;
    let Some(cluster) = etcd_cluster::start() else {
        return;
    };
    let fx = Fixture::new();
    let ttl = Duration::from_secs(2);
    let a = etcd_store(&cluster, "/election/");
    let b = etcd_store(&cluster, "/election/");
    let la = a.campaign("replica-a", ttl);
    tokio::time::timeout(Duration::from_secs(5), la.until_leader())
        .await
        .expect("the only candidate leads");
    let lb = b.campaign("replica-b", ttl);
    let mut rb = lb.watch();
    tokio::time::timeout(
        Duration::from_secs(5),
        rb.wait_for(|r| {
            *r == Role::Follower {
                leader: Some("replica-a".into()),
            }
        }),
    )
    .await
    .expect("the follower names the leader")
    .unwrap();
    assert!(la.is_leader() && !lb.is_leader());
    let t = txn(&a, &["acme/a"], TxnState::Committed);
    a.commit_apply(&[fx.named("acme", "a")], &t).await.unwrap();
    // A follower starts no transaction: refused before anything is written.
    let t = txn(&b, &["acme/b"], TxnState::Pending);
    let err = b.put_txn(&t).await.expect_err("a follower journaled");
    assert!(err.to_string().contains("the leader is replica-a"), "{err}");
    assert!(a.txn(t.id).unwrap().is_none());

    let crashed = std::time::Instant::now();
    la.abandon();
    tokio::time::timeout(Duration::from_secs(10), lb.until_leader())
        .await
        .expect("no new leader within 10 s");
    let failover = crashed.elapsed();
    // The lease TTL, a follower's polling period, and room for a loaded
    // machine: the issue's goal is 5 s.
    assert!(failover <= Duration::from_secs(5), "{failover:?}");
    eprintln!("failover after a crash: {failover:?}");

    let late = txn(&a, &["acme/late"], TxnState::Committed);
    let err = a
        .commit_apply(&[fx.named("acme", "late")], &late)
        .await
        .expect_err("the deposed leader wrote");
    assert!(
        matches!(&err, StoreError::NotLeader { leader: Some(l) } if l == "replica-b"),
        "{err}"
    );
    assert!(b.service("acme", "late").unwrap().is_none());
    assert!(b.txn(late.id).unwrap().is_none());
    let t = txn(&b, &["acme/a"], TxnState::Committed);
    assert_eq!(
        b.commit_apply(&[fx.named("acme", "a")], &t).await.unwrap()[0].generation,
        2
    );

    let a2 = etcd_store(&cluster, "/election/");
    let la2 = a2.campaign("replica-a", ttl);
    let handover = std::time::Instant::now();
    lb.resign();
    tokio::time::timeout(Duration::from_secs(3), la2.until_leader())
        .await
        .expect("a resignation hands over");
    eprintln!("handover after a resignation: {:?}", handover.elapsed());
}
