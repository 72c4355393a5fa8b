//! Meraki MX as a transaction platform (Dashboard API v1).
//!
//! Meraki has no candidate configuration, so the two phases map as:
//! - **prepare**: parse the edit, discover the network (and its
//!   organization, which names the rate-limit domain), read each resource
//!   the edit replaces and compute the exact bodies to send — Rampart's
//!   rules plus the rules Rampart does not own, kept in place. Nothing is
//!   changed on the device.
//! - **commit**: one `PUT`, or, when several resources change, one action
//!   batch (`confirmed: true, synchronous: true`), which the service runs
//!   all-or-nothing. Committed for good ([`Committed::Final`]): undoing is
//!   the inverse edit (the previous Rampart sets), replayed by the engine.
//!
//! Every request of every transaction for one organization goes through one
//! shared token bucket (10 requests/s by default), `429 Retry-After`
//! pauses that bucket, other transient failures back off with jitter.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use reqwest::Method;
use serde_json::{Value, json};

use super::render::{
    self as meraki, L3Rule, MerakiConfig, NETWORK_LABEL, OWNED_PREFIX, OneToOneNat, PortForward,
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
        rest::{RestSettings, base_url, baseline, dev_err, json_differences},
    },
    transport::http::{self, Body, HttpError, Reply, RestClient, shared_limiter},
    wire::Rendering,
    wire::http::Call,
};

/// The Meraki platform driver.
#[derive(Debug, Clone)]
pub struct MerakiPlatform {
    settings: RestSettings,
    /// network id → organization id, learnt by discovery.
    orgs: Arc<Mutex<HashMap<String, String>>>,
}

impl MerakiPlatform {
    /// A driver with these settings.
    #[must_use]
    pub fn new(settings: RestSettings) -> MerakiPlatform {
        MerakiPlatform {
            settings,
            orgs: Arc::default(),
        }
    }
}

fn conflict(what: String, first: &str, second: &str) -> Conflict {
    Conflict {
        what,
        first: first.to_owned(),
        second: second.to_owned(),
    }
}

/// Merges contributions in service order: rules concatenate, one
/// network-wide default per direction, port forwards keyed by protocol and
/// public port, one AutoVPN mode with the union of subnets.
fn merge_configs(contributions: BTreeMap<String, MerakiConfig>) -> Result<MerakiConfig, Conflict> {
    let mut out = MerakiConfig::default();
    let mut default_owner: [Option<String>; 2] = [None, None];
    let mut pf_owner: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut vpn_owner: Option<String> = None;
    let mut nat_owner: BTreeMap<String, String> = BTreeMap::new();
    for (service, c) in contributions {
        let service = &service;
        out.l3.extend(c.l3);
        out.inbound.extend(c.inbound);
        for (i, (slot, value)) in [
            (&mut out.l3_default, c.l3_default),
            (&mut out.inbound_default, c.inbound_default),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(value) = value else { continue };
            match slot {
                Some(cur) if *cur != value => {
                    return Err(conflict(
                        format!(
                            "the network-wide default of the {} rules",
                            if i == 0 { "outbound" } else { "inbound" }
                        ),
                        default_owner[i].as_deref().unwrap_or_default(),
                        service,
                    ));
                }
                _ => {
                    *slot = Some(value);
                    default_owner[i] = Some(service.clone());
                }
            }
        }
        for pf in c.port_forwarding {
            let key = (pf.protocol.clone(), pf.public_port.clone());
            if let Some(owner) = pf_owner.get(&key) {
                if out.port_forwarding.contains(&pf) {
                    continue;
                }
                return Err(conflict(
                    format!("port forwarding of {} port {}", key.0, key.1),
                    owner,
                    service,
                ));
            }
            pf_owner.insert(key, service.clone());
            out.port_forwarding.push(pf);
        }
        for r in c.one_to_one_nat {
            if let Some(x) = out
                .one_to_one_nat
                .iter()
                .find(|x| x.public_ip == r.public_ip)
            {
                if *x == r {
                    continue;
                }
                return Err(conflict(
                    format!("1:1 NAT of public IP {}", r.public_ip),
                    nat_owner.get(&r.public_ip).map_or("", String::as_str),
                    service,
                ));
            }
            nat_owner.insert(r.public_ip.clone(), service.clone());
            out.one_to_one_nat.push(r);
        }
        for u in c.inherent_pat {
            if !out.inherent_pat.contains(&u) {
                out.inherent_pat.push(u);
            }
        }
        if let Some(s) = c.site_to_site {
            match &mut out.site_to_site {
                Some(cur) if cur.mode != s.mode || cur.hubs != s.hubs => {
                    return Err(conflict(
                        "the AutoVPN mode and hubs".to_owned(),
                        vpn_owner.as_deref().unwrap_or_default(),
                        service,
                    ));
                }
                Some(cur) => {
                    for sub in s.subnets {
                        if !cur.subnets.contains(&sub) {
                            cur.subnets.push(sub);
                        }
                    }
                }
                None => {
                    out.site_to_site = Some(s);
                    vpn_owner = Some(service.clone());
                }
            }
        }
    }
    if let Some(s) = &mut out.site_to_site {
        s.subnets
            .sort_by(|a, b| a.local_subnet.cmp(&b.local_subnet));
    }
    Ok(out)
}

/// The Rampart-owned view a drift check compares: what `read` returns.
fn owned_view(c: &MerakiConfig) -> Value {
    let mut v = json!({
        "l3": c.l3_rules(),
        "inbound": c.inbound_rules(),
        "portForwarding": c.port_forwarding,
        "oneToOneNat": c.one_to_one_nat,
    });
    if let Some(s) = &c.site_to_site {
        v["siteToSite"] = serde_json::to_value(s).unwrap_or_default();
    }
    v
}

#[tonic::async_trait]
impl DevicePlatform for MerakiPlatform {
    type Config = MerakiConfig;

    const NAME: &'static str = meraki::PLATFORM;

    fn build(&self, spec: &ServiceSpec, device: &Device) -> Result<MerakiConfig, CompileError> {
        meraki::build(spec, device)
    }

    fn render(&self, spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
        meraki::render(spec, device)
    }

    fn merge(
        &self,
        contributions: BTreeMap<String, MerakiConfig>,
    ) -> Result<MerakiConfig, Conflict> {
        merge_configs(contributions)
    }

    fn diff(&self, prev: &MerakiConfig, next: &MerakiConfig) -> Option<Edit> {
        let calls = meraki::edit_calls(prev, next);
        (!calls.is_empty()).then(|| Edit::Http {
            notes: vec!["Meraki Dashboard API v1: Rampart-owned rules (comment/name RPM-…); other rules are kept".to_owned()],
            calls,
        })
    }

    async fn connect(&self, device: &Device) -> Result<Box<dyn Participant>, DeviceError> {
        Ok(Box::new(
            MerakiParticipant::connect(device, &self.settings, &self.orgs).await?,
        ))
    }

    fn drift(
        &self,
        expected: &MerakiConfig,
        accepted: Option<&str>,
        actual: &str,
    ) -> Result<Vec<Difference>, String> {
        let expected = baseline(accepted, || owned_view(expected))?;
        let mut actual: Value =
            serde_json::from_str(actual).map_err(|e| format!("device reply: {e}"))?;
        if expected.get("siteToSite").is_none()
            && let Some(o) = actual.as_object_mut()
        {
            o.remove("siteToSite");
        }
        // Baselines accepted before 1:1 NAT was read back lack the key.
        if expected.get("oneToOneNat").is_none()
            && let Some(o) = actual.as_object_mut()
            && o.get("oneToOneNat")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        {
            o.remove("oneToOneNat");
        }
        Ok(json_differences("", &expected, &actual))
    }
}

/// One Meraki network taking part in a transaction.
pub struct MerakiParticipant {
    device: String,
    client: RestClient,
    auth: (&'static str, String),
    network: String,
    org: String,
    /// Calls ready to send after prepare (absolute resources, full bodies).
    staged: Vec<(String, Value)>,
}

fn reply_error(device: &str, stage: &str, path: &str, r: &Reply) -> DeviceError {
    let v = r.json();
    let msg = v
        .get("errors")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| r.body.trim().to_owned());
    dev_err(
        device,
        stage,
        format!("HTTP {}: {msg}", r.status),
        Some(path),
    )
}

/// The field carrying Rampart's `RPM-` marker in the rules of `path`.
fn rule_key(path: &str) -> &'static str {
    if path == meraki::paths::PORT_FORWARDING || path == meraki::paths::ONE_TO_ONE_NAT {
        "name"
    } else {
        "comment"
    }
}

fn is_owned_rule(v: &Value, key: &str) -> bool {
    v.get(key)
        .and_then(Value::as_str)
        .is_some_and(|c| c.starts_with(OWNED_PREFIX))
}

/// Drops the API's trailing default rule from an L3 rule list.
fn without_default(mut rules: Vec<Value>) -> Vec<Value> {
    if rules
        .last()
        .and_then(|r| r.get("comment"))
        .and_then(Value::as_str)
        == Some("Default rule")
    {
        rules.pop();
    }
    rules
}

impl MerakiParticipant {
    /// Resolves the credentials, discovers the network and its organization.
    ///
    /// # Errors
    /// Credentials, TLS setup, unknown network, API failures.
    pub async fn connect(
        device: &Device,
        settings: &RestSettings,
        orgs: &Mutex<HashMap<String, String>>,
    ) -> Result<MerakiParticipant, DeviceError> {
        let (user, key) = resolve_credentials(device)?;
        let auth = if user.eq_ignore_ascii_case("bearer") {
            ("Authorization", format!("Bearer {key}"))
        } else {
            ("X-Cisco-Meraki-API-Key", key)
        };
        let http = settings.http_client(device)?;
        let base = base_url(&device.address, "/api/v1");
        let mut client = RestClient::new(http, &base, settings.retry);
        let wanted = device.labels.get(NETWORK_LABEL).ok_or_else(|| {
            dev_err(
                &device.name,
                "connect",
                format!("label {NETWORK_LABEL} (network id, or name:<network name>) is not set"),
                None,
            )
        })?;
        let cached = wanted.strip_prefix("name:").is_none().then(|| {
            orgs.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(wanted)
                .cloned()
        });
        let (network, org) = match cached.flatten() {
            Some(org) => (wanted.clone(), org),
            None => {
                let mut p = MerakiParticipant {
                    device: device.name.clone(),
                    client: client.clone(),
                    auth: auth.clone(),
                    network: String::new(),
                    org: String::new(),
                    staged: Vec::new(),
                };
                p.client.set_limiter(shared_limiter(
                    &format!("meraki|{base}|key"),
                    settings.rps,
                    settings.burst,
                ));
                let (n, o) = p.discover(wanted, settings).await?;
                orgs.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(n.clone(), o.clone());
                (n, o)
            }
        };
        client.set_limiter(shared_limiter(
            &format!("meraki|{base}|{org}"),
            settings.rps,
            settings.burst,
        ));
        tracing::debug!(
            device = device.name,
            network,
            org,
            "meraki network resolved"
        );
        Ok(MerakiParticipant {
            device: device.name.clone(),
            client,
            auth,
            network,
            org,
            staged: Vec::new(),
        })
    }

    /// The organization this network belongs to.
    #[must_use]
    pub fn organization(&self) -> &str {
        &self.org
    }

    /// The network id.
    #[must_use]
    pub fn network(&self) -> &str {
        &self.network
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: &Body,
        stage: &str,
    ) -> Result<Reply, DeviceError> {
        let r = self
            .client
            .send(method, path, &[(self.auth.0, self.auth.1.clone())], body)
            .await
            .map_err(|e: HttpError| dev_err(&self.device, stage, e.to_string(), Some(path)))?;
        if r.ok() {
            Ok(r)
        } else {
            Err(reply_error(&self.device, stage, path, &r))
        }
    }

    /// Every page of a list, following `Link: rel=next` as given.
    async fn get_all(&self, path: &str, stage: &str) -> Result<Vec<Value>, DeviceError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(p) = next {
            pages += 1;
            if pages > 10_000 {
                return Err(dev_err(
                    &self.device,
                    stage,
                    "pagination does not end".to_owned(),
                    Some(path),
                ));
            }
            let r = self.call(Method::GET, &p, &Body::None, stage).await?;
            match r.json() {
                Value::Array(items) => out.extend(items),
                other => {
                    return Err(dev_err(
                        &self.device,
                        stage,
                        format!("expected a list, got {other}"),
                        Some(&p),
                    ));
                }
            }
            next = http::next_link(&r.headers);
        }
        Ok(out)
    }

    /// Finds the network (by id or `name:`) in the organizations the key sees.
    async fn discover(
        &mut self,
        wanted: &str,
        settings: &RestSettings,
    ) -> Result<(String, String), DeviceError> {
        let orgs = self
            .call(Method::GET, "/organizations", &Body::None, "discover")
            .await?
            .json();
        let by_name = wanted.strip_prefix("name:");
        let base = self.client.base().to_owned();
        for org in orgs.as_array().into_iter().flatten() {
            let Some(org_id) = org.get("id").and_then(Value::as_str) else {
                continue;
            };
            let mut scoped = self.client.clone();
            scoped.set_limiter(shared_limiter(
                &format!("meraki|{base}|{org_id}"),
                settings.rps,
                settings.burst,
            ));
            let saved = std::mem::replace(&mut self.client, scoped);
            let nets = self
                .get_all(
                    &format!(
                        "/organizations/{org_id}/networks?perPage={}",
                        settings.page_size
                    ),
                    "discover",
                )
                .await;
            self.client = saved;
            for n in nets? {
                let id = n.get("id").and_then(Value::as_str).unwrap_or_default();
                let name = n.get("name").and_then(Value::as_str).unwrap_or_default();
                if by_name.map_or(id == wanted, |w| w == name) {
                    return Ok((id.to_owned(), org_id.to_owned()));
                }
            }
        }
        Err(dev_err(
            &self.device,
            "discover",
            format!("network {wanted:?} is in no organization this API key can see"),
            None,
        ))
    }

    fn resource(&self, path: &str) -> String {
        path.replace("{networkId}", &self.network)
    }

    /// Rampart's body for `path` merged with what the device holds that
    /// Rampart does not own.
    async fn full_body(&self, path: &str, body: &Value) -> Result<Value, DeviceError> {
        let resource = self.resource(path);
        if path == meraki::paths::VPN {
            return Ok(body.clone());
        }
        let current = self
            .call(Method::GET, &resource, &Body::None, "read")
            .await?
            .json();
        let rules: Vec<Value> = current
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mine: Vec<Value> = body
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let key = rule_key(path);
        let rules = if key == "comment" {
            without_default(rules)
        } else {
            rules
        };
        let foreign: Vec<Value> = rules
            .into_iter()
            .filter(|r| !is_owned_rule(r, key))
            .collect();
        let deny = serde_json::to_value(meraki::default_deny_rule()).unwrap_or_default();
        let (mut specific, finals): (Vec<Value>, Vec<Value>) =
            mine.into_iter().partition(|r| *r != deny);
        // Rampart's rules, then the rules it does not own, then its default deny.
        specific.extend(foreign);
        specific.extend(finals);
        Ok(json!({"rules": specific}))
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
        let known = [
            meraki::paths::L3,
            meraki::paths::INBOUND,
            meraki::paths::PORT_FORWARDING,
            meraki::paths::ONE_TO_ONE_NAT,
            meraki::paths::VPN,
        ];
        let mut staged = Vec::new();
        for Call { method, path, body } in calls {
            if method != "PUT" || !known.contains(&path.as_str()) {
                return Err(dev_err(
                    &self.device,
                    "prepare",
                    format!("unsupported call {method} {path}"),
                    Some(&path),
                ));
            }
            let body = body.unwrap_or(Value::Null);
            if path != meraki::paths::VPN {
                let rules = body.get("rules").and_then(Value::as_array).ok_or_else(|| {
                    dev_err(
                        &self.device,
                        "prepare",
                        "body has no rules list".to_owned(),
                        Some(&path),
                    )
                })?;
                let key = rule_key(&path);
                if let Some(bad) = rules.iter().position(|r| !is_owned_rule(r, key)) {
                    return Err(dev_err(
                        &self.device,
                        "prepare",
                        format!(
                            "rule {bad} is not marked as Rampart's ({key} must start with {OWNED_PREFIX})"
                        ),
                        Some(&path),
                    ));
                }
            }
            let full = self.full_body(&path, &body).await?;
            staged.push((self.resource(&path), full));
        }
        self.staged = staged;
        Ok(())
    }

    async fn send_staged(&mut self) -> Result<(), DeviceError> {
        let staged = std::mem::take(&mut self.staged);
        match staged.as_slice() {
            [] => Ok(()),
            [(resource, body)] => {
                self.call(Method::PUT, resource, &Body::Json(body.clone()), "commit")
                    .await?;
                Ok(())
            }
            many => {
                let actions: Vec<Value> = many
                    .iter()
                    .map(|(resource, body)| json!({"resource": resource, "operation": "update", "body": body}))
                    .collect();
                let path = format!("/organizations/{}/actionBatches", self.org);
                let r = self
                    .call(
                        Method::POST,
                        &path,
                        &Body::Json(
                            json!({"confirmed": true, "synchronous": true, "actions": actions}),
                        ),
                        "commit",
                    )
                    .await?
                    .json();
                let status = &r["status"];
                if status["failed"].as_bool() == Some(true)
                    || status["completed"].as_bool() != Some(true)
                {
                    let errors: Vec<String> = status["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                        .collect();
                    return Err(DeviceError {
                        device: self.device.clone(),
                        stage: "commit".to_owned(),
                        message: format!(
                            "action batch {} failed (nothing applied): {}",
                            r["id"],
                            errors.join("; ")
                        ),
                        paths: many.iter().map(|(p, _)| p.clone()).collect(),
                    });
                }
                Ok(())
            }
        }
    }

    /// Rampart's view of the network: owned rules of each resource, and the
    /// AutoVPN settings.
    async fn owned(&self) -> Result<Value, DeviceError> {
        let get = |p: &'static str| async move {
            let v = self
                .call(Method::GET, &self.resource(p), &Body::None, "read")
                .await?
                .json();
            Ok::<Value, DeviceError>(v)
        };
        let rules = |v: &Value, key: &str, drop_default: bool| -> Vec<Value> {
            let all = v
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let all = if drop_default {
                without_default(all)
            } else {
                all
            };
            all.into_iter().filter(|r| is_owned_rule(r, key)).collect()
        };
        let l3 = get(meraki::paths::L3).await?;
        let inbound = get(meraki::paths::INBOUND).await?;
        let pf = get(meraki::paths::PORT_FORWARDING).await?;
        let one = get(meraki::paths::ONE_TO_ONE_NAT).await?;
        let vpn = get(meraki::paths::VPN).await?;
        let norm_l3 = |list: Vec<Value>| -> Vec<Value> {
            list.into_iter()
                .filter_map(|r| serde_json::from_value::<L3Rule>(r).ok())
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .collect()
        };
        let norm_pf: Vec<Value> = rules(&pf, "name", false)
            .into_iter()
            .filter_map(|r| serde_json::from_value::<PortForward>(r).ok())
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        let norm_nat: Vec<Value> = rules(&one, "name", false)
            .into_iter()
            .filter_map(|r| serde_json::from_value::<OneToOneNat>(r).ok())
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        let mut site = vpn;
        if let Some(subs) = site.get_mut("subnets").and_then(Value::as_array_mut) {
            subs.sort_by(|a, b| a["localSubnet"].as_str().cmp(&b["localSubnet"].as_str()));
        }
        Ok(json!({
            "l3": norm_l3(rules(&l3, "comment", true)),
            "inbound": norm_l3(rules(&inbound, "comment", true)),
            "portForwarding": norm_pf,
            "oneToOneNat": norm_nat,
            "siteToSite": site,
        }))
    }
}

#[tonic::async_trait]
impl Participant for MerakiParticipant {
    async fn prepare(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        self.stage(edit).await
    }

    async fn commit(&mut self) -> Result<Committed, DeviceError> {
        self.send_staged().await?;
        Ok(Committed::Final)
    }

    async fn confirm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    async fn abort(&mut self) {
        // Nothing was sent before commit; a failed batch applied nothing.
        self.staged.clear();
    }

    async fn cancel(&mut self) -> bool {
        false
    }

    async fn apply_now(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        self.stage(edit).await?;
        self.send_staged().await
    }

    async fn read(&mut self) -> Result<String, DeviceError> {
        Ok(self.owned().await?.to_string())
    }
}

/// The registry's constructor.
#[must_use]
pub fn new_driver(s: &Settings) -> Arc<dyn PlatformDriver> {
    Arc::new(Adapter(MerakiPlatform::new(
        RestSettings::meraki().with_shared(s),
    )))
}
