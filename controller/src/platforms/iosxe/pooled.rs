//! The IOS-XE apply path over NETCONF.
//!
//! `apply` = lock candidate → discard stale candidate edits → edit-config
//! (rollback-on-error, test-then-set where advertised) → commit → unlock →
//! read the running configuration back and check that it holds every node
//! of the edit (and none of the nodes it deletes). Any failure before the
//! commit discards the candidate, so a device is never left half-applied.
//!
//! Confirmation: when asked for a confirm window, a device advertising
//! `:confirmed-commit` gets a confirmed commit with a persist id (the device
//! rolls back by itself if the controller never confirms). Devices without
//! it (real IOS-XE) get a plain commit plus a controller-side timer that
//! restores the running configuration saved before the change unless
//! [`IosXeDriver::confirm`] is called in time.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use quick_xml::{Reader, events::Event};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::{
    platforms::iosxe::tree,
    transport::{
        error::ErrorTag,
        netconf::{
            Backoff, Commit, Datastore, EditConfig, ErrorOption, Filter, NetconfError, NetconfPool,
            PoolError, Session, SessionConfig, TestOption,
        },
    },
    wire::{Format, Rendering},
};

/// Driver tuning.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Sessions per device (IOS-XE allows a handful).
    pub max_sessions_per_device: usize,
    /// How long to keep retrying a candidate lock held by someone else.
    pub lock_wait: Duration,
    /// Reconnection policy.
    pub backoff: Backoff,
    /// Use the controller-side confirm timer even where the device offers
    /// `:confirmed-commit` (tests exercise the IOS-XE path on netconfd).
    pub force_controller_confirm: bool,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            max_sessions_per_device: 2,
            lock_wait: Duration::from_secs(10),
            backoff: Backoff::default(),
            force_controller_confirm: false,
        }
    }
}

/// How the change waits for confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Confirmation {
    /// Committed for good.
    None,
    /// A device-side confirmed commit, pending until confirmed.
    Device {
        /// The `<persist>` id (also the token for [`IosXeDriver::confirm`]).
        persist_id: String,
        /// The window.
        timeout: Duration,
    },
    /// A controller-side timer will restore the previous configuration.
    Controller {
        /// Token for [`IosXeDriver::confirm`].
        token: String,
        /// The window.
        timeout: Duration,
    },
}

impl Confirmation {
    /// The token to pass to [`IosXeDriver::confirm`], if confirmation is pending.
    #[must_use]
    pub fn token(&self) -> Option<&str> {
        match self {
            Confirmation::None => None,
            Confirmation::Device { persist_id, .. } => Some(persist_id),
            Confirmation::Controller { token, .. } => Some(token),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// Device name.
    pub device: String,
    /// NETCONF session used.
    pub session_id: u32,
    /// Confirmation state.
    pub confirmation: Confirmation,
    /// Whether the read-back running configuration held the whole edit.
    pub verified: bool,
    /// Wall time of the apply, milliseconds.
    pub elapsed_ms: u64,
}

/// Options of one apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Confirm window; `None` commits for good.
    pub confirm: Option<Duration>,
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The device was never registered.
    #[error("device {device:?} is not registered with the IOS-XE driver")]
    UnknownDevice {
        /// Device.
        device: String,
    },
    /// The rendering is not NETCONF XML for this device.
    #[error("rendering for {target} is {format}, the NETCONF driver needs netconf-xml")]
    WrongFormat {
        /// Rendering target.
        target: String,
        /// Its format.
        format: String,
    },
    /// Someone else holds the candidate lock.
    #[error("candidate of {device} is locked by session {holder} (waited {waited:?})")]
    Locked {
        /// Device.
        device: String,
        /// Holder's session id as the device reported it.
        holder: String,
        /// How long we retried.
        waited: Duration,
    },
    /// The device rejected or failed the change (nothing was applied).
    #[error("{device}: {source}")]
    Netconf {
        /// Device.
        device: String,
        /// The NETCONF failure.
        #[source]
        source: PoolError,
    },
    /// The running configuration does not hold what was committed.
    #[error("{device}: running configuration differs from the edit at {}", missing.join(", "))]
    Verify {
        /// Device.
        device: String,
        /// Paths missing or still present.
        missing: Vec<String>,
    },
    /// The edit or a reply is not well-formed XML.
    #[error("{device}: cannot read {what}: {reason}")]
    Xml {
        /// Device.
        device: String,
        /// Which document.
        what: &'static str,
        /// Parser message.
        reason: String,
    },
    /// No pending confirmation with that token.
    #[error("no pending confirmation {token:?} on {device}")]
    UnknownConfirmation {
        /// Device.
        device: String,
        /// Token.
        token: String,
    },
}

struct Pending {
    device: String,
    cancel: oneshot::Sender<()>,
}

/// Applies IOS-XE renderings to registered devices.
#[derive(Clone, Default)]
pub struct IosXeDriver {
    options: DriverOptions,
    pools: Arc<Mutex<HashMap<String, NetconfPool>>>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    counter: Arc<AtomicU64>,
}

impl std::fmt::Debug for IosXeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IosXeDriver")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

const NATIVE_FILTER: &str = "<native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"/>";

impl IosXeDriver {
    /// A driver with `options`.
    #[must_use]
    pub fn new(options: DriverOptions) -> IosXeDriver {
        IosXeDriver {
            options,
            ..IosXeDriver::default()
        }
    }

    /// Registers (or re-registers) how to reach `device`.
    pub fn register(&self, device: &str, config: SessionConfig) {
        let pool = NetconfPool::new(
            device,
            config,
            self.options.max_sessions_per_device,
            self.options.backoff,
        );
        if let Ok(mut pools) = self.pools.lock() {
            pools.insert(device.to_owned(), pool);
        }
    }

    /// The session pool of `device`.
    ///
    /// # Errors
    /// [`DriverError::UnknownDevice`].
    pub fn pool(&self, device: &str) -> Result<NetconfPool, DriverError> {
        self.pools
            .lock()
            .ok()
            .and_then(|p| p.get(device).cloned())
            .ok_or_else(|| DriverError::UnknownDevice {
                device: device.to_owned(),
            })
    }

    /// Applies a NETCONF rendering (the `<config>` element) and commits it
    /// for good.
    ///
    /// # Errors
    /// [`DriverError`]; nothing is applied unless the commit succeeded.
    pub async fn apply(
        &self,
        device: &str,
        rendering: &Rendering,
    ) -> Result<ApplyReport, DriverError> {
        if rendering.format != Format::NetconfXml {
            return Err(DriverError::WrongFormat {
                target: rendering.target.clone(),
                format: rendering.format.as_str().to_owned(),
            });
        }
        self.apply_xml(device, &rendering.content, ApplyOptions::default())
            .await
    }

    /// Applies a `<config>` element (merge semantics plus any `nc:operation`
    /// attributes it carries), optionally pending confirmation.
    ///
    /// # Errors
    /// [`DriverError`]; nothing is applied unless the commit succeeded.
    pub async fn apply_xml(
        &self,
        device: &str,
        config_xml: &str,
        options: ApplyOptions,
    ) -> Result<ApplyReport, DriverError> {
        let started = Instant::now();
        let expected = parse_xml(config_xml).map_err(|reason| DriverError::Xml {
            device: device.to_owned(),
            what: "edit",
            reason,
        })?;
        let pool = self.pool(device)?;
        let lock_wait = self.options.lock_wait;
        let force_controller = self.options.force_controller_confirm;
        let persist_id = format!(
            "rampart-{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let config = config_xml.to_owned();
        let confirm = options.confirm;
        let persist = persist_id.clone();
        let dev = device.to_owned();
        let outcome = pool
            .run(move |s| {
                lock_with_retry(s, lock_wait)?;
                let controller_confirm =
                    confirm.is_some() && (force_controller || !s.capabilities().confirmed_commit());
                let result = edit_and_commit(s, &config, confirm, controller_confirm, &persist);
                let unlocked = s.unlock(Datastore::Candidate);
                let (snapshot, device_confirm) = result?;
                unlocked?;
                let running = s.get_config(
                    Datastore::Running,
                    Some(Filter::Subtree(NATIVE_FILTER.to_owned())),
                )?;
                Ok((s.session_id(), snapshot, device_confirm, running))
            })
            .await
            .map_err(|e| lock_error(&dev, e, lock_wait))?;
        let (session_id, snapshot, device_confirm, running) = outcome;
        let running_tree =
            parse_xml(&format!("<data>{running}</data>")).map_err(|reason| DriverError::Xml {
                device: device.to_owned(),
                what: "running configuration",
                reason,
            })?;
        let mut missing = Vec::new();
        for child in &expected.children {
            check_contains(child, &running_tree, &mut String::new(), &mut missing);
        }
        let confirmation = match (options.confirm, device_confirm, snapshot) {
            (Some(timeout), true, _) => Confirmation::Device {
                persist_id,
                timeout,
            },
            (Some(timeout), false, Some(snapshot)) => {
                self.start_timer(device, &persist_id, timeout, snapshot);
                Confirmation::Controller {
                    token: persist_id,
                    timeout,
                }
            }
            _ => Confirmation::None,
        };
        let report = ApplyReport {
            device: device.to_owned(),
            session_id,
            confirmation,
            verified: missing.is_empty(),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        tracing::info!(device, session_id, verified = report.verified, elapsed_ms = report.elapsed_ms, confirmation = ?report.confirmation, "iosxe apply");
        if missing.is_empty() {
            Ok(report)
        } else {
            Err(DriverError::Verify {
                device: device.to_owned(),
                missing,
            })
        }
    }

    /// Reads the running `/native` configuration (inner XML of `<data>`).
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn running(&self, device: &str) -> Result<String, DriverError> {
        let pool = self.pool(device)?;
        pool.run(|s| {
            s.get_config(
                Datastore::Running,
                Some(Filter::Subtree(NATIVE_FILTER.to_owned())),
            )
        })
        .await
        .map_err(|source| DriverError::Netconf {
            device: device.to_owned(),
            source,
        })
    }

    /// Confirms a pending change (device-side or controller-side).
    ///
    /// # Errors
    /// [`DriverError::UnknownConfirmation`] when nothing is pending under
    /// `token`, or the device's error.
    pub async fn confirm(&self, device: &str, token: &str) -> Result<(), DriverError> {
        if let Some(p) = self.pending.lock().ok().and_then(|mut m| m.remove(token)) {
            let _ = p.cancel.send(());
            tracing::info!(device = %p.device, token, "controller-side confirmation");
            return Ok(());
        }
        let pool = self.pool(device)?;
        let id = token.to_owned();
        pool.run(move |s| {
            s.commit(Commit {
                persist_id: Some(id),
                ..Commit::default()
            })
        })
        .await
        .map_err(
            |source| match source.netconf().map(NetconfError::rpc_errors) {
                Some([e, ..])
                    if e.tag == ErrorTag::InvalidValue || e.tag == ErrorTag::OperationFailed =>
                {
                    DriverError::UnknownConfirmation {
                        device: device.to_owned(),
                        token: token.to_owned(),
                    }
                }
                _ => DriverError::Netconf {
                    device: device.to_owned(),
                    source,
                },
            },
        )
    }

    /// Rolls a pending change back now instead of waiting for the timeout.
    ///
    /// # Errors
    /// [`DriverError`].
    pub async fn cancel(&self, device: &str, token: &str) -> Result<(), DriverError> {
        let pool = self.pool(device)?;
        if let Some(p) = self.pending.lock().ok().and_then(|mut m| m.remove(token)) {
            drop(p.cancel);
            return Ok(());
        }
        let id = token.to_owned();
        pool.run(move |s| s.cancel_commit(Some(id)))
            .await
            .map_err(|source| DriverError::Netconf {
                device: device.to_owned(),
                source,
            })
    }

    /// Whether a controller-side confirmation is pending under `token`.
    #[must_use]
    pub fn is_pending(&self, token: &str) -> bool {
        self.pending.lock().is_ok_and(|m| m.contains_key(token))
    }

    fn start_timer(&self, device: &str, token: &str, timeout: Duration, snapshot: String) {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.pending.lock() {
            m.insert(
                token.to_owned(),
                Pending {
                    device: device.to_owned(),
                    cancel: tx,
                },
            );
        }
        let this = self.clone();
        let device = device.to_owned();
        let token = token.to_owned();
        tokio::spawn(async move {
            let confirmed = tokio::select! {
                r = rx => r.is_ok(),
                () = tokio::time::sleep(timeout) => false,
            };
            if let Ok(mut m) = this.pending.lock() {
                m.remove(&token);
            }
            if confirmed {
                return;
            }
            tracing::warn!(%device, %token, "change not confirmed in time; restoring the previous configuration");
            if let Err(e) = this.restore(&device, snapshot).await {
                tracing::error!(%device, %token, error = %e, "restoring the previous configuration failed");
            }
        });
    }

    async fn restore(&self, device: &str, snapshot: String) -> Result<(), DriverError> {
        let pool = self.pool(device)?;
        let lock_wait = self.options.lock_wait;
        let dev = device.to_owned();
        pool.run(move |s| {
            lock_with_retry(s, lock_wait)?;
            let r = (|| {
                s.discard_changes()?;
                let mut edit = EditConfig::new(Datastore::Candidate, replace_native(&snapshot));
                if s.capabilities().rollback_on_error() {
                    edit.error_option = Some(ErrorOption::RollbackOnError);
                }
                s.edit_config(edit)?;
                s.commit(Commit::default())
            })();
            if r.is_err() {
                let _ = s.discard_changes();
            }
            let u = s.unlock(Datastore::Candidate);
            r.and(u)
        })
        .await
        .map_err(|e| lock_error(&dev, e, lock_wait))
    }
}

fn lock_error(device: &str, e: PoolError, waited: Duration) -> DriverError {
    if let Some(err) = e.netconf().and_then(|n| {
        n.rpc_errors()
            .iter()
            .find(|r| r.tag == ErrorTag::LockDenied)
    }) {
        return DriverError::Locked {
            device: device.to_owned(),
            holder: err.info("session-id").unwrap_or("?").to_owned(),
            waited,
        };
    }
    DriverError::Netconf {
        device: device.to_owned(),
        source: e,
    }
}

fn lock_with_retry(s: &mut Session, wait: Duration) -> Result<(), NetconfError> {
    let deadline = Instant::now() + wait;
    loop {
        match s.lock(Datastore::Candidate) {
            Err(e)
                if e.rpc_errors().iter().any(|r| r.tag == ErrorTag::LockDenied)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Edits and commits under the lock. Returns the pre-change snapshot (for a
/// controller-side confirm) and whether a device-side confirmed commit was
/// used.
fn edit_and_commit(
    s: &mut Session,
    config: &str,
    confirm: Option<Duration>,
    controller_confirm: bool,
    persist_id: &str,
) -> Result<(Option<String>, bool), NetconfError> {
    let r = (|| {
        s.discard_changes()?;
        let snapshot = if confirm.is_some() && controller_confirm {
            Some(s.get_config(
                Datastore::Running,
                Some(Filter::Subtree(NATIVE_FILTER.to_owned())),
            )?)
        } else {
            None
        };
        let mut edit = EditConfig::new(Datastore::Candidate, config);
        if s.capabilities().rollback_on_error() {
            edit.error_option = Some(ErrorOption::RollbackOnError);
        }
        if s.capabilities().validate() {
            edit.test_option = Some(TestOption::TestThenSet);
        }
        s.edit_config(edit)?;
        let device_confirm = confirm.is_some() && !controller_confirm;
        let commit = match confirm {
            Some(t) if device_confirm => Commit {
                confirmed: true,
                confirm_timeout: Some(u32::try_from(t.as_secs()).unwrap_or(u32::MAX).max(1)),
                persist: Some(persist_id.to_owned()),
                persist_id: None,
            },
            _ => Commit::default(),
        };
        s.commit(commit)?;
        Ok((snapshot, device_confirm))
    })();
    if r.is_err() {
        let _ = s.discard_changes();
    }
    r
}

/// A `<config>` that replaces `/native` with a snapshot (the inner XML of a
/// get-config `<data>`), or removes it when the snapshot is empty.
fn replace_native(snapshot: &str) -> String {
    let op = format!(
        " xmlns:nc=\"{}\" nc:operation=\"replace\"",
        tree::NETCONF_NS
    );
    let body = match snapshot.find("<native") {
        Some(i) => {
            let at = i + "<native".len();
            format!("{}{op}{}", &snapshot[..at], &snapshot[at..])
        }
        None => format!(
            "<native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\" xmlns:nc=\"{}\" nc:operation=\"remove\"/>",
            tree::NETCONF_NS
        ),
    };
    format!("<config xmlns=\"{}\">{body}</config>", tree::NETCONF_NS)
}

// ===== read-back verification =====

/// A namespace-blind XML element: enough to compare an edit with read-back.
#[derive(Debug, Default)]
struct Elem {
    name: String,
    op: Option<String>,
    text: String,
    children: Vec<Elem>,
}

fn parse_xml(xml: &str) -> Result<Elem, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Elem> = vec![Elem::default()];
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.error_position()))?
        {
            Event::Start(e) => stack.push(elem(&e)),
            Event::Empty(e) => {
                let el = elem(&e);
                if let Some(top) = stack.last_mut() {
                    top.children.push(el);
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("unbalanced end tag")?;
                stack
                    .last_mut()
                    .ok_or("unbalanced end tag")?
                    .children
                    .push(done);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(t.xml10_content().trim());
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.as_ref() as &str {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "apos" => '\'',
                    "quot" => '"',
                    _ => r
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .ok_or_else(|| format!("unknown entity &{};", r.as_ref() as &str))?,
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut root = stack.pop().ok_or("empty document")?;
    if !stack.is_empty() {
        return Err("unclosed element".to_owned());
    }
    // The document element (`<config>` or `<data>`).
    match root.children.len() {
        1 => Ok(root.children.remove(0)),
        n => Err(format!("expected one document element, found {n}")),
    }
}

fn elem(e: &quick_xml::events::BytesStart<'_>) -> Elem {
    let op = e.attributes().filter_map(Result::ok).find_map(|a| {
        (a.key.local_name().as_ref() == "operation")
            .then(|| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(std::borrow::Cow::into_owned)
            })
            .flatten()
    });
    Elem {
        name: e.local_name().as_ref().to_owned(),
        op,
        text: String::new(),
        children: Vec::new(),
    }
}

/// Whether `have` holds everything `want` says (ignoring deleted parts).
fn matches(want: &Elem, have: &Elem) -> bool {
    if want.name != have.name {
        return false;
    }
    if want.children.is_empty() {
        return want.text == have.text || (want.op.is_some() && want.text.is_empty());
    }
    want.children.iter().all(|w| {
        let present = have.children.iter().any(|h| matches(&strip_op(w), h));
        if matches!(w.op.as_deref(), Some("delete" | "remove")) {
            !present
        } else {
            present
        }
    })
}

fn strip_op(e: &Elem) -> Elem {
    Elem {
        name: e.name.clone(),
        op: None,
        text: e.text.clone(),
        children: e.children.iter().map(strip_op).collect(),
    }
}

/// Records the paths of `want`'s nodes that `have` (its parent in the
/// read-back) lacks, descending as far as a matching element exists.
fn check_contains(want: &Elem, have_parent: &Elem, path: &mut String, missing: &mut Vec<String>) {
    let len = path.len();
    path.push('/');
    path.push_str(&want.name);
    if let Some(key) = want
        .children
        .first()
        .filter(|c| c.children.is_empty() && !c.text.is_empty())
    {
        path.push_str(&format!("[{}={}]", key.name, key.text));
    }
    let deleting = matches!(want.op.as_deref(), Some("delete" | "remove"));
    let stripped = strip_op(want);
    let present = have_parent.children.iter().any(|h| matches(&stripped, h));
    if deleting {
        if present {
            missing.push(format!("{path} (still present)"));
        }
    } else if !present && only_removals(want) {
        // A container that only carries removals may vanish with them
        // (an emptied non-presence container is not reported).
    } else if !present {
        let same_key: Vec<&Elem> = have_parent
            .children
            .iter()
            .filter(|h| {
                h.name == want.name
                    && want.children.first().is_none_or(|k| {
                        !k.children.is_empty()
                            || h.children
                                .iter()
                                .any(|c| c.name == k.name && c.text == k.text)
                    })
            })
            .collect();
        match same_key.as_slice() {
            [only] if !want.children.is_empty() => {
                for child in &want.children {
                    check_contains(child, only, path, missing);
                }
            }
            _ => missing.push(path.clone()),
        }
    }
    path.truncate(len);
}

/// Whether every leaf below `e` sits under a `remove`/`delete` operation
/// (and `e` has children: an empty element is content, not a removal).
fn only_removals(e: &Elem) -> bool {
    !e.children.is_empty()
        && e.children
            .iter()
            .all(|c| matches!(c.op.as_deref(), Some("delete" | "remove")) || only_removals(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_finds_missing_and_lingering_nodes() {
        let edit = parse_xml(
            "<config><native><ip><acl><name>A</name><rule><seq>1</seq><port>80</port></rule></acl><gone nc:operation='remove' xmlns:nc='x'><name>B</name></gone></ip></native></config>",
        )
        .unwrap();
        let good = parse_xml("<data><native><ip><acl><name>A</name><rule><seq>1</seq><port>80</port></rule><rule><seq>2</seq><port>1</port></rule></acl></ip></native></data>").unwrap();
        let mut missing = Vec::new();
        for c in &edit.children {
            check_contains(c, &good, &mut String::new(), &mut missing);
        }
        assert!(missing.is_empty(), "{missing:?}");
        let bad = parse_xml("<data><native><ip><acl><name>A</name><rule><seq>1</seq><port>443</port></rule></acl><gone><name>B</name></gone></ip></native></data>").unwrap();
        let mut missing = Vec::new();
        for c in &edit.children {
            check_contains(c, &bad, &mut String::new(), &mut missing);
        }
        assert_eq!(
            missing,
            [
                "/native/ip/acl[name=A]/rule[seq=1]/port",
                "/native/ip/gone[name=B] (still present)"
            ]
        );
    }

    #[test]
    fn restore_replaces_or_removes_native() {
        let r = replace_native("<native xmlns=\"n\"><a/></native>");
        assert!(r.contains("<native xmlns:nc="), "{r}");
        assert!(
            r.contains("nc:operation=\"replace\" xmlns=\"n\"><a/></native>"),
            "{r}"
        );
        assert!(replace_native("").contains("nc:operation=\"remove\""));
    }
}
