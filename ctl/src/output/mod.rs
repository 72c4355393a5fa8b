//! Printing API results as tables, JSON or YAML.
//!
//! Machine formats are built from explicit JSON values (not the protobuf
//! debug form) so their shape is stable for scripts.

#![allow(clippy::print_stdout, reason = "rampartctl's job is to print results")]

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use rampart_proto::v1 as pb;
use serde_json::{Value, json};

use crate::Format;

mod time;

use time::{relative, relative_ms, rfc3339, rfc3339_ms, rfc3339_s};

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
        "created": rfc3339(s.created.as_ref()),
        "updated": rfc3339(s.updated.as_ref()),
        "spec": serde_json::from_str::<Value>(&s.spec_json).unwrap_or(Value::Null),
    })
}

fn service_row(s: &pb::Service) -> Vec<String> {
    vec![
        s.tenant.clone(),
        s.name.clone(),
        s.kind.clone(),
        s.generation.to_string(),
        labels(&s.labels),
        relative(s.updated.as_ref()),
    ]
}

fn rule_hits_json(r: &pb::RuleHits) -> Value {
    json!({
        "sequence": r.sequence,
        "packets": r.packets,
        "bytes": r.bytes,
        "agents": r.agents,
    })
}

fn rule_hits_row(r: &pb::RuleHits) -> Vec<String> {
    [
        u64::from(r.sequence),
        r.packets,
        r.bytes,
        u64::from(r.agents),
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

fn device_json(d: &pb::Device) -> Value {
    json!({
        "name": d.name,
        "platform": platform_word(d.platform),
        "address": d.address,
        "credentialsRef": d.credentials_ref,
        "hasCredentials": d.has_credentials,
        "labels": d.labels,
        "created": rfc3339(d.created.as_ref()),
    })
}

fn device_row(d: &pb::Device) -> Vec<String> {
    vec![
        d.name.clone(),
        platform_word(d.platform).to_owned(),
        d.address.clone(),
        d.credentials_ref.clone(),
        labels(&d.labels),
        relative(d.created.as_ref()),
    ]
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
        "started": rfc3339(t.started.as_ref()),
        "finished": rfc3339(t.finished.as_ref()),
        "error": t.error,
        "changes": t.changes.iter().map(|c| json!({
            "target": c.target, "platform": c.platform, "format": c.format,
            "content": c.content, "error": c.error,
        })).collect::<Vec<_>>(),
    })
}

fn txn_row(t: &pb::Transaction) -> Vec<String> {
    vec![
        t.id.clone(),
        state_word(t.state).to_owned(),
        t.operation.clone(),
        t.services.join(","),
        t.author.clone(),
        relative(t.started.as_ref()),
        t.changes.len().to_string(),
    ]
}

fn agent_json(a: &pb::AgentInfo) -> Value {
    let backends = a.health.as_ref().map(|h| {
        h.backends
            .iter()
            .map(|b| {
                json!({
                    "virtualService": b.virtual_service,
                    "backend": b.backend,
                    "up": b.up,
                    "transitions": b.transitions,
                    "lastError": b.last_error,
                })
            })
            .collect::<Vec<_>>()
    });
    json!({
        "agentId": a.agent_id,
        "hostname": a.hostname,
        "labels": a.labels,
        "state": a.state,
        "desiredVersion": a.desired_version,
        "appliedVersion": a.applied_version,
        "lastSeen": rfc3339_ms(a.last_seen_ms),
        "lastError": a.last_error,
        "certNotAfter": rfc3339_s(a.cert_not_after),
        "lbBackends": backends.unwrap_or_default(),
    })
}

fn agent_row(a: &pb::AgentInfo) -> Vec<String> {
    // Load-balancer backends passing health checks / checked.
    let lb_up = a
        .health
        .as_ref()
        .filter(|h| !h.backends.is_empty())
        .map_or_else(
            || "-".to_owned(),
            |h| {
                let up = h.backends.iter().filter(|b| b.up).count();
                format!("{up}/{}", h.backends.len())
            },
        );
    vec![
        a.agent_id.clone(),
        a.hostname.clone(),
        a.state.clone(),
        format!("{}/{}", a.applied_version, a.desired_version),
        labels(&a.labels),
        relative_ms(a.last_seen_ms),
        a.last_error.clone(),
        lb_up,
    ]
}

fn token_json(t: &pb::TokenInfo) -> Value {
    json!({
        "id": t.id, "name": t.name, "role": t.role, "tenants": t.tenants,
        "created": rfc3339(t.created.as_ref()), "expires": rfc3339(t.expires.as_ref()),
        "revoked": t.revoked, "createdBy": t.created_by,
    })
}

fn token_row(t: &pb::TokenInfo) -> Vec<String> {
    vec![
        t.id.clone(),
        t.name.clone(),
        t.role.clone(),
        t.tenants.join(","),
        t.expires
            .as_ref()
            .map_or_else(|| "never".to_owned(), |e| relative(Some(e))),
        if t.revoked { "revoked" } else { "active" }.to_owned(),
        t.created_by.clone(),
    ]
}

fn binding_json(b: &pb::RoleBinding) -> Value {
    json!({
        "user": b.user, "role": b.role, "tenants": b.tenants,
        "created": rfc3339(b.created.as_ref()), "createdBy": b.created_by,
    })
}

fn binding_row(b: &pb::RoleBinding) -> Vec<String> {
    vec![
        b.user.clone(),
        b.role.clone(),
        b.tenants.join(","),
        b.created_by.clone(),
        relative(b.created.as_ref()),
    ]
}

fn audit_json(r: &pb::AuditRecord) -> Value {
    let ms = r
        .time
        .as_ref()
        .map_or(0, |t| i64::from(t.nanos / 1_000_000) + t.seconds * 1000);
    json!({
        "id": r.id,
        "time": rfc3339_ms(ms),
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

fn audit_row(r: &pb::AuditRecord) -> Vec<String> {
    vec![
        r.id.to_string(),
        relative(r.time.as_ref()),
        r.user.clone(),
        r.method.clone(),
        r.tenant.clone(),
        r.service.clone(),
        r.code.clone(),
        r.transaction_id.clone(),
    ]
}

fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t
}

const SERVICE_HEADER: &[&str] = &["TENANT", "NAME", "KIND", "GENERATION", "LABELS", "UPDATED"];
const TXN_HEADER: &[&str] = &[
    "ID",
    "STATE",
    "OPERATION",
    "SERVICES",
    "AUTHOR",
    "STARTED",
    "TARGETS",
];
const TOKEN_HEADER: &[&str] = &[
    "ID",
    "NAME",
    "ROLE",
    "TENANTS",
    "EXPIRES",
    "STATE",
    "CREATED BY",
];

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

    /// Every list command: a JSON array in machine formats, else a table.
    fn list<T>(
        &self,
        items: &[T],
        json: impl Fn(&T) -> Value,
        header: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) {
        if !self.machine(&Value::Array(items.iter().map(json).collect())) {
            println!("{}", table(header, items.iter().map(row)));
        }
    }

    /// Host agents.
    pub fn agents(&self, list: &[pb::AgentInfo]) {
        let header = [
            "ID",
            "HOST",
            "STATE",
            "APPLIED/DESIRED",
            "LABELS",
            "LAST SEEN",
            "LAST ERROR",
            "LB UP",
        ];
        self.list(list, agent_json, &header, agent_row);
    }

    /// A new enrollment token (shown once).
    pub fn enroll_token(&self, r: &pb::CreateEnrollTokenResponse) {
        let v = json!({ "token": r.token, "expires": rfc3339_ms(r.expires_ms) });
        if self.machine(&v) {
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
        println!("hits per rule (host agents):");
        let header = ["RULE", "PACKETS", "BYTES", "AGENTS"];
        println!("{}", table(&header, rules.iter().map(rule_hits_row)));
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
        println!("{}", apply_summary(r));
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
        self.list(list, service_json, SERVICE_HEADER, service_row);
    }

    /// A list of devices.
    pub fn devices(&self, list: &[pb::Device]) {
        let header = [
            "NAME",
            "PLATFORM",
            "ADDRESS",
            "CREDENTIALS",
            "LABELS",
            "AGE",
        ];
        self.list(list, device_json, &header, device_row);
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
                continue;
            }
            let n = d.differences.len();
            println!("{}: DRIFTED ({n} differences)", d.device);
            for x in &d.differences {
                println!("  {}: {}", x.path, x.what);
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
        self.list(list, txn_json, TXN_HEADER, txn_row);
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
        self.list(list, token_json, TOKEN_HEADER, token_row);
    }

    /// Role bindings of certificate users.
    pub fn bindings(&self, list: &[pb::RoleBinding]) {
        let header = ["USER", "ROLE", "TENANTS", "CREATED BY", "AGE"];
        self.list(list, binding_json, &header, binding_row);
    }

    /// Audit records.
    pub fn audit(&self, list: &[pb::AuditRecord]) {
        let header = [
            "ID", "AGE", "USER", "METHOD", "TENANT", "SERVICE", "RESULT", "TXN",
        ];
        self.list(list, audit_json, &header, audit_row);
    }
}

/// The last line of an apply: what was (or would be) configured.
fn apply_summary(r: &pb::ApplyServiceResponse) -> String {
    if r.dry_run {
        let names: Vec<String> = r
            .services
            .iter()
            .map(|s| format!("{}/{} ({})", s.tenant, s.name, s.kind))
            .collect();
        return format!(
            "dry-run: {} service(s) [{}] would configure {} target(s); nothing was stored",
            r.services.len(),
            names.join(", "),
            r.rendered.len()
        );
    }
    let gens: Vec<String> = r
        .services
        .iter()
        .map(|s| format!("{}/{} generation {}", s.tenant, s.name, s.generation))
        .collect();
    format!(
        "applied {} ({}) across {} target(s)",
        r.transaction_id,
        gens.join(", "),
        r.rendered.len()
    )
}
