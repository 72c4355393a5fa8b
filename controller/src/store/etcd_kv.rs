//! The distributed backend: the store's trees as key ranges of an etcd
//! cluster (`<prefix><tree>/<key>`).
//!
//! Atomicity maps one to one: a sled compare-and-swap is an etcd
//! transaction comparing the value (or absence); a sled multi-tree
//! transaction is an optimistic etcd transaction that reads at one pinned
//! revision and commits only if no key it read changed since
//! (`mod_revision` compares), re-running the body on a conflict and only
//! then. Every request has a deadline, so a cluster without quorum answers
//! with an error naming etcd instead of hanging the caller.
//!
//! The store's API is synchronous (sled is), the etcd client is async: the
//! client runs on a small runtime of its own and callers wait for its
//! answer, leaving their worker (`block_in_place`) when they are on a
//! multi-threaded runtime.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, SortOrder,
    SortTarget, TlsOptions, Txn, TxnOp,
};

use super::{
    StoreError,
    kv::{Dump, ID_FLOOR, Op, Scan, Visit, trees},
    sled_kv::decode_u64,
};

/// etcd's default `--max-txn-ops`: larger batches are split (see
/// [`EtcdKv::batch`]).
const MAX_TXN_OPS: usize = 128;
/// Records per range request of a scan.
const PAGE: i64 = 512;
/// A read that gets no linearizable answer this long (no quorum) is served
/// from one member's local copy instead, marked stale.
const STALE_AFTER: Duration = Duration::from_secs(1);
/// Pause between attempts of a request that failed transiently.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// CA bundle (PEM) that signed the servers' certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM).
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Key prefix, ending in `/`.
    pub prefix: String,
    /// Deadline of one request.
    pub timeout: Duration,
}

impl EtcdOptions {
    /// From `[store]`; the TLS files are read now.
    ///
    /// # Errors
    /// [`StoreError::EtcdSetup`] naming the field of an unreadable file.
    pub fn from_config(c: &crate::config::StoreConfig) -> Result<Self, StoreError> {
        let read = |field: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| StoreError::EtcdSetup {
                message: format!("store.{field}: cannot read {}: {e}", path.display()),
            })
        };
        let ca_pem = c
            .etcd_ca_file
            .as_deref()
            .map(|p| read("etcd_ca_file", p))
            .transpose()?;
        let identity_pem = match (&c.etcd_cert_file, &c.etcd_key_file) {
            (Some(cert), Some(key)) => {
                Some((read("etcd_cert_file", cert)?, read("etcd_key_file", key)?))
            }
            _ => None,
        };
        Ok(Self {
            endpoints: c.etcd_endpoints.clone(),
            ca_pem,
            identity_pem,
            prefix: c
                .etcd_prefix
                .clone()
                .unwrap_or_else(|| "/rampart/".to_owned()),
            timeout: Duration::from_millis(c.etcd_timeout_ms.unwrap_or(5000)),
        })
    }
}

enum Failure {
    Deadline(String),
    Etcd(etcd_client::Error),
}

/// Failures that say nothing about the data: a member unreachable or
/// restarting, an election under way, a request that timed out inside
/// etcd. A write that failed so may still have been applied.
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ) || s.message().contains("leader")
                || s.message().contains("timed out")
        }
        _ => false,
    }
}

/// Whether a failed write may have been applied (then its outcome is
/// read back rather than assumed).
pub(super) fn ambiguous(e: &StoreError) -> bool {
    match e {
        StoreError::Etcd { source, .. } => transient(source),
        _ => false,
    }
}

/// Stops the client's runtime without blocking, so the last store handle
/// may be dropped anywhere, async code included.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    client: Client,
    /// Without "require leader": serves serializable reads without quorum.
    stale_client: Client,
    /// Whether the last read was served without quorum.
    stale: AtomicBool,
    prefix: Vec<u8>,
    timeout: Duration,
    endpoints: String,
    id_floor: AtomicU64,
    /// While this replica leads: the leader key and its create revision,
    /// compared by every transaction (see `leader`).
    fence: std::sync::Mutex<Option<(Vec<u8>, i64)>>,
    /// Set once this replica campaigns: transactions then need the fence.
    /// With the leader's identity, when known (for the refusal).
    campaign: std::sync::Mutex<Option<Option<String>>>,
    rt: OwnRuntime,
}

/// A connection to the cluster. Cheap to clone.
#[derive(Clone)]
pub(crate) struct EtcdKv {
    inner: Arc<Inner>,
}

/// Runs `fut` on `rt` and waits for it from synchronous code.
fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let wait = move || rx.recv().ok();
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

impl EtcdKv {
    /// Connects and reads the id floor (so a cluster that cannot be reached
    /// fails here, at start-up, naming its endpoints).
    pub fn connect(opts: &EtcdOptions) -> Result<Self, StoreError> {
        let endpoints = opts.endpoints.join(",");
        if !opts.prefix.ends_with('/') {
            return Err(StoreError::EtcdSetup {
                message: format!("key prefix {:?} must end with '/'", opts.prefix),
            });
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rampart-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::EtcdSetup {
                message: format!("cannot start the etcd client runtime: {e}"),
            })?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(opts.timeout)
            .with_timeout(opts.timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if opts.ca_pem.is_some() || opts.identity_pem.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &opts.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &opts.identity_pem {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        let connect = |options: ConnectOptions| {
            let eps = opts.endpoints.clone();
            run_on(
                &rt,
                async move { Client::connect(eps, Some(options)).await },
            )
            .ok_or_else(|| StoreError::EtcdSetup {
                message: "etcd client runtime stopped".to_owned(),
            })?
            .map_err(|source| StoreError::Etcd {
                op: "connect",
                endpoints: endpoints.clone(),
                source,
            })
        };
        // A member cut off from the quorum answers at once instead of
        // queueing the request until the deadline...
        let client = connect(options.clone().with_require_leader(true))?;
        // ...except for stale reads, which such a member serves.
        let stale_client = connect(options)?;
        let kv = Self {
            inner: Arc::new(Inner {
                client,
                stale_client,
                stale: AtomicBool::new(false),
                prefix: opts.prefix.as_bytes().to_vec(),
                timeout: opts.timeout,
                endpoints,
                id_floor: AtomicU64::new(0),
                fence: std::sync::Mutex::default(),
                campaign: std::sync::Mutex::default(),
                rt: OwnRuntime(Some(rt)),
            }),
        };
        if let Some(v) = kv.get(trees::META, ID_FLOOR)? {
            kv.inner.id_floor.store(decode_u64(&v), Ordering::SeqCst);
        }
        Ok(kv)
    }

    /// One request, from synchronous code, within the deadline. With
    /// `retry` (reads and idempotent writes) transient failures (a member
    /// gone, a leader election) are retried until the deadline; otherwise
    /// the caller decides, since a write that failed that way may or may
    /// not have been applied.
    pub(super) fn call<T, F>(
        &self,
        op: &'static str,
        retry: bool,
        f: impl Fn(Client) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        self.call_with(self.inner.client.clone(), self.inner.timeout, op, retry, f)
    }

    fn call_with<T, F>(
        &self,
        client: Client,
        timeout: Duration,
        op: &'static str,
        retry: bool,
        f: impl Fn(Client) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let stopped = || StoreError::EtcdSetup {
            message: "etcd client runtime stopped".to_owned(),
        };
        let rt = self.inner.rt.0.as_ref().ok_or_else(stopped)?;
        let attempts = async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut last = String::from("none");
            loop {
                match tokio::time::timeout_at(deadline, f(client.clone())).await {
                    Err(_) => return Err(Failure::Deadline(last)),
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) if retry && transient(&e) => {
                        last = e.to_string();
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Ok(Err(e)) => return Err(Failure::Etcd(e)),
                }
            }
        };
        let endpoints = self.inner.endpoints.clone();
        match run_on(rt, attempts).ok_or_else(stopped)? {
            Ok(v) => Ok(v),
            Err(Failure::Deadline(last)) => Err(StoreError::EtcdTimeout {
                op,
                endpoints,
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                last,
            }),
            Err(Failure::Etcd(source)) => Err(StoreError::Etcd {
                op,
                endpoints,
                source,
            }),
        }
    }

    pub(super) fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// Runs a background task on the client's runtime.
    pub(super) fn spawn(
        &self,
        fut: impl Future<Output = ()> + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.inner.rt.0.as_ref().map(|rt| rt.spawn(fut))
    }

    pub(super) fn set_fence(&self, key: Vec<u8>, create_revision: i64) {
        *self
            .inner
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((key, create_revision));
    }

    pub(super) fn take_fence(&self) -> Option<i64> {
        self.inner
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .map(|(_, rev)| rev)
    }

    /// Records that this replica campaigns, and who leads (if known).
    pub(super) fn set_known_leader(&self, leader: Option<String>) {
        *self
            .inner
            .campaign
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(leader);
    }

    /// `Err(NotLeader)` on a replica that campaigns without leading.
    pub(super) fn check_leading(&self) -> Result<(), StoreError> {
        let campaign = self
            .inner
            .campaign
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match campaign {
            Some(leader) if self.fence().is_none() => Err(StoreError::NotLeader { leader }),
            _ => Ok(()),
        }
    }

    pub(super) fn fence(&self) -> Option<(Vec<u8>, i64)> {
        self.inner
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One transaction, sent once.
    pub(super) fn call_txn(
        &self,
        op: &'static str,
        txn: Txn,
    ) -> Result<etcd_client::TxnResponse, StoreError> {
        self.call(op, false, move |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })
    }

    pub(super) fn key(&self, tree: &str, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.inner.prefix.len() + tree.len() + 1 + key.len());
        k.extend_from_slice(&self.inner.prefix);
        k.extend_from_slice(tree.as_bytes());
        k.push(b'/');
        k.extend_from_slice(key);
        k
    }

    /// `[first, end)` of a tree's keys.
    fn range(&self, tree: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.key(tree, b"");
        let mut end = start.clone();
        // '/' + 1: the first key after every `<tree>/…`.
        if let Some(last) = end.last_mut() {
            *last = b'0';
        }
        (start, end)
    }

    fn strip<'k>(&self, tree: &str, full: &'k [u8]) -> &'k [u8] {
        &full[self.inner.prefix.len() + tree.len() + 1..]
    }

    /// The value and `mod_revision` (0: absent) of one key, at `revision`
    /// (`None`: latest); also the revision the answer was read at.
    /// A range read: linearizable while a quorum answers; when none does
    /// within [`STALE_AFTER`], served from a member's local copy
    /// (serializable) and marked stale until a linearizable read works again.
    /// Transactions and outcome checks never read stale (`allow_stale`
    /// off): they need the quorum anyway.
    fn read(
        &self,
        op: &'static str,
        key: &[u8],
        opts: Option<GetOptions>,
        allow_stale: bool,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        let get = |opts: Option<GetOptions>| {
            let key = key.to_vec();
            move |mut c: Client| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.get(key, opts).await }
            }
        };
        if !allow_stale {
            return self.call("get", true, get(opts));
        }
        let quick = STALE_AFTER.min(self.inner.timeout);
        let linear = self.call_with(
            self.inner.client.clone(),
            quick,
            op,
            true,
            get(opts.clone()),
        );
        match linear {
            Ok(r) => {
                if self.inner.stale.swap(false, Ordering::SeqCst) {
                    tracing::info!("etcd quorum is back: reads are current again");
                }
                Ok(r)
            }
            Err(e @ StoreError::EtcdTimeout { .. }) => {
                let serializable = Some(opts.unwrap_or_default().with_serializable());
                let client = self.inner.stale_client.clone();
                match self.call_with(client, self.inner.timeout, op, true, get(serializable)) {
                    Ok(r) => {
                        if !self.inner.stale.swap(true, Ordering::SeqCst) {
                            tracing::warn!(
                                error = %e,
                                "etcd has no quorum: serving reads from a member's local copy (stale)"
                            );
                        }
                        Ok(r)
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the last read was served without quorum.
    pub fn reads_stale(&self) -> bool {
        self.inner.stale.load(Ordering::SeqCst)
    }

    pub(super) fn get_at(
        &self,
        full: &[u8],
        revision: Option<i64>,
        allow_stale: bool,
    ) -> Result<(Option<Vec<u8>>, i64, i64), StoreError> {
        let opts = revision.map(|r| GetOptions::new().with_revision(r));
        let resp = self.read("get", full, opts, allow_stale)?;
        let at = resp
            .header()
            .map_or(0, etcd_client::ResponseHeader::revision);
        Ok(match resp.kvs().first() {
            Some(kv) => (Some(kv.value().to_vec()), kv.mod_revision(), at),
            None => (None, 0, at),
        })
    }

    pub fn get(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_at(&self.key(tree, key), None, true)?.0)
    }

    /// A compare-and-swap from the value read, so what it returns is
    /// exactly what it removed even when a first attempt's answer was lost.
    pub fn remove(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        loop {
            let Some(old) = self.get(tree, key)? else {
                return Ok(None);
            };
            if self.cas(tree, key, Some(&old), None)? {
                return Ok(Some(old));
            }
        }
    }

    pub fn cas(
        &self,
        tree: &'static str,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let full = self.key(tree, key);
        let cmp = match old {
            Some(v) => Compare::value(full.clone(), CompareOp::Equal, v.to_vec()),
            None => Compare::version(full.clone(), CompareOp::Equal, 0),
        };
        let op = match new {
            Some(v) => TxnOp::put(full.clone(), v.to_vec(), None),
            None => TxnOp::delete(full.clone(), None),
        };
        let txn = Txn::new().when([cmp]).and_then([op]);
        let expected = old.map(<[u8]>::to_vec);
        loop {
            let attempt = txn.clone();
            match self.call("compare and swap", false, move |mut c| {
                let t = attempt.clone();
                async move { c.txn(t).await }
            }) {
                Ok(resp) => return Ok(resp.succeeded()),
                Err(e) if ambiguous(&e) => {
                    // Read the outcome back: ours applied, untouched (try
                    // again), or someone else's write won.
                    let now = self.get_at(&full, None, false)?.0;
                    if now.as_deref() == new {
                        return Ok(true);
                    }
                    if now != expected {
                        return Ok(false);
                    }
                    tracing::debug!(error = %e, "etcd compare-and-swap interrupted; retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One etcd transaction per [`MAX_TXN_OPS`] writes: batches up to that
    /// size (every batch but a whole-fleet policy update) are atomic; a
    /// larger one is atomic per chunk, in order.
    pub fn batch(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let txn_ops: Vec<TxnOp> = ops
                .by_ref()
                .take(MAX_TXN_OPS)
                .map(|op| {
                    let full = self.key(op.tree, &op.key);
                    match op.value {
                        Some(v) => TxnOp::put(full, v, None),
                        None => TxnOp::delete(full, None),
                    }
                })
                .collect();
            let txn = Txn::new().and_then(txn_ops);
            // Plain puts and deletes: applying them twice is applying them.
            self.call("write", true, move |mut c| {
                let t = txn.clone();
                async move { c.txn(t).await }
            })?;
        }
        Ok(())
    }

    pub fn scan(
        &self,
        tree: &'static str,
        scan: Scan<'_>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let (mut start, mut end) = self.range(tree);
        let order = match scan {
            Scan::Rev => SortOrder::Descend,
            Scan::RevBefore(before) => {
                end = self.key(tree, before);
                SortOrder::Descend
            }
            Scan::All => SortOrder::Ascend,
            Scan::From(from) => {
                start = self.key(tree, from);
                SortOrder::Ascend
            }
        };
        self.scan_raw(start, end, order, &mut |k, v| visit(self.strip(tree, k), v))
    }

    /// Visits `[start, end)` page by page; later pages are read at the first
    /// page's revision, so the whole scan is one snapshot.
    fn scan_raw(
        &self,
        mut start: Vec<u8>,
        mut end: Vec<u8>,
        order: SortOrder,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let mut pinned: Option<i64> = None;
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE)
                .with_sort(SortTarget::Key, order);
            if let Some(r) = pinned {
                opts = opts.with_revision(r);
            }
            let resp = self.read("scan", &start, Some(opts), true)?;
            pinned = pinned.or_else(|| resp.header().map(etcd_client::ResponseHeader::revision));
            for kv in resp.kvs() {
                if !visit(kv.key(), kv.value())? {
                    return Ok(());
                }
            }
            let Some(last) = resp.kvs().last() else {
                return Ok(());
            };
            if !resp.more() {
                return Ok(());
            }
            if order == SortOrder::Descend {
                end = last.key().to_vec();
            } else {
                start = last.key().to_vec();
                start.push(0);
            }
        }
    }

    /// Every data tree at one revision.
    pub fn dump(&self) -> Result<Dump, StoreError> {
        let start = self.inner.prefix.clone();
        let mut end = start.clone();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut out: Dump = trees::DATA
            .iter()
            .map(|t| ((*t).to_owned(), Vec::new()))
            .collect();
        let skip = self.inner.prefix.len();
        self.scan_raw(start, end, SortOrder::Ascend, &mut |k, v| {
            let rest = &k[skip..];
            if let Some(slash) = rest.iter().position(|b| *b == b'/') {
                let tree = String::from_utf8_lossy(&rest[..slash]);
                if let Some(records) = out.get_mut(tree.as_ref()) {
                    records.push((rest[slash + 1..].to_vec(), v.to_vec()));
                }
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// The cluster's revision after a write to a counter key: unique and
    /// monotonic for the cluster's life, one round trip, no contention.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        let full = self.key(trees::META, b"ids");
        let resp = self.call(
            "generate id",
            // A retried put only skips ids.
            true,
            move |mut c| {
                let full = full.clone();
                async move { c.put(full, [], None).await }
            },
        )?;
        let rev = resp
            .header()
            .map_or(0, etcd_client::ResponseHeader::revision);
        Ok(self.inner.id_floor.load(Ordering::SeqCst) + u64::try_from(rev).unwrap_or(0))
    }

    pub fn set_id_floor(&self, floor: u64) -> Result<(), StoreError> {
        self.batch(vec![Op {
            tree: trees::META,
            key: ID_FLOOR.to_vec(),
            value: Some(floor.to_be_bytes().to_vec()),
        }])?;
        self.inner.id_floor.store(floor, Ordering::SeqCst);
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        self.call("status", false, |mut c| async move { c.status().await })
            .map(|s| u64::try_from(s.db_size()).unwrap_or(0))
            .unwrap_or(0)
    }
}
