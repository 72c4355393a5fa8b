//! Host agents as transaction participants.
//!
//! A service that targets hosts by label changes the eBPF policy of every
//! enrolled agent whose labels match. Agents connected when the change is
//! planned take part in it like devices do: **prepare** pushes the new
//! policy as *staged* (the agent validates and compiles it but keeps
//! enforcing the old one), **commit** sends `Activate`, **abort** sends
//! `Discard`, and compensation pushes the previous policy. Agents that are
//! offline are not part of the transaction: they cannot refuse it, and
//! they receive the latest policy when they reconnect (fail-static until
//! then).
//!
//! An agent's native "edit" is a JSON document: the rule-level diff a
//! reader wants in a dry-run, and the complete policy to enforce.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    sync::Arc,
    time::Duration,
};

use rampart_proto::v1 as pb;

use crate::store::StoredService;
use crate::{
    platforms::driver::{Committed, DeviceError, Participant},
    wire::{Format, edit::Edit},
};

/// Participant names of agents start with this (inventory device names
/// cannot contain `/`).
pub const AGENT_PREFIX: &str = "agent/";

/// The platform word journaled for agents.
pub const AGENT_PLATFORM: &str = "agent";

/// What a journaled participant name stands for. Only this type knows how
/// agents are told apart from inventory devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// An inventory device, by name.
    Device(&'a str),
    /// A host agent, by id.
    Agent(&'a str),
}

impl<'a> Target<'a> {
    /// Reads a participant name.
    #[must_use]
    pub fn of(name: &'a str) -> Target<'a> {
        match name.strip_prefix(AGENT_PREFIX) {
            Some(agent) => Target::Agent(agent),
            None => Target::Device(name),
        }
    }

    /// The participant name of agent `id`.
    #[must_use]
    pub fn agent_name(id: &str) -> String {
        format!("{AGENT_PREFIX}{id}")
    }
}

/// One agent whose policy a change moves.
#[derive(Debug, Clone)]
pub struct HostPlan {
    /// Agent id.
    pub agent_id: String,
    /// Host name given at enrollment.
    pub hostname: String,
    /// The policy it enforces now (computed from the stored services).
    pub prev: pb::HostPolicy,
    /// The policy after the change.
    pub next: pb::HostPolicy,
}

/// What the engine needs from the agent fleet.
#[tonic::async_trait]
pub trait HostFabric: Send + Sync {
    /// Agents, connected now, whose policy differs between `before` and
    /// `after` (the stored services without and with the change).
    ///
    /// # Errors
    /// A host policy conflict (message naming both services).
    fn plan(
        &self,
        before: &[StoredService],
        after: &[StoredService],
    ) -> Result<Vec<HostPlan>, String>;

    /// Pushes `policy` staged; returns the version the agent staged.
    ///
    /// # Errors
    /// The agent is offline, refused the policy or did not answer.
    async fn stage(
        &self,
        agent: &str,
        policy: &pb::HostPolicy,
        timeout: Duration,
    ) -> Result<u64, DeviceError>;

    /// Switches the agent to its staged `version`.
    ///
    /// # Errors
    /// The agent failed to switch or did not answer.
    async fn activate(
        &self,
        agent: &str,
        version: u64,
        timeout: Duration,
    ) -> Result<(), DeviceError>;

    /// Drops a staged version. Best effort.
    async fn discard(&self, agent: &str, version: u64);

    /// Pushes `policy` to enforce at once (compensation) and waits for the
    /// acknowledgement.
    ///
    /// # Errors
    /// The agent is offline, refused or did not answer.
    async fn push_now(
        &self,
        agent: &str,
        policy: &pb::HostPolicy,
        timeout: Duration,
    ) -> Result<(), DeviceError>;

    /// The hash of the policy the agent acknowledged last.
    fn applied_hash(&self, agent: &str) -> Option<String>;

    /// Marks the agents as taking part in an unfinished transaction (the
    /// fleet's background convergence leaves them alone) or releases them.
    fn hold(&self, agents: &[String], held: bool);
}

/// An agent's change in a transaction (its journaled edit).
pub use crate::wire::edit::HostPolicyEdit as AgentEdit;

impl AgentEdit {
    /// The edit moving `plan`'s agent to `next`, with the diff from `prev`.
    #[must_use]
    pub fn new(plan: &HostPlan, prev: &pb::HostPolicy, next: &pb::HostPolicy) -> Self {
        Self {
            agent: plan.agent_id.clone(),
            hostname: plan.hostname.clone(),
            changes: policy_diff(prev, next),
            policy: next.clone(),
        }
    }

    /// Reads the dry-run text of an agent edit (the API filters renderings
    /// by tenant).
    ///
    /// # Errors
    /// The text is not an agent edit (message).
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("agent edit: {e}"))
    }
}

impl AgentEdit {
    /// The edit as a caller who may see only some tenants sees it: rules
    /// and diff lines of other tenants are left out, so a dry-run on a
    /// shared host never shows another tenant's policy.
    #[must_use]
    pub fn visible_to(&self, may: &dyn Fn(&str) -> bool) -> Self {
        let mut out = self.clone();
        for i in &mut out.policy.interfaces {
            i.rules.retain(|r| r.tenant.is_empty() || may(&r.tenant));
        }
        out.changes.retain(|l| {
            l.rsplit_once(" (")
                .and_then(|(_, owner)| owner.split_once('/'))
                .is_none_or(|(tenant, _)| may(tenant))
        });
        out
    }
}

/// `content` of a rendering as a caller limited to some tenants sees it:
/// agent edits are filtered by [`AgentEdit::visible_to`]; anything else is
/// returned unchanged.
#[must_use]
pub fn redact(content: &str, may: &dyn Fn(&str) -> bool) -> String {
    AgentEdit::parse(content).map_or_else(|_| content.to_owned(), |e| e.visible_to(may).render())
}

/// Agents that get the same change (same diff lines and policy, as the
/// caller sees them: call after [`redact`]) are shown in full once; every
/// later one's content becomes a reference,
/// `{"agent", "hostname", "same_change_as": "<first target>"}`, so a change
/// to thousands of hosts with the same labels stays a readable answer (5,000
/// full copies were 7.9 MB, over gRPC's 4 MB default). Entries are
/// `(target, content)`; contents that are not agent edits are left alone.
pub fn refer_to_first_identical<'a>(entries: impl IntoIterator<Item = (&'a str, &'a mut String)>) {
    let mut first_with: HashMap<(Vec<String>, String), &str> = HashMap::new();
    for (target, content) in entries {
        let Ok(edit) = AgentEdit::parse(content) else {
            continue;
        };
        let key = (
            edit.changes,
            serde_json::to_string(&edit.policy).unwrap_or_default(),
        );
        match first_with.get(&key) {
            Some(first) => {
                *content = serde_json::to_string_pretty(&serde_json::json!({
                    "agent": edit.agent,
                    "hostname": edit.hostname,
                    "same_change_as": first,
                }))
                .unwrap_or_default();
            }
            None => {
                first_with.insert(key, target);
            }
        }
    }
}

fn rule_line(r: &pb::FirewallRule) -> String {
    let mut s = format!(
        "seq {} {} proto {}",
        r.sequence,
        if r.action == pb::Action::Deny as i32 {
            "deny"
        } else {
            "allow"
        },
        r.protocol
    );
    if !r.sources.is_empty() {
        let _ = write!(s, " src {}", r.sources.join(","));
    }
    if !r.destinations.is_empty() {
        let _ = write!(s, " dst {}", r.destinations.join(","));
    }
    let ports = |p: &[pb::PortRange]| {
        p.iter()
            .map(|p| {
                if p.first == p.last {
                    p.first.to_string()
                } else {
                    format!("{}-{}", p.first, p.last)
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    if !r.source_ports.is_empty() {
        let _ = write!(s, " sport {}", ports(&r.source_ports));
    }
    if !r.destination_ports.is_empty() {
        let _ = write!(s, " dport {}", ports(&r.destination_ports));
    }
    if let Some(t) = r.icmp_type {
        let _ = write!(s, " icmp-type {t}");
    }
    if !r.service.is_empty() {
        let _ = write!(s, " ({}/{})", r.tenant, r.service);
    }
    s
}

fn interface_lines(p: &pb::HostPolicy) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in &p.interfaces {
        let dir = match pb::Direction::try_from(i.direction) {
            Ok(pb::Direction::Egress) => "egress",
            Ok(pb::Direction::Both) => "both",
            _ => "ingress",
        };
        let head = format!("{} {dir}", i.interface);
        let lines = out.entry(head).or_default();
        lines.push(format!(
            "default {}",
            if i.default_action == pb::Action::Deny as i32 {
                "deny"
            } else {
                "allow"
            }
        ));
        lines.extend(i.rules.iter().map(rule_line));
    }
    out
}

/// The rule-level difference between two host policies, one `+`/`-` line
/// per rule (or default action), prefixed by interface and direction.
#[must_use]
pub fn policy_diff(prev: &pb::HostPolicy, next: &pb::HostPolicy) -> Vec<String> {
    let (a, b) = (interface_lines(prev), interface_lines(next));
    let mut out = Vec::new();
    let heads: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for head in heads {
        let empty = Vec::new();
        let (old, new) = (a.get(head).unwrap_or(&empty), b.get(head).unwrap_or(&empty));
        out.extend(
            old.iter()
                .filter(|l| !new.contains(l))
                .map(|l| format!("- {head}: {l}")),
        );
        out.extend(
            new.iter()
                .filter(|l| !old.contains(l))
                .map(|l| format!("+ {head}: {l}")),
        );
    }
    out
}

/// One agent's side of a transaction.
pub struct AgentParticipant {
    fabric: Arc<dyn HostFabric>,
    agent: String,
    timeout: Duration,
    staged: Option<u64>,
}

impl AgentParticipant {
    /// A participant for `agent` (id) whose answers are awaited `timeout`.
    #[must_use]
    pub fn new(fabric: Arc<dyn HostFabric>, agent: String, timeout: Duration) -> Self {
        Self {
            fabric,
            agent,
            timeout,
            staged: None,
        }
    }

    fn policy_edit<'e>(&self, edit: &'e Edit, stage: &str) -> Result<&'e AgentEdit, DeviceError> {
        match edit {
            Edit::HostPolicy(e) => Ok(e),
            other => Err(self.error(stage, other.unexpected(Format::AgentPolicy))),
        }
    }

    fn error(&self, stage: &str, message: String) -> DeviceError {
        DeviceError {
            device: Target::agent_name(&self.agent),
            stage: stage.to_owned(),
            message,
            paths: Vec::new(),
        }
    }
}

#[tonic::async_trait]
impl Participant for AgentParticipant {
    async fn prepare(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        let e = self.policy_edit(edit, "stage")?;
        let v = self
            .fabric
            .stage(&self.agent, &e.policy, self.timeout)
            .await?;
        self.staged = Some(v);
        Ok(())
    }

    async fn commit(&mut self) -> Result<Committed, DeviceError> {
        let v = self
            .staged
            .ok_or_else(|| self.error("activate", "nothing staged".to_owned()))?;
        self.fabric.activate(&self.agent, v, self.timeout).await?;
        self.staged = None;
        Ok(Committed::Final)
    }

    async fn confirm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    async fn abort(&mut self) {
        if let Some(v) = self.staged.take() {
            self.fabric.discard(&self.agent, v).await;
        }
    }

    async fn cancel(&mut self) -> bool {
        false
    }

    async fn apply_now(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        let e = self.policy_edit(edit, "push")?;
        self.fabric
            .push_now(&self.agent, &e.policy, self.timeout)
            .await
    }

    async fn read(&mut self) -> Result<String, DeviceError> {
        Ok(self.fabric.applied_hash(&self.agent).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(seq: u32, port: u32) -> pb::FirewallRule {
        pb::FirewallRule {
            sequence: seq,
            action: pb::Action::Permit as i32,
            protocol: 6,
            destination_ports: vec![pb::PortRange {
                first: port,
                last: port,
            }],
            ..Default::default()
        }
    }

    fn policy(rules: Vec<pb::FirewallRule>) -> pb::HostPolicy {
        pb::HostPolicy {
            interfaces: vec![pb::InterfacePolicy {
                interface: "eth0".into(),
                direction: pb::Direction::Ingress as i32,
                default_action: pb::Action::Deny as i32,
                rules,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn diff_names_added_and_removed_rules_only() {
        let a = policy(vec![rule(10, 80), rule(20, 443)]);
        let b = policy(vec![rule(10, 80), rule(30, 8443)]);
        let d = policy_diff(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("- eth0 ingress: seq 20") && d[0].contains("dport 443"));
        assert!(d[1].starts_with("+ eth0 ingress: seq 30") && d[1].contains("dport 8443"));
        assert!(policy_diff(&a, &a).is_empty());
    }

    #[test]
    fn other_tenants_rules_are_not_shown() {
        let mut mine = rule(10, 80);
        mine.tenant = "acme".into();
        mine.service = "web".into();
        let mut theirs = rule(20, 443);
        theirs.tenant = "globex".into();
        theirs.service = "db".into();
        let plan = HostPlan {
            agent_id: "a1".into(),
            hostname: "h1".into(),
            prev: pb::HostPolicy::default(),
            next: policy(vec![mine, theirs]),
        };
        let e = AgentEdit::new(&plan, &plan.prev, &plan.next).render();
        let seen = redact(&e, &|t| t == "acme");
        assert!(
            seen.contains("acme/web") && !seen.contains("globex"),
            "{seen}"
        );
        let back = AgentEdit::parse(&seen).unwrap();
        assert_eq!(back.policy.interfaces[0].rules.len(), 1);
        assert_eq!(redact(&e, &|_| true), e);
        assert_eq!(redact("<config/>", &|_| false), "<config/>");
    }

    #[test]
    fn edit_round_trips_through_its_text() {
        let plan = HostPlan {
            agent_id: "a1".into(),
            hostname: "h1".into(),
            prev: pb::HostPolicy::default(),
            next: policy(vec![rule(10, 80)]),
        };
        let e = AgentEdit::new(&plan, &plan.prev, &plan.next);
        let back = AgentEdit::parse(&e.render()).expect("parses");
        assert_eq!(back.policy, plan.next);
        assert_eq!(back.changes.len(), 2, "default action and one rule");
        assert!(AgentEdit::parse("<config/>").is_err());
    }
}
