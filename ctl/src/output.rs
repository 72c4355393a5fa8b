//! Printing API results as tables, JSON or YAML.
//!
//! Machine formats are built from explicit JSON values (not the protobuf
//! debug form) so their shape is stable for scripts.

#![allow(clippy::print_stdout, reason = "rampartctl's job is to print results")]

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use rampart_proto::v1 as pb;
use serde_json::{Value, json};

use crate::Format;

/// Prints in the format the user chose.
pub struct Output {
    format: Format,
    /// A service waiting for its per-rule hits: `get service` fetches the
    /// service, then its counters, and machine formats must print both as
    /// one document. Printed without hits if they never come (on drop).
    pending_service: std::cell::RefCell<Option<Value>>,
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(v) = self.pending_service.get_mut().take() {
            self.machine(&v);
        }
    }
}

fn ts(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(t.seconds))
}

fn platform_word(p: i32) -> &'static str {
    match pb::Platform::try_from(p) {
        Ok(pb::Platform::Iosxe) => "iosxe",
        Ok(pb::Platform::Asa) => "asa",
        Ok(pb::Platform::Ftd) => "ftd",
        Ok(pb::Platform::MerakiMx) => "meraki-mx",
        Ok(pb::Platform::Sdwan) => "sdwan",
        _ => "unknown",
    }
}

fn state_word(s: i32) -> &'static str {
    match pb::TransactionState::try_from(s) {
        Ok(pb::TransactionState::Pending) => "pending",
        Ok(pb::TransactionState::Committed) => "committed",
        Ok(pb::TransactionState::Failed) => "failed",
        Ok(pb::TransactionState::RolledBack) => "rolled-back",
        _ => "unknown",
    }
}

fn labels(l: &std::collections::HashMap<String, String>) -> String {
    let mut v: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.sort();
    v.join(",")
}

fn service_json(s: &pb::Service) -> Value {
    json!({
        "name": s.name,
        "tenant": s.tenant,
        "kind": s.kind,
        "labels": s.labels,
        "generation": s.generation,
        "apiVersion": s.api_version,
        "created": ts(s.created.as_ref()),
        "updated": ts(s.updated.as_ref()),
        "spec": serde_json::from_str::<Value>(&s.spec_json).unwrap_or(Value::Null),
    })
}

fn rule_hits_json(r: &pb::RuleHits) -> Value {
    json!({
        "sequence": r.sequence,
        "packets": r.packets,
        "bytes": r.bytes,
        "agents": r.agents,
    })
}

fn device_json(d: &pb::Device) -> Value {
    json!({
        "name": d.name,
        "platform": platform_word(d.platform),
        "address": d.address,
        "credentialsRef": d.credentials_ref,
        "hasCredentials": d.has_credentials,
        "labels": d.labels,
        "created": ts(d.created.as_ref()),
    })
}

fn rendered_json(r: &pb::RenderedConfig) -> Value {
    json!({ "target": r.target, "platform": r.platform, "format": r.format, "content": r.content })
}

fn txn_json(t: &pb::Transaction) -> Value {
    json!({
        "id": t.id,
        "state": state_word(t.state),
        "operation": t.operation,
        "services": t.services,
        "author": t.author,
        "started": ts(t.started.as_ref()),
        "finished": ts(t.finished.as_ref()),
        "error": t.error,
        "changes": t.changes.iter().map(|c| json!({
            "target": c.target, "platform": c.platform, "format": c.format,
            "content": c.content, "error": c.error,
        })).collect::<Vec<_>>(),
    })
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t
}

impl Output {
    /// An output in `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            pending_service: std::cell::RefCell::new(None),
        }
    }

    fn machine(&self, v: &Value) -> bool {
        match self.format {
            Format::Table => return false,
            Format::Json => {
                println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            }
            Format::Yaml => print!("{}", serde_norway::to_string(v).unwrap_or_default()),
            // One compact object per line: arrays are split, anything else
            // is one line (SIEMs ingest this).
            Format::Jsonl => match v {
                Value::Array(items) => {
                    for item in items {
                        println!("{}", serde_json::to_string(item).unwrap_or_default());
                    }
                }
                other => println!("{}", serde_json::to_string(other).unwrap_or_default()),
            },
        }
        true
    }

    /// Host agents.
    pub fn agents(&self, list: &[pb::AgentInfo]) {
        let v = Value::Array(
            list.iter()
                .map(|a| {
                    json!({
                        "agentId": a.agent_id,
                        "hostname": a.hostname,
                        "labels": a.labels,
                        "state": a.state,
                        "desiredVersion": a.desired_version,
                        "appliedVersion": a.applied_version,
                        "lastSeenMs": a.last_seen_ms,
                        "lastError": a.last_error,
                        "certNotAfter": a.cert_not_after,
                        "lbBackends": a.health.as_ref().map(|h| {
                            h.backends
                                .iter()
                                .map(|b| json!({
                                    "virtualService": b.virtual_service,
                                    "backend": b.backend,
                                    "up": b.up,
                                    "transitions": b.transitions,
                                    "lastError": b.last_error,
                                }))
                                .collect::<Vec<_>>()
                        }).unwrap_or_default(),
                    })
                })
                .collect(),
        );
        if self.machine(&v) {
            return;
        }
        let rows = list
            .iter()
            .map(|a| {
                let mut l: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                l.sort();
                vec![
                    a.agent_id.clone(),
                    a.hostname.clone(),
                    a.state.clone(),
                    format!("{}/{}", a.applied_version, a.desired_version),
                    l.join(","),
                    a.last_error.clone(),
                    // Load-balancer backends passing health checks / checked.
                    a.health
                        .as_ref()
                        .filter(|h| !h.backends.is_empty())
                        .map(|h| {
                            let up = h.backends.iter().filter(|b| b.up).count();
                            format!("{up}/{}", h.backends.len())
                        })
                        .unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "ID",
                    "HOST",
                    "STATE",
                    "APPLIED/DESIRED",
                    "LABELS",
                    "LAST ERROR",
                    "LB UP"
                ],
                rows
            )
        );
    }

    /// A new enrollment token (shown once).
    pub fn enroll_token(&self, r: &pb::CreateEnrollTokenResponse) {
        if self.machine(&json!({ "token": r.token, "expiresMs": r.expires_ms })) {
            return;
        }
        println!("{}", r.token);
        eprintln!("(single-use; rampartd keeps only its hash)");
    }

    /// Hits per rule aggregated from host agents: a table after the
    /// service, or a `hits` array inside the service's JSON/YAML document
    /// (`[{sequence, packets, bytes, agents}]`, empty for device-only
    /// services) so scripts read them with the spec.
    pub fn rule_hits(&self, rules: &[pb::RuleHits]) {
        if !matches!(self.format, Format::Table) {
            let hits: Vec<Value> = rules.iter().map(rule_hits_json).collect();
            let mut doc = self
                .pending_service
                .borrow_mut()
                .take()
                .unwrap_or_else(|| json!({}));
            if let Value::Object(map) = &mut doc {
                map.insert("hits".to_owned(), Value::Array(hits));
            }
            self.machine(&doc);
            return;
        }
        if rules.is_empty() {
            return;
        }
        let rows = rules
            .iter()
            .map(|r| {
                vec![
                    r.sequence.to_string(),
                    r.packets.to_string(),
                    r.bytes.to_string(),
                    r.agents.to_string(),
                ]
            })
            .collect();
        println!("hits per rule (host agents):");
        println!("{}", table(&["RULE", "PACKETS", "BYTES", "AGENTS"], rows));
    }

    /// A one-line confirmation.
    pub fn message(&self, text: &str) {
        if !self.machine(&json!({ "message": text })) {
            println!("{text}");
        }
    }

    /// The result of an apply or dry-run.
    pub fn apply(&self, r: &pb::ApplyServiceResponse) {
        let v = json!({
            "dryRun": r.dry_run,
            "transactionId": r.transaction_id,
            "services": r.services.iter().map(service_json).collect::<Vec<_>>(),
            "rendered": r.rendered.iter().map(rendered_json).collect::<Vec<_>>(),
            "diagnostics": r.diagnostics.iter().map(|d| json!({
                "message": d.message, "path": d.path, "field": d.field, "line": d.line,
            })).collect::<Vec<_>>(),
            "summary": {
                "services": r.services.len(),
                "targets": r.rendered.len(),
            },
        });
        if self.machine(&v) {
            return;
        }
        for d in &r.diagnostics {
            println!("warning: line {}: {}: {}", d.line, d.field, d.message);
        }
        for rc in &r.rendered {
            println!("--- {} ({}, {})", rc.target, rc.platform, rc.format);
            println!("{}", rc.content.trim_end());
        }
        let names: Vec<String> = r
            .services
            .iter()
            .map(|s| format!("{}/{} ({})", s.tenant, s.name, s.kind))
            .collect();
        if r.dry_run {
            println!(
                "dry-run: {} service(s) [{}] would configure {} target(s); nothing was stored",
                r.services.len(),
                names.join(", "),
                r.rendered.len()
            );
        } else {
            let gens: Vec<String> = r
                .services
                .iter()
                .map(|s| format!("{}/{} generation {}", s.tenant, s.name, s.generation))
                .collect();
            println!(
                "applied {} ({}) across {} target(s)",
                r.transaction_id,
                gens.join(", "),
                r.rendered.len()
            );
        }
    }

    /// One service in detail. In machine formats it is printed by the
    /// following [`Output::rule_hits`] (or when the output is dropped).
    pub fn service(&self, s: &pb::Service) {
        if !matches!(self.format, Format::Table) {
            if let Some(earlier) = self.pending_service.replace(Some(service_json(s))) {
                self.machine(&earlier);
            }
            return;
        }
        self.services(std::slice::from_ref(s));
        let spec: Value = serde_json::from_str(&s.spec_json).unwrap_or(Value::Null);
        print!("{}", serde_norway::to_string(&spec).unwrap_or_default());
    }

    /// A list of services.
    pub fn services(&self, list: &[pb::Service]) {
        if self.machine(&Value::Array(list.iter().map(service_json).collect())) {
            return;
        }
        let rows = list
            .iter()
            .map(|s| {
                vec![
                    s.tenant.clone(),
                    s.name.clone(),
                    s.kind.clone(),
                    s.generation.to_string(),
                    labels(&s.labels),
                ]
            })
            .collect();
        println!(
            "{}",
            table(&["TENANT", "NAME", "KIND", "GENERATION", "LABELS"], rows)
        );
    }

    /// A list of devices.
    pub fn devices(&self, list: &[pb::Device]) {
        if self.machine(&Value::Array(list.iter().map(device_json).collect())) {
            return;
        }
        let rows = list
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    platform_word(d.platform).to_owned(),
                    d.address.clone(),
                    d.credentials_ref.clone(),
                    labels(&d.labels),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &["NAME", "PLATFORM", "ADDRESS", "CREDENTIALS", "LABELS"],
                rows
            )
        );
    }

    /// Drift reports, one line per difference.
    pub fn check_sync(&self, r: &pb::CheckSyncResponse) {
        let v = Value::Array(
            r.devices
                .iter()
                .map(|d| {
                    json!({
                        "device": d.device,
                        "inSync": d.in_sync,
                        "differences": d.differences.iter()
                            .map(|x| json!({"path": x.path, "what": x.what}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect(),
        );
        if self.machine(&v) {
            return;
        }
        for d in &r.devices {
            if d.in_sync {
                println!("{}: in sync", d.device);
            } else {
                println!(
                    "{}: DRIFTED ({} differences)",
                    d.device,
                    d.differences.len()
                );
                for x in &d.differences {
                    println!("  {}: {}", x.path, x.what);
                }
            }
        }
    }

    /// One transaction with its changes.
    pub fn transaction(&self, t: &pb::Transaction) {
        if self.machine(&txn_json(t)) {
            return;
        }
        self.transactions(std::slice::from_ref(t));
        for c in &t.changes {
            println!("--- {} ({}, {})", c.target, c.platform, c.format);
            if !c.error.is_empty() {
                println!("error: {}", c.error);
            }
            println!("{}", c.content.trim_end());
        }
    }

    /// A list of transactions.
    pub fn transactions(&self, list: &[pb::Transaction]) {
        if self.machine(&Value::Array(list.iter().map(txn_json).collect())) {
            return;
        }
        let rows = list
            .iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    state_word(t.state).to_owned(),
                    t.operation.clone(),
                    t.services.join(","),
                    t.author.clone(),
                    t.started
                        .as_ref()
                        .map_or_else(String::new, |s| s.seconds.to_string()),
                    t.changes.len().to_string(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "ID",
                    "STATE",
                    "OPERATION",
                    "SERVICES",
                    "AUTHOR",
                    "STARTED",
                    "TARGETS"
                ],
                rows
            )
        );
    }

    /// The caller's identity.
    pub fn whoami(&self, w: &pb::WhoAmIResponse) {
        let v = json!({
            "user": w.user, "role": w.role, "tenants": w.tenants,
            "authMethod": w.auth_method, "permissions": w.permissions,
        });
        if self.machine(&v) {
            return;
        }
        println!("user:        {}", w.user);
        println!("role:        {}", w.role);
        println!("tenants:     {}", w.tenants.join(", "));
        println!("auth:        {}", w.auth_method);
        println!("permissions: {}", w.permissions.join(", "));
    }

    /// A freshly created token: the secret once, on its own line.
    pub fn new_token(&self, r: &pb::CreateTokenResponse) {
        let info = r.token.as_ref().map(token_json).unwrap_or(Value::Null);
        if self.machine(&json!({ "token": info, "secret": r.secret })) {
            return;
        }
        if let Some(t) = &r.token {
            self.tokens(std::slice::from_ref(t));
        }
        println!("{}", r.secret);
        eprintln!("(the token is shown once; rampartd keeps only its hash)");
    }

    /// A list of tokens (never their secrets).
    pub fn tokens(&self, list: &[pb::TokenInfo]) {
        if self.machine(&Value::Array(list.iter().map(token_json).collect())) {
            return;
        }
        let rows = list
            .iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    t.name.clone(),
                    t.role.clone(),
                    t.tenants.join(","),
                    t.expires
                        .as_ref()
                        .map_or_else(|| "never".to_owned(), |e| e.seconds.to_string()),
                    if t.revoked { "revoked" } else { "active" }.to_owned(),
                    t.created_by.clone(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "ID",
                    "NAME",
                    "ROLE",
                    "TENANTS",
                    "EXPIRES",
                    "STATE",
                    "CREATED BY"
                ],
                rows
            )
        );
    }

    /// Role bindings of certificate users.
    pub fn bindings(&self, list: &[pb::RoleBinding]) {
        let v = Value::Array(
            list.iter()
                .map(|b| {
                    json!({
                        "user": b.user, "role": b.role, "tenants": b.tenants,
                        "created": ts(b.created.as_ref()), "createdBy": b.created_by,
                    })
                })
                .collect(),
        );
        if self.machine(&v) {
            return;
        }
        let rows = list
            .iter()
            .map(|b| {
                vec![
                    b.user.clone(),
                    b.role.clone(),
                    b.tenants.join(","),
                    b.created_by.clone(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(&["USER", "ROLE", "TENANTS", "CREATED BY"], rows)
        );
    }

    /// Audit records.
    pub fn audit(&self, list: &[pb::AuditRecord]) {
        if self.machine(&Value::Array(list.iter().map(audit_json).collect())) {
            return;
        }
        let rows = list
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.time
                        .as_ref()
                        .map_or_else(String::new, |t| t.seconds.to_string()),
                    r.user.clone(),
                    r.method.clone(),
                    r.tenant.clone(),
                    r.service.clone(),
                    r.code.clone(),
                    r.transaction_id.clone(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "ID", "TIME", "USER", "METHOD", "TENANT", "SERVICE", "RESULT", "TXN"
                ],
                rows
            )
        );
    }
}

fn token_json(t: &pb::TokenInfo) -> Value {
    json!({
        "id": t.id, "name": t.name, "role": t.role, "tenants": t.tenants,
        "created": ts(t.created.as_ref()), "expires": ts(t.expires.as_ref()),
        "revoked": t.revoked, "createdBy": t.created_by,
    })
}

fn audit_json(r: &pb::AuditRecord) -> Value {
    let time = r.time.as_ref().map_or(Value::Null, |t| {
        json!(i64::from(t.nanos / 1_000_000) + t.seconds * 1000)
    });
    json!({
        "id": r.id,
        "timeUnixMs": time,
        "user": r.user,
        "role": r.role,
        "auth": r.auth_method,
        "peer": r.peer,
        "method": r.method,
        "tenant": r.tenant,
        "service": r.service,
        "request": serde_json::from_str::<Value>(&r.request).unwrap_or(Value::Null),
        "result": r.code,
        "message": r.message,
        "transactionId": r.transaction_id,
    })
}
