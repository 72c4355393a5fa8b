//! Firepower Threat Defense (FDM REST API) as a transaction platform.
//!
//! FDM stages every change and activates nothing until a deploy:
//! - **prepare** makes the staged edits (objects, access rules, NAT rules;
//!   `PUT`s carry the object's current `version` as the API requires) and
//!   keeps an undo log; **abort** replays the undo log, so the staged
//!   configuration is as it was.
//! - **commit** is `POST /operational/deploy`, polled to completion. A
//!   `DEPLOY_FAILED` job is a failure whose paths are the device's per-rule
//!   messages; the engine then aborts, which reverts the staged edits (the
//!   deployed configuration never changed).
//! - Committed for good; compensation re-stages the inverse edit and deploys.
//!
//! Tokens: password grant at connect, `refresh_token` grant when a call is
//! answered 401 (expired mid-transaction), password grant again when the
//! refresh token is gone too; the failed call is then repeated once.

use std::{collections::BTreeMap, time::Instant};

use reqwest::Method;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::render::{self as ftd, AccessRule, FtdConfig, NatRule};
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
        rest::{RestSettings, base_url, baseline, dev_err, json_differences},
    },
    transport::http::{Body, Reply, RestClient},
    wire::Rendering,
    wire::http::Call,
};

/// Device label: the FDM API version path element (default `latest`).
pub const API_VERSION_LABEL: &str = "rampart.io/fdm-api-version";

/// The FTD platform driver.
#[derive(Debug, Clone)]
pub struct FtdPlatform {
    settings: RestSettings,
}

impl FtdPlatform {
    /// A driver with these settings.
    #[must_use]
    pub fn new(settings: RestSettings) -> FtdPlatform {
        FtdPlatform { settings }
    }

    /// Default settings for FDM (it documents no rate limit; stay polite).
    #[must_use]
    pub fn default_settings() -> RestSettings {
        RestSettings {
            rps: 20.0,
            burst: 10.0,
            ..RestSettings::meraki()
        }
    }
}

fn merge_configs(contributions: BTreeMap<String, FtdConfig>) -> Result<FtdConfig, Conflict> {
    let mut out = FtdConfig::default();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let clash = |what: String, first: Option<&String>, second: &str| Conflict {
        what,
        first: first.cloned().unwrap_or_default(),
        second: second.to_owned(),
    };
    for (service, c) in contributions {
        let service = &service;
        for n in c.networks {
            match out.networks.iter().find(|x| x.name == n.name) {
                Some(x) if *x != n => {
                    return Err(clash(
                        format!("network object {}", n.name),
                        owner.get(&n.name),
                        service,
                    ));
                }
                Some(_) => {}
                None => {
                    owner.insert(n.name.clone(), service.clone());
                    out.networks.push(n);
                }
            }
        }
        for p in c.ports {
            if !out.ports.contains(&p) {
                out.ports.push(p);
            }
        }
        for r in c.rules {
            if out.rules.iter().any(|x| x.name == r.name) {
                return Err(clash(
                    format!("access rule {}", r.name),
                    owner.get(&r.name),
                    service,
                ));
            }
            owner.insert(r.name.clone(), service.clone());
            out.rules.push(r);
        }
        for r in c.nat {
            if let Some(x) = out.nat.iter().find(|x| x.original == r.original) {
                return Err(clash(
                    format!("static NAT of {}", r.original),
                    owner.get(&x.name),
                    service,
                ));
            }
            // Two static NATs must not publish the same address (unless both
            // translate different ports of it).
            if let Some(x) = out.nat.iter().find(|x| {
                !x.dynamic
                    && !r.dynamic
                    && x.translated == r.translated
                    && (x.translated_port.is_none()
                        || r.translated_port.is_none()
                        || x.translated_port == r.translated_port)
            }) {
                return Err(clash(
                    format!(
                        "static NAT publishing {}{}",
                        r.translated,
                        r.translated_port
                            .as_deref()
                            .map(|p| format!(" port {p}"))
                            .unwrap_or_default()
                    ),
                    owner.get(&x.name),
                    service,
                ));
            }
            owner.insert(r.name.clone(), service.clone());
            out.nat.push(r);
        }
    }
    out.networks.sort();
    out.ports.sort();
    Ok(out)
}

/// Rampart's view of the device that drift compares.
fn owned_view(c: &FtdConfig) -> Value {
    json!({"rules": c.rules, "nat": c.nat, "networks": c.networks, "ports": c.ports})
}

#[tonic::async_trait]
impl DevicePlatform for FtdPlatform {
    type Config = FtdConfig;

    const NAME: &'static str = ftd::PLATFORM;

    fn build(&self, spec: &ServiceSpec, device: &Device) -> Result<FtdConfig, CompileError> {
        ftd::build(spec, device)
    }

    fn render(&self, spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
        ftd::render(spec, device)
    }

    fn merge(&self, contributions: BTreeMap<String, FtdConfig>) -> Result<FtdConfig, Conflict> {
        merge_configs(contributions)
    }

    fn diff(&self, prev: &FtdConfig, next: &FtdConfig) -> Option<Edit> {
        let calls = ftd::edit_calls(prev, next);
        (!calls.is_empty()).then(|| Edit::Http {
            notes: vec!["FDM REST API: staged at prepare, POST /operational/deploy at commit; {name:X} is the id of X".to_owned()],
            calls,
        })
    }

    async fn connect(&self, device: &Device) -> Result<Box<dyn Participant>, DeviceError> {
        Ok(Box::new(
            FtdParticipant::connect(device, &self.settings).await?,
        ))
    }

    fn drift(
        &self,
        expected: &FtdConfig,
        accepted: Option<&str>,
        actual: &str,
    ) -> Result<Vec<Difference>, String> {
        let expected = baseline(accepted, || owned_view(expected))?;
        let mut actual: Value =
            serde_json::from_str(actual).map_err(|e| format!("device reply: {e}"))?;
        // Content-named objects may also serve rules Rampart does not own:
        // only the ones Rampart expects are compared.
        for key in ["networks", "ports"] {
            let names: Vec<Value> = expected[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| o["name"].clone())
                .collect();
            if let Some(list) = actual.get_mut(key).and_then(Value::as_array_mut) {
                list.retain(|o| names.contains(&o["name"]));
            }
        }
        Ok(json_differences("", &expected, &actual))
    }
}

#[derive(Debug, Default)]
struct Tokens {
    access: String,
    refresh: Option<String>,
}

/// One undo step.
#[derive(Debug)]
enum Undo {
    /// Delete what was created.
    Delete(String),
    /// Put back the old content (`path`, old object).
    Restore(String, Value),
    /// Re-create what was deleted (`collection path`, old object).
    Recreate(String, Value),
}

/// One FTD taking part in a transaction.
pub struct FtdParticipant {
    device: String,
    client: RestClient,
    user: String,
    password: String,
    tokens: Mutex<Tokens>,
    settings: RestSettings,
    undo: Vec<Undo>,
    ids: BTreeMap<String, (String, String)>,
}

fn fdm_message(r: &Reply) -> (String, Vec<String>) {
    let v = r.json();
    let msgs = v["error"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if msgs.is_empty() {
        return (format!("HTTP {}: {}", r.status, r.body.trim()), Vec::new());
    }
    let text: Vec<String> = msgs
        .iter()
        .map(|m| m["description"].as_str().unwrap_or_default().to_owned())
        .collect();
    let locs: Vec<String> = msgs
        .iter()
        .filter_map(|m| {
            m["location"]
                .as_str()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
        })
        .collect();
    (format!("HTTP {}: {}", r.status, text.join("; ")), locs)
}

/// Fields of rules that reference objects.
const REF_FIELDS: [&str; 12] = [
    "sourceZones",
    "destinationZones",
    "sourceNetworks",
    "destinationNetworks",
    "sourcePorts",
    "destinationPorts",
    "originalNetwork",
    "translatedNetwork",
    "originalPort",
    "translatedPort",
    "sourceInterface",
    "destinationInterface",
];

/// A saved object or rule made fit to send again: server fields dropped,
/// references turned back into names (the objects they named may have been
/// re-created with new ids meanwhile).
fn resendable(v: &Value) -> Value {
    let mut v = strip(v);
    for f in REF_FIELDS {
        let Some(field) = v.get_mut(f) else { continue };
        let to_name = |r: &mut Value| {
            if let (Some(name), Some(kind)) = (r.get("name").cloned(), r.get("type").cloned()) {
                *r = json!({"name": name, "type": kind});
            }
        };
        match field {
            Value::Array(a) => a.iter_mut().for_each(to_name),
            Value::Object(_) => to_name(field),
            _ => {}
        }
    }
    v
}

fn strip(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["id", "version", "links", "ruleId"] {
            o.remove(k);
        }
    }
    v
}

impl FtdParticipant {
    /// Logs in (password grant).
    ///
    /// # Errors
    /// Credentials, TLS, refused login.
    pub async fn connect(
        device: &Device,
        settings: &RestSettings,
    ) -> Result<FtdParticipant, DeviceError> {
        let (user, password) = resolve_credentials(device)?;
        let version = device
            .labels
            .get(API_VERSION_LABEL)
            .map_or("latest", String::as_str);
        let base = base_url(&device.address, &format!("/api/fdm/{version}"));
        let mut client = RestClient::new(settings.http_client(device)?, &base, settings.retry);
        client.set_limiter(crate::transport::http::shared_limiter(
            &format!("fdm|{base}"),
            settings.rps,
            settings.burst,
        ));
        let p = FtdParticipant {
            device: device.name.clone(),
            client,
            user,
            password,
            tokens: Mutex::default(),
            settings: settings.clone(),
            undo: Vec::new(),
            ids: BTreeMap::new(),
        };
        p.login(false).await?;
        Ok(p)
    }

    async fn login(&self, try_refresh: bool) -> Result<(), DeviceError> {
        let mut tokens = self.tokens.lock().await;
        let refresh = if try_refresh {
            tokens.refresh.clone()
        } else {
            None
        };
        let body = match &refresh {
            Some(rt) => json!({"grant_type": "refresh_token", "refresh_token": rt}),
            None => {
                json!({"grant_type": "password", "username": self.user, "password": self.password})
            }
        };
        let r = self
            .client
            .send(Method::POST, "/fdm/token", &[], &Body::Json(body))
            .await
            .map_err(|e| dev_err(&self.device, "login", e.to_string(), Some("/fdm/token")))?;
        if !r.ok() {
            drop(tokens);
            if refresh.is_some() {
                tracing::info!(
                    device = self.device,
                    "refresh token refused; logging in again"
                );
                return Box::pin(self.login(false)).await;
            }
            let (msg, _) = fdm_message(&r);
            return Err(dev_err(&self.device, "login", msg, Some("/fdm/token")));
        }
        let v = r.json();
        tokens.access = v["access_token"].as_str().unwrap_or_default().to_owned();
        tokens.refresh = v["refresh_token"].as_str().map(str::to_owned);
        tracing::debug!(
            device = self.device,
            refreshed = refresh.is_some(),
            "FDM token obtained"
        );
        Ok(())
    }

    /// One API call with the bearer token; a 401 renews the token and
    /// repeats the call once. Non-2xx answers are errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        stage: &str,
    ) -> Result<Value, DeviceError> {
        let body = body.map_or(Body::None, Body::Json);
        for attempt in 0..2 {
            let token = self.tokens.lock().await.access.clone();
            let r = self
                .client
                .send(
                    method.clone(),
                    path,
                    &[("Authorization", format!("Bearer {token}"))],
                    &body,
                )
                .await
                .map_err(|e| dev_err(&self.device, stage, e.to_string(), Some(path)))?;
            if r.status == 401 && attempt == 0 {
                tracing::info!(device = self.device, path, "FDM token expired; renewing");
                self.login(true).await?;
                continue;
            }
            if !r.ok() {
                let (msg, locs) = fdm_message(&r);
                let mut paths = vec![path.to_owned()];
                paths.extend(locs);
                return Err(DeviceError {
                    device: self.device.clone(),
                    stage: stage.to_owned(),
                    message: format!("{method} {path}: {msg}"),
                    paths,
                });
            }
            return Ok(r.json());
        }
        Err(dev_err(
            &self.device,
            stage,
            "authentication keeps failing".to_owned(),
            Some(path),
        ))
    }

    /// Every item of a paged list.
    async fn list(&self, path: &str, stage: &str) -> Result<Vec<Value>, DeviceError> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut offset = 0usize;
        loop {
            let page = self
                .call(
                    Method::GET,
                    &format!("{path}{sep}offset={offset}&limit=100"),
                    None,
                    stage,
                )
                .await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items);
            let more = page["paging"]["next"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if !more || n == 0 {
                return Ok(out);
            }
            offset += n;
        }
    }

    /// Resolves `{policy}`, `{natpolicy}` and `{name:X}` in a path.
    async fn resolve_path(&mut self, path: &str, stage: &str) -> Result<String, DeviceError> {
        let mut p = path.to_owned();
        for (ph, coll) in [
            ("{policy}", "/policy/accesspolicies"),
            ("{natpolicy}", "/policy/objectnatpolicies"),
        ] {
            if p.contains(ph) {
                let id = match self.ids.get(ph) {
                    Some((id, _)) => id.clone(),
                    None => {
                        let items = self.list(coll, stage).await?;
                        let id = items
                            .first()
                            .and_then(|i| i["id"].as_str())
                            .ok_or_else(|| {
                                dev_err(
                                    &self.device,
                                    stage,
                                    format!("no policy in {coll}"),
                                    Some(coll),
                                )
                            })?
                            .to_owned();
                        self.ids.insert(ph.to_owned(), (id.clone(), String::new()));
                        id
                    }
                };
                p = p.replace(ph, &id);
            }
        }
        if let Some(start) = p.find("{name:") {
            let end = p[start..].find('}').map_or(p.len(), |e| start + e);
            let name = p[start + 6..end].to_owned();
            let collection = p[..start].trim_end_matches('/').to_owned();
            match self.find(&collection, &name, stage).await? {
                Some(obj) => {
                    let id = obj["id"].as_str().unwrap_or_default().to_owned();
                    p = format!("{}{}{}", &p[..start], id, &p[end + 1..]);
                }
                None => return Ok(String::new()),
            }
        }
        Ok(p)
    }

    /// The object or rule named `name` in `collection`, if any.
    async fn find(
        &self,
        collection: &str,
        name: &str,
        stage: &str,
    ) -> Result<Option<Value>, DeviceError> {
        let items = self
            .list(&format!("{collection}?filter=name:{name}"), stage)
            .await?;
        Ok(items.into_iter().find(|i| i["name"].as_str() == Some(name)))
    }

    /// Replaces `{name, type}` references without ids by `{id, type}`.
    async fn resolve_refs(&self, body: &mut Value, stage: &str) -> Result<(), DeviceError> {
        for f in REF_FIELDS {
            let Some(v) = body.get_mut(f) else { continue };
            let refs: Vec<&mut Value> = match v {
                Value::Array(a) => a.iter_mut().collect(),
                Value::Object(_) => vec![v],
                _ => continue,
            };
            for r in refs {
                if r.get("id").is_some() {
                    continue;
                }
                let name = r["name"].as_str().unwrap_or_default().to_owned();
                let kind = r["type"].as_str().unwrap_or_default().to_owned();
                let coll = match kind.as_str() {
                    "securityzone" => "/object/securityzones",
                    "networkobject" => "/object/networks",
                    "tcpportobject" => "/object/tcpports",
                    "udpportobject" => "/object/udpports",
                    "physicalinterface" => "/devices/default/interfaces",
                    other => {
                        return Err(dev_err(
                            &self.device,
                            stage,
                            format!("{f}: unknown reference type {other}"),
                            None,
                        ));
                    }
                };
                let obj = self
                    .find(coll, &name, stage)
                    .await?
                    .ok_or_else(|| DeviceError {
                        device: self.device.clone(),
                        stage: stage.to_owned(),
                        message: format!("{f}: {kind} {name:?} does not exist on the device"),
                        paths: vec![f.to_owned(), coll.to_owned()],
                    })?;
                *r = json!({"id": obj["id"], "type": kind});
            }
        }
        Ok(())
    }

    /// Makes one staged change, recording its undo step.
    async fn step(&mut self, call: Call, stage: &str) -> Result<(), DeviceError> {
        let path = self.resolve_path(&call.path, stage).await?;
        let mut body = call.body.clone();
        if let Some(b) = body.as_mut() {
            self.resolve_refs(b, stage).await?;
        }
        match call.method.as_str() {
            "POST" => {
                let body = body.unwrap_or(Value::Null);
                let name = body["name"].as_str().unwrap_or_default().to_owned();
                let collection = path.split('?').next().unwrap_or_default().to_owned();
                // Adopt an object or rule of the same name (left over, or made by hand).
                if let Some(cur) = self.find(&collection, &name, stage).await? {
                    let id = cur["id"].as_str().unwrap_or_default();
                    let item = format!("{collection}/{id}");
                    if strip(&cur).as_object().is_some_and(|c| {
                        body.as_object()
                            .is_some_and(|b| b.iter().all(|(k, v)| c.get(k) == Some(v)))
                    }) {
                        return Ok(());
                    }
                    let mut put = body.clone();
                    put["version"] = cur["version"].clone();
                    self.call(Method::PUT, &item, Some(put), stage).await?;
                    self.undo.push(Undo::Restore(item, cur));
                    return Ok(());
                }
                let created = self.call(Method::POST, &path, Some(body), stage).await?;
                let id = created["id"].as_str().unwrap_or_default();
                self.undo.push(Undo::Delete(format!("{collection}/{id}")));
            }
            "PUT" => {
                if path.is_empty() {
                    return Err(dev_err(
                        &self.device,
                        stage,
                        format!("{} does not exist on the device", call.path),
                        Some(&call.path),
                    ));
                }
                let cur = self.call(Method::GET, &path, None, stage).await?;
                let mut put = body.unwrap_or(Value::Null);
                put["version"] = cur["version"].clone();
                put["id"] = cur["id"].clone();
                self.call(Method::PUT, &path, Some(put), stage).await?;
                self.undo.push(Undo::Restore(path, cur));
            }
            "DELETE" => {
                if path.is_empty() {
                    return Ok(()); // already gone
                }
                let cur = self.call(Method::GET, &path, None, stage).await?;
                match self.call(Method::DELETE, &path, None, stage).await {
                    Ok(_) => {
                        let collection = path
                            .rsplit_once('/')
                            .map_or(String::new(), |(c, _)| c.to_owned());
                        self.undo.push(Undo::Recreate(collection, cur));
                    }
                    // A shared object something else still uses stays.
                    Err(e) if path.starts_with("/object/") && e.message.contains("in use") => {
                        tracing::info!(device = self.device, path, "object still in use; kept");
                    }
                    Err(e) => return Err(e),
                }
            }
            other => {
                return Err(dev_err(
                    &self.device,
                    stage,
                    format!("unsupported call {other}"),
                    Some(&call.path),
                ));
            }
        }
        Ok(())
    }

    async fn stage(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        let Edit::Http { calls, .. } = edit else {
            return Err(dev_err(
                &self.device,
                "prepare",
                edit.unexpected(Format::Http),
                None,
            ));
        };
        let calls = calls.clone();
        let pending = self
            .call(Method::GET, "/operational/pendingchanges", None, "prepare")
            .await?;
        let n = pending["items"].as_array().map_or(0, Vec::len);
        if n > 0 {
            tracing::warn!(
                device = self.device,
                pending = n,
                "FTD has staged changes Rampart did not make; a deploy includes them"
            );
        }
        for call in calls {
            self.step(call, "prepare").await?;
        }
        Ok(())
    }

    async fn rollback_staged(&mut self) {
        while let Some(u) = self.undo.pop() {
            if let Err(e) = self.undo_step(&u).await {
                tracing::error!(device = self.device, error = %e, step = ?u, "undoing a staged change failed");
            }
        }
    }

    async fn undo_step(&self, u: &Undo) -> Result<(), DeviceError> {
        match u {
            Undo::Delete(path) => {
                self.call(Method::DELETE, path, None, "abort").await?;
            }
            Undo::Restore(path, old) => {
                let mut put = resendable(old);
                self.resolve_refs(&mut put, "abort").await?;
                let cur = self.call(Method::GET, path, None, "abort").await?;
                put["id"] = cur["id"].clone();
                put["version"] = cur["version"].clone();
                self.call(Method::PUT, path, Some(put), "abort").await?;
            }
            Undo::Recreate(collection, old) => {
                let mut body = resendable(old);
                self.resolve_refs(&mut body, "abort").await?;
                self.call(Method::POST, collection, Some(body), "abort")
                    .await?;
            }
        }
        Ok(())
    }

    /// Deploys and polls the job to its end.
    async fn deploy(&self) -> Result<(), DeviceError> {
        let job = self
            .call(Method::POST, "/operational/deploy", None, "deploy")
            .await?;
        let id = job["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("/operational/deploy/{id}");
        let deadline = Instant::now() + self.settings.job_timeout;
        loop {
            let j = self.call(Method::GET, &path, None, "deploy").await?;
            match j["state"].as_str().unwrap_or_default() {
                "DEPLOYED" => {
                    tracing::info!(device = self.device, job = id, "FTD deploy completed");
                    return Ok(());
                }
                "DEPLOY_FAILED" => {
                    let per_rule: Vec<String> = j["deploymentStatusMessages"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| m["statusMessage"].as_str().map(str::to_owned))
                        .collect();
                    return Err(DeviceError {
                        device: self.device.clone(),
                        stage: "deploy".to_owned(),
                        message: format!(
                            "deployment {id} failed: {}: {}",
                            j["statusMessage"].as_str().unwrap_or_default(),
                            per_rule.join("; ")
                        ),
                        paths: per_rule,
                    });
                }
                _ if Instant::now() > deadline => {
                    return Err(dev_err(
                        &self.device,
                        "deploy",
                        format!(
                            "deployment {id} did not finish in {:?}",
                            self.settings.job_timeout
                        ),
                        Some(&path),
                    ));
                }
                _ => tokio::time::sleep(self.settings.poll_interval).await,
            }
        }
    }

    async fn owned(&mut self) -> Result<Value, DeviceError> {
        let rules_path = self.resolve_path(ftd::RULES, "read").await?;
        let nat_path = self.resolve_path(ftd::NAT_RULES, "read").await?;
        let owned =
            |v: &Value, prefix: &str| v["name"].as_str().is_some_and(|n| n.starts_with(prefix));
        let names = |refs: &Value| -> Vec<String> {
            refs.as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect()
        };
        let rules: Vec<AccessRule> = self
            .list(&rules_path, "read")
            .await?
            .iter()
            .filter(|r| owned(r, "RPF-"))
            .map(|r| AccessRule {
                name: r["name"].as_str().unwrap_or_default().to_owned(),
                action: r["ruleAction"].as_str().unwrap_or_default().to_owned(),
                log: r["eventLogAction"].as_str() != Some("LOG_NONE"),
                source_zones: names(&r["sourceZones"]),
                destination_zones: names(&r["destinationZones"]),
                source_networks: names(&r["sourceNetworks"]),
                destination_networks: names(&r["destinationNetworks"]),
                source_ports: names(&r["sourcePorts"]),
                destination_ports: names(&r["destinationPorts"]),
            })
            .collect();
        let nat: Vec<NatRule> = self
            .list(&nat_path, "read")
            .await?
            .iter()
            .filter(|r| owned(r, "RPFN-"))
            .map(|r| {
                let name_of = |f: &str| r[f]["name"].as_str().map(str::to_owned);
                NatRule {
                    name: r["name"].as_str().unwrap_or_default().to_owned(),
                    original: name_of("originalNetwork").unwrap_or_default(),
                    translated: name_of("translatedNetwork").unwrap_or_default(),
                    dynamic: r["natType"].as_str() == Some("DYNAMIC")
                        && r["interfaceInTranslatedNetwork"].as_bool() == Some(true),
                    original_port: name_of("originalPort"),
                    translated_port: name_of("translatedPort"),
                    source_interface: name_of("sourceInterface"),
                    destination_interface: name_of("destinationInterface"),
                }
            })
            .collect();
        let mut networks: Vec<ftd::NetObject> = self
            .list("/object/networks", "read")
            .await?
            .iter()
            .filter(|o| owned(o, "RPN-"))
            .map(|o| ftd::NetObject {
                name: o["name"].as_str().unwrap_or_default().to_owned(),
                sub_type: o["subType"].as_str().unwrap_or_default().to_owned(),
                value: o["value"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        networks.sort();
        let mut ports = Vec::new();
        for (coll, proto) in [("/object/tcpports", "tcp"), ("/object/udpports", "udp")] {
            ports.extend(
                self.list(coll, "read")
                    .await?
                    .iter()
                    .filter(|o| owned(o, "RPP-"))
                    .map(|o| ftd::PortObject {
                        name: o["name"].as_str().unwrap_or_default().to_owned(),
                        protocol: proto.to_owned(),
                        port: o["port"].as_str().unwrap_or_default().to_owned(),
                    }),
            );
        }
        ports.sort();
        Ok(json!({"rules": rules, "nat": nat, "networks": networks, "ports": ports}))
    }
}

#[tonic::async_trait]
impl Participant for FtdParticipant {
    async fn prepare(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        self.stage(edit).await
    }

    async fn commit(&mut self) -> Result<Committed, DeviceError> {
        self.deploy().await?;
        self.undo.clear();
        Ok(Committed::Final)
    }

    async fn confirm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    async fn abort(&mut self) {
        self.rollback_staged().await;
    }

    async fn cancel(&mut self) -> bool {
        false
    }

    async fn apply_now(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        let res = async {
            self.stage(edit).await?;
            self.deploy().await
        }
        .await;
        match res {
            Ok(()) => {
                self.undo.clear();
                Ok(())
            }
            Err(e) => {
                self.rollback_staged().await;
                Err(e)
            }
        }
    }

    async fn read(&mut self) -> Result<String, DeviceError> {
        Ok(self.owned().await?.to_string())
    }
}

/// The registry's constructor.
#[must_use]
pub fn new_driver(s: &Settings) -> Arc<dyn PlatformDriver> {
    Arc::new(Adapter(FtdPlatform::new(
        FtdPlatform::default_settings().with_shared(s),
    )))
}
