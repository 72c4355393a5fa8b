//! Cisco ASA (CLI over SSH) as a transaction platform.
//!
//! The ASA has no candidate configuration and no confirmed commit:
//! - **prepare** logs in, enters privileged mode (enable), checks the edit
//!   parses, and records Rampart's part of the running configuration
//!   (`show running-config` sections): the snapshot to go back to.
//! - **commit** enters `configure terminal` and types the lines; at the first
//!   `ERROR:`/`%` answer it stops, reads the running configuration again and
//!   types the lines that lead back to the snapshot. On success it runs
//!   `write memory`; a failed write is a failed commit, reverted the same way
//!   (at abort).
//! - Committed for good; compensation types the inverse edit.
//!
//! Credentials: `credentials_ref` holds `user:password:enable` (the enable
//! password after the second colon; without it the login password is used
//! for `enable`).

use std::{collections::BTreeMap, time::Duration};

use std::sync::Arc;

use super::render::{
    self as asa, ACL_PREFIX, Acl, AsaConfig, Binding, GROUP_PREFIX, NatObject, ObjectGroup,
};
use crate::wire::{Format, edit::Edit};
use crate::{
    model::{device::Device, spec::ServiceSpec},
    platforms::{
        CompileError, Settings,
        drift::Difference,
        driver::{
            Adapter, Committed, Conflict, DeviceError, DevicePlatform, Participant, PlatformDriver,
            resolve_credentials,
        },
        rest::dev_err,
    },
    transport::{
        netconf::HostKeyPolicy,
        ssh_cli::{CliConfig, CliError, CliSession},
    },
    wire::Rendering,
};

/// Session settings for every ASA.
#[derive(Debug, Clone)]
pub struct AsaSettings {
    /// Host keys.
    pub host_key: HostKeyPolicy,
    /// Connect + login + enable.
    pub connect_timeout: Duration,
    /// One command.
    pub command_timeout: Duration,
}

/// The ASA platform driver.
#[derive(Debug, Clone)]
pub struct AsaPlatform {
    settings: AsaSettings,
}

impl AsaPlatform {
    /// A driver with these settings.
    #[must_use]
    pub fn new(settings: AsaSettings) -> AsaPlatform {
        AsaPlatform { settings }
    }
}

fn merge_configs(contributions: BTreeMap<String, AsaConfig>) -> Result<AsaConfig, Conflict> {
    let mut out = AsaConfig::default();
    let mut bound: BTreeMap<(String, String), String> = BTreeMap::new();
    for (service, c) in contributions {
        for g in c.groups {
            if !out.groups.contains(&g) {
                out.groups.push(g);
            }
        }
        out.acls.extend(c.acls);
        for b in c.bindings {
            let key = (b.direction.clone(), b.interface.clone());
            if let Some(first) = bound.get(&key) {
                return Err(Conflict {
                    what: format!("access-group {} interface {}", key.0, key.1),
                    first: first.clone(),
                    second: service.clone(),
                });
            }
            bound.insert(key, service.clone());
            out.bindings.push(b);
        }
        for o in c.nat_objects {
            // One static NAT per published address and port; interface PAT
            // (`dynamic interface`) is shared by nature.
            if let Some(clash) = out.nat_objects.iter().find(|x| x.clashes(&o)) {
                return Err(Conflict {
                    what: format!("static NAT {}", o.published().unwrap_or_default()),
                    first: clash.name.clone(),
                    second: service.clone(),
                });
            }
            if let Some(same) = out.nat_objects.iter().find(|x| x.name == o.name) {
                return Err(Conflict {
                    what: format!("object network {}", o.name),
                    first: same.name.clone(),
                    second: service.clone(),
                });
            }
            out.nat_objects.push(o);
        }
    }
    out.groups.sort();
    out.acls.sort_by(|a, b| a.name.cmp(&b.name));
    out.bindings.sort();
    out.nat_objects.sort();
    Ok(out)
}

/// Prefixes of Rampart's NAT objects (LoadBalancer, vFirewall `nat`).
const NAT_PREFIXES: [&str; 2] = ["RPO-", asa::FW_NAT_PREFIX];

/// Port names the ASA shows instead of numbers.
const PORT_NAMES: [(&str, u16); 30] = [
    ("echo", 7),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("tacacs", 49),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("www", 80),
    ("http", 80),
    ("pop3", 110),
    ("ntp", 123),
    ("imap4", 143),
    ("snmp", 161),
    ("snmptrap", 162),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("cifs", 445),
    ("isakmp", 500),
    ("syslog", 514),
    ("ldaps", 636),
    ("sqlnet", 1521),
    ("pptp", 1723),
    ("radius", 1812),
    ("radius-acct", 1813),
    ("sip", 5060),
    ("citrix-ica", 1494),
];

/// A running-config line with port names turned back into numbers.
fn normalise(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut port_args = 0;
    for w in words {
        if port_args > 0 {
            port_args -= 1;
            if let Some((_, n)) = PORT_NAMES.iter().find(|(name, _)| *name == w) {
                out.push(n.to_string());
                continue;
            }
        }
        match w {
            "eq" | "neq" | "lt" | "gt" => port_args = 1,
            "range" => port_args = 2,
            _ => {}
        }
        out.push(w.to_owned());
    }
    out.join(" ")
}

/// Parses `show running-config object-group|access-list|access-group`
/// output into Rampart's part of the configuration.
#[must_use]
pub fn parse_running(text: &str) -> AsaConfig {
    let mut c = AsaConfig::default();
    let mut group: Option<ObjectGroup> = None;
    let mut object: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        if let Some(member) = line.strip_prefix(' ') {
            if let Some(g) = group.as_mut() {
                g.members.push(normalise(member.trim()));
            } else if let Some(o) = object
                .as_ref()
                .and_then(|n| c.nat_objects.iter_mut().find(|o| &o.name == n))
            {
                let m = member.trim();
                if let Some(h) = m.strip_prefix("host ") {
                    o.host = h.to_owned();
                    o.subnet = None;
                } else if let Some(sub) = m.strip_prefix("subnet ") {
                    o.host = String::new();
                    o.subnet = Some(sub.to_owned());
                } else if let Some(n) = m.strip_prefix("nat ") {
                    o.nat = n.to_owned();
                }
            }
            continue;
        }
        if let Some(g) = group.take() {
            c.groups.push(g);
        }
        object = None;
        if let Some(name) = line.strip_prefix("object network ").map(str::trim)
            && NAT_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            if !c.nat_objects.iter().any(|o| o.name == name) {
                c.nat_objects.push(NatObject {
                    name: name.to_owned(),
                    host: String::new(),
                    nat: String::new(),
                    subnet: None,
                });
            }
            object = Some(name.to_owned());
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["object-group", "network", name] if name.starts_with(GROUP_PREFIX) => {
                group = Some(ObjectGroup {
                    name: (*name).to_owned(),
                    kind: "network".to_owned(),
                    members: Vec::new(),
                });
            }
            ["object-group", kind, name, proto] if name.starts_with(GROUP_PREFIX) => {
                group = Some(ObjectGroup {
                    name: (*name).to_owned(),
                    kind: format!("{kind} {proto}"),
                    members: Vec::new(),
                });
            }
            ["access-list", name, ..] if name.starts_with(ACL_PREFIX) => {
                let entry = line
                    .splitn(3, ' ')
                    .nth(2)
                    .map(normalise)
                    .unwrap_or_default();
                match c.acls.iter_mut().find(|a| a.name == *name) {
                    Some(a) => a.entries.push(entry),
                    None => c.acls.push(Acl {
                        name: (*name).to_owned(),
                        entries: vec![entry],
                    }),
                }
            }
            ["access-group", acl, dir, "interface", ifname] if acl.starts_with(ACL_PREFIX) => {
                c.bindings.push(Binding {
                    acl: (*acl).to_owned(),
                    direction: (*dir).to_owned(),
                    interface: (*ifname).to_owned(),
                });
            }
            _ => {}
        }
    }
    if let Some(g) = group.take() {
        c.groups.push(g);
    }
    c.groups.sort();
    c.acls.sort_by(|a, b| a.name.cmp(&b.name));
    c.bindings.sort();
    c.nat_objects.sort();
    c
}

#[tonic::async_trait]
impl DevicePlatform for AsaPlatform {
    type Config = AsaConfig;

    const NAME: &'static str = asa::PLATFORM;

    fn build(&self, spec: &ServiceSpec, device: &Device) -> Result<AsaConfig, CompileError> {
        asa::build(spec, device)
    }

    fn render(&self, spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
        asa::render(spec, device)
    }

    fn merge(&self, contributions: BTreeMap<String, AsaConfig>) -> Result<AsaConfig, Conflict> {
        merge_configs(contributions)
    }

    fn diff(&self, prev: &AsaConfig, next: &AsaConfig) -> Option<Edit> {
        let lines = asa::edit_lines(prev, next);
        (!lines.is_empty()).then_some(Edit::Cli { lines })
    }

    async fn connect(&self, device: &Device) -> Result<Box<dyn Participant>, DeviceError> {
        Ok(Box::new(
            AsaParticipant::connect(device, &self.settings).await?,
        ))
    }

    fn drift(
        &self,
        expected: &AsaConfig,
        accepted: Option<&str>,
        actual: &str,
    ) -> Result<Vec<Difference>, String> {
        let expected = match accepted {
            Some(a) => parse_running(a),
            None => expected.clone(),
        };
        let actual = parse_running(actual);
        let (e, a) = (
            qualified(&expected.running_lines()),
            qualified(&actual.running_lines()),
        );
        let mut out = Vec::new();
        for l in &e {
            if !a.contains(l) {
                out.push(Difference {
                    path: l.clone(),
                    what: "missing on the device".to_owned(),
                });
            }
        }
        for l in &a {
            if !e.contains(l) {
                out.push(Difference {
                    path: l.clone(),
                    what: "on the device, not set by Rampart".to_owned(),
                });
            }
        }
        if out.is_empty() && e != a {
            out.push(Difference {
                path: "access-list order".to_owned(),
                what: "entries are in a different order on the device".to_owned(),
            });
        }
        Ok(out)
    }
}

/// Running-config lines with each member line (` nat …`, ` network-object …`)
/// prefixed by its block's header, so that two objects with the same member
/// line are still compared one by one.
fn qualified(lines: &[String]) -> Vec<String> {
    let mut header = "";
    lines
        .iter()
        .map(|l| {
            if l.starts_with(' ') {
                format!("{header}:{l}")
            } else {
                header = l;
                l.clone()
            }
        })
        .collect()
}

/// Adapts an edit to what the device holds: an ACL the edit writes in full
/// that already exists (a repair after an out-of-band change, or a replay)
/// is skipped when identical and cleared first when not, so the result is
/// exactly the edit's ACL rather than a mix of old and new entries.
fn reconcile(lines: &[String], device: &AsaConfig) -> Vec<String> {
    let mut written: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cleared: Vec<String> = Vec::new();
    for l in lines {
        if let Some(name) = l.strip_prefix("clear configure access-list ") {
            cleared.push(name.trim().to_owned());
        } else if let Some(rest) = l.strip_prefix("access-list ")
            && let Some((name, entry)) = rest.split_once(' ')
        {
            written
                .entry(name.to_owned())
                .or_default()
                .push(normalise(entry));
        }
    }
    let mut out = Vec::with_capacity(lines.len());
    let mut handled: Vec<&str> = Vec::new();
    for l in lines {
        let name = l
            .strip_prefix("access-list ")
            .and_then(|r| r.split_once(' '))
            .map(|(n, _)| n);
        let Some(name) = name else {
            out.push(l.clone());
            continue;
        };
        let existing = device.acls.iter().find(|a| a.name == name);
        match existing {
            Some(a) if !cleared.iter().any(|c| c == name) => {
                if a.entries == written[name] {
                    continue; // identical: nothing to type
                }
                if !handled.contains(&name) {
                    handled.push(name);
                    out.push(format!("clear configure access-list {name}"));
                }
                out.push(l.clone());
            }
            _ => out.push(l.clone()),
        }
    }
    out
}

/// One ASA taking part in a transaction.
pub struct AsaParticipant {
    device: String,
    /// Kept to log in again when the session died (revert needs a session).
    config: CliConfig,
    session: Option<CliSession>,
    staged: Vec<String>,
    snapshot: Option<AsaConfig>,
    /// Lines reached the running configuration (revert on abort).
    dirty: bool,
}

fn cli_err(device: &str, stage: &str, e: &CliError) -> DeviceError {
    let paths = match e {
        CliError::Command { command, .. } => vec![command.clone()],
        _ => Vec::new(),
    };
    DeviceError {
        device: device.to_owned(),
        stage: stage.to_owned(),
        message: e.to_string(),
        paths,
    }
}

const SECTIONS: [&str; 5] = [
    "show running-config object-group",
    "show running-config access-list",
    "show running-config access-group",
    "show running-config object",
    "show running-config nat",
];

impl AsaParticipant {
    /// Logs in and enters privileged mode.
    ///
    /// # Errors
    /// Credentials, SSH, host key, enable failures.
    pub async fn connect(
        device: &Device,
        settings: &AsaSettings,
    ) -> Result<AsaParticipant, DeviceError> {
        let (user, secret) = resolve_credentials(device)?;
        let (password, enable) = match secret.split_once(':') {
            Some((p, e)) => (p.to_owned(), e.to_owned()),
            None => (secret.clone(), secret),
        };
        let (host, port) = match device.address.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (
                h.trim_matches(['[', ']']).to_owned(),
                p.parse().unwrap_or(22),
            ),
            _ => (device.address.clone(), 22),
        };
        let cfg = CliConfig {
            host,
            port,
            username: user,
            password,
            enable_password: Some(enable),
            host_key: settings.host_key.clone(),
            connect_timeout: settings.connect_timeout,
            command_timeout: settings.command_timeout,
        };
        let name = device.name.clone();
        let login = cfg.clone();
        let session = tokio::task::spawn_blocking(move || CliSession::connect(&login))
            .await
            .map_err(|e| dev_err(&name, "connect", e.to_string(), None))?
            .map_err(|e| cli_err(&name, "connect", &e))?;
        Ok(AsaParticipant {
            device: device.name.clone(),
            config: cfg,
            session: Some(session),
            staged: Vec::new(),
            snapshot: None,
            dirty: false,
        })
    }

    /// Runs `f` on the session on the blocking pool.
    async fn with<T: Send + 'static>(
        &mut self,
        stage: &str,
        f: impl FnOnce(&mut CliSession) -> Result<T, CliError> + Send + 'static,
    ) -> Result<T, DeviceError> {
        let session = self.session.take();
        let config = self.config.clone();
        let device = self.device.clone();
        let (s, res) = tokio::task::spawn_blocking(move || {
            let mut s = match session {
                Some(s) => s,
                None => {
                    // The previous session died: log in again.
                    tracing::info!(device, "ASA session lost; reconnecting");
                    match CliSession::connect(&config) {
                        Ok(s) => s,
                        Err(e) => return (None, Err(e)),
                    }
                }
            };
            let r = f(&mut s);
            (Some(s), r)
        })
        .await
        .map_err(|e| dev_err(&self.device, stage, e.to_string(), None))?;
        match &res {
            Err(CliError::Closed { .. } | CliError::Io { .. } | CliError::Timeout { .. }) => {}
            _ => self.session = s,
        }
        res.map_err(|e| cli_err(&self.device, stage, &e))
    }

    async fn running(&mut self, stage: &str) -> Result<String, DeviceError> {
        self.with(stage, |s| {
            let mut out = String::new();
            for cmd in SECTIONS {
                out.push_str(&s.run(cmd)?);
                out.push('\n');
            }
            Ok(out)
        })
        .await
    }

    /// Types `lines` in configuration mode; stops at the first error.
    async fn configure(&mut self, lines: Vec<String>, stage: &str) -> Result<(), DeviceError> {
        self.with(stage, move |s| {
            s.run("configure terminal")?;
            let mut res = Ok(());
            for l in lines {
                if let Err(e) = s.run(&l) {
                    res = Err(e);
                    break;
                }
            }
            let end = s.run("end");
            res.and(end.map(|_| ()))
        })
        .await
    }

    async fn write_memory(&mut self) -> Result<(), DeviceError> {
        self.with("write memory", |s| {
            let out = s.run("write memory")?;
            if out.contains("[OK]") {
                Ok(())
            } else {
                Err(CliError::Command {
                    command: "write memory".to_owned(),
                    message: out.lines().last().unwrap_or_default().to_owned(),
                    output: out,
                })
            }
        })
        .await
    }

    /// Types the lines leading from the current running configuration back
    /// to the snapshot taken at prepare.
    async fn revert(&mut self) -> Result<(), DeviceError> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Ok(());
        };
        let now = parse_running(&self.running("revert").await?);
        let lines = asa::edit_lines(&now, &snapshot);
        if !lines.is_empty() {
            tracing::warn!(
                device = self.device,
                lines = lines.len(),
                "reverting ASA configuration"
            );
            self.configure(lines, "revert").await?;
        }
        self.dirty = false;
        Ok(())
    }

    async fn stage(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        let Edit::Cli { lines } = edit else {
            return Err(dev_err(
                &self.device,
                "prepare",
                edit.unexpected(Format::Cli),
                None,
            ));
        };
        let lines: Vec<String> = lines
            .iter()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('!'))
            .cloned()
            .collect();
        if let Some(bad) = lines.iter().find(|l| l.contains('\u{0}') || l.len() > 4000) {
            return Err(dev_err(
                &self.device,
                "prepare",
                format!("unusable line {bad:?}"),
                None,
            ));
        }
        let running = self.running("prepare").await?;
        let snapshot = parse_running(&running);
        self.staged = reconcile(&lines, &snapshot);
        self.snapshot = Some(snapshot);
        Ok(())
    }

    async fn apply_staged(&mut self) -> Result<(), DeviceError> {
        let lines = std::mem::take(&mut self.staged);
        self.dirty = true;
        if let Err(e) = self.configure(lines, "configure").await {
            if let Err(r) = self.revert().await {
                tracing::error!(device = self.device, error = %r, "ASA revert failed");
            }
            return Err(e);
        }
        self.write_memory().await
    }
}

#[tonic::async_trait]
impl Participant for AsaParticipant {
    async fn prepare(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        self.stage(edit).await
    }

    async fn commit(&mut self) -> Result<Committed, DeviceError> {
        self.apply_staged().await?;
        self.dirty = false;
        Ok(Committed::Final)
    }

    async fn confirm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    async fn abort(&mut self) {
        if self.dirty {
            if let Err(e) = self.revert().await {
                tracing::error!(device = self.device, error = %e, "ASA revert failed");
            } else if let Err(e) = self.write_memory().await {
                tracing::warn!(device = self.device, error = %e, "write memory after revert failed");
            }
        }
        self.staged.clear();
    }

    async fn cancel(&mut self) -> bool {
        false
    }

    async fn apply_now(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        self.stage(edit).await?;
        let res = self.apply_staged().await;
        if res.is_err() {
            self.abort().await;
        }
        self.dirty = false;
        res
    }

    async fn read(&mut self) -> Result<String, DeviceError> {
        self.running("read").await
    }
}

/// The registry's constructor.
#[must_use]
pub fn new_driver(s: &Settings) -> Arc<dyn PlatformDriver> {
    Arc::new(Adapter(AsaPlatform::new(AsaSettings {
        host_key: HostKeyPolicy {
            known_hosts: s.known_hosts.clone(),
            trust_on_first_use: s.trust_on_first_use,
        },
        connect_timeout: s.connect_timeout,
        command_timeout: s.rpc_timeout,
    })))
}
