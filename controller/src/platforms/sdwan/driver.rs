//! Cisco SD-WAN Manager (vManage) as a transaction platform.
//!
//! - **prepare** creates the new site lists, data policy definitions and
//!   the vSmart policy assembling them (content-named, so nothing existing
//!   is modified and the active policy keeps running);
//! - **commit** activates the new policy (or deactivates Rampart's when no
//!   service is left) and polls the action to its end; a failed action is
//!   a failed commit, and abort deletes what prepare created;
//! - after activation, objects only the previous policy used are deleted;
//! - compensation runs the inverse edit: the previous policy is re-created
//!   (same content, same names) and re-activated.
//!
//! Sessions: `POST /j_security_check` gives the `JSESSIONID` cookie,
//! `GET /dataservice/client/token` the XSRF token sent on every change. An
//! expired session is answered with the login page (status 200, HTML): the
//! participant logs in again and repeats the call once. Every request goes
//! through the manager's shared token bucket.

use std::{collections::BTreeMap, time::Instant};

use reqwest::Method;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::render::{self as sdwan, POLICY_PREFIX, SdWanConfig, paths};
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
    transport::http::{Body, Reply, RestClient, shared_limiter},
    wire::Rendering,
    wire::http::Call,
};

/// The SD-WAN Manager platform driver.
#[derive(Debug, Clone)]
pub struct SdWanPlatform {
    settings: RestSettings,
}

impl SdWanPlatform {
    /// A driver with these settings.
    #[must_use]
    pub fn new(settings: RestSettings) -> SdWanPlatform {
        SdWanPlatform { settings }
    }

    /// Defaults: 100 requests/s (the documented limit), burst 50.
    #[must_use]
    pub fn default_settings() -> RestSettings {
        RestSettings {
            rps: 100.0,
            burst: 50.0,
            ..RestSettings::meraki()
        }
    }
}

/// The view drift compares: the active policy and its definitions.
fn owned_view(c: &SdWanConfig) -> Value {
    if c.policies.is_empty() {
        return json!({"active": null});
    }
    json!({
        "active": c.policy_name(),
        "definitions": c.policies.iter().map(|p| json!({
            "name": p.name,
            "sequences": p.definition()["sequences"].clone(),
        })).collect::<Vec<_>>(),
    })
}

#[tonic::async_trait]
impl DevicePlatform for SdWanPlatform {
    type Config = SdWanConfig;

    const NAME: &'static str = sdwan::PLATFORM;

    fn build(&self, spec: &ServiceSpec, device: &Device) -> Result<SdWanConfig, CompileError> {
        sdwan::build(spec, device)
    }

    fn render(&self, spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
        sdwan::render(spec, device)
    }

    fn merge(&self, contributions: BTreeMap<String, SdWanConfig>) -> Result<SdWanConfig, Conflict> {
        let mut out = SdWanConfig::default();
        for c in contributions.into_values() {
            out.policies.extend(c.policies);
        }
        Ok(out)
    }

    fn diff(&self, prev: &SdWanConfig, next: &SdWanConfig) -> Option<Edit> {
        if prev == next {
            return None;
        }
        let calls = sdwan::edit_calls(prev, next);
        Some(Edit::Http {
            notes: vec!["SD-WAN Manager /dataservice: created at prepare, activated (polled) at commit, old objects deleted after; {name:X} is the id of X".to_owned()],
            calls,
        })
    }

    async fn connect(&self, device: &Device) -> Result<Box<dyn Participant>, DeviceError> {
        Ok(Box::new(
            SdWanParticipant::connect(device, &self.settings).await?,
        ))
    }

    fn drift(
        &self,
        expected: &SdWanConfig,
        accepted: Option<&str>,
        actual: &str,
    ) -> Result<Vec<Difference>, String> {
        let expected = baseline(accepted, || owned_view(expected))?;
        let actual: Value =
            serde_json::from_str(actual).map_err(|e| format!("device reply: {e}"))?;
        Ok(json_differences("", &expected, &actual))
    }
}

#[derive(Debug, Default)]
struct SessionState {
    cookie: String,
    xsrf: String,
}

/// One SD-WAN Manager taking part in a transaction.
pub struct SdWanParticipant {
    device: String,
    client: RestClient,
    user: String,
    password: String,
    session: Mutex<SessionState>,
    settings: RestSettings,
    /// Calls for commit (activation) and after it (deletions).
    activate: Vec<Call>,
    cleanup: Vec<Call>,
    /// Objects prepare created (collection path, id), for abort.
    created: Vec<(String, String)>,
}

fn is_login_page(r: &Reply) -> bool {
    let ct = r
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ct.starts_with("text/html") && r.body.contains("j_security_check")
}

fn vm_message(r: &Reply) -> String {
    let v = r.json();
    match (
        v["error"]["message"].as_str(),
        v["error"]["details"].as_str(),
    ) {
        (Some(m), Some(d)) if m != d => format!("HTTP {}: {m}: {d}", r.status),
        (Some(m), _) => format!("HTTP {}: {m}", r.status),
        _ => format!("HTTP {}: {}", r.status, r.body.trim()),
    }
}

impl SdWanParticipant {
    /// Logs in.
    ///
    /// # Errors
    /// Credentials, TLS, refused login.
    pub async fn connect(
        device: &Device,
        settings: &RestSettings,
    ) -> Result<SdWanParticipant, DeviceError> {
        let (user, password) = resolve_credentials(device)?;
        let base = base_url(&device.address, "");
        let mut client = RestClient::new(settings.http_client(device)?, &base, settings.retry);
        client.set_limiter(shared_limiter(
            &format!("sdwan|{base}"),
            settings.rps,
            settings.burst,
        ));
        let p = SdWanParticipant {
            device: device.name.clone(),
            client,
            user,
            password,
            session: Mutex::default(),
            settings: settings.clone(),
            activate: Vec::new(),
            cleanup: Vec::new(),
            created: Vec::new(),
        };
        p.login().await?;
        Ok(p)
    }

    async fn login(&self) -> Result<(), DeviceError> {
        let mut s = self.session.lock().await;
        let r = self
            .client
            .send(
                Method::POST,
                "/j_security_check",
                &[],
                &Body::Form(vec![
                    ("j_username".to_owned(), self.user.clone()),
                    ("j_password".to_owned(), self.password.clone()),
                ]),
            )
            .await
            .map_err(|e| {
                dev_err(
                    &self.device,
                    "login",
                    e.to_string(),
                    Some("/j_security_check"),
                )
            })?;
        let cookie = r
            .headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix("JSESSIONID="))
            .map(|c| c.split(';').next().unwrap_or_default().to_owned());
        let Some(cookie) = cookie.filter(|_| r.ok() && r.body.trim().is_empty()) else {
            return Err(dev_err(
                &self.device,
                "login",
                "credentials refused (login page returned)".to_owned(),
                Some("/j_security_check"),
            ));
        };
        let t = self
            .client
            .send(
                Method::GET,
                "/dataservice/client/token",
                &[("Cookie", format!("JSESSIONID={cookie}"))],
                &Body::None,
            )
            .await
            .map_err(|e| {
                dev_err(
                    &self.device,
                    "login",
                    e.to_string(),
                    Some("/dataservice/client/token"),
                )
            })?;
        if !t.ok() || is_login_page(&t) {
            return Err(dev_err(
                &self.device,
                "login",
                format!("no XSRF token: {}", vm_message(&t)),
                Some("/dataservice/client/token"),
            ));
        }
        s.cookie = cookie;
        s.xsrf = t.body.trim().to_owned();
        tracing::debug!(device = self.device, "SD-WAN Manager session opened");
        Ok(())
    }

    /// One `/dataservice` call; an expired session logs in again once.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        stage: &str,
    ) -> Result<Value, DeviceError> {
        let full = format!("/dataservice{path}");
        let body = body.map_or(Body::None, Body::Json);
        for attempt in 0..2 {
            let (cookie, xsrf) = {
                let s = self.session.lock().await;
                (s.cookie.clone(), s.xsrf.clone())
            };
            let r = self
                .client
                .send(
                    method.clone(),
                    &full,
                    &[
                        ("Cookie", format!("JSESSIONID={cookie}")),
                        ("X-XSRF-TOKEN", xsrf),
                    ],
                    &body,
                )
                .await
                .map_err(|e| dev_err(&self.device, stage, e.to_string(), Some(&full)))?;
            if is_login_page(&r) && attempt == 0 {
                tracing::info!(
                    device = self.device,
                    "SD-WAN Manager session expired; logging in again"
                );
                self.login().await?;
                continue;
            }
            if !r.ok() || is_login_page(&r) {
                return Err(dev_err(
                    &self.device,
                    stage,
                    format!("{method} {full}: {}", vm_message(&r)),
                    Some(&full),
                ));
            }
            return Ok(r.json());
        }
        Err(dev_err(
            &self.device,
            stage,
            "the session keeps expiring".to_owned(),
            Some(&full),
        ))
    }

    /// (id, item) of the object named `name` in `collection`.
    async fn find(
        &self,
        collection: &str,
        name: &str,
        stage: &str,
    ) -> Result<Option<(String, Value)>, DeviceError> {
        let list = self.call(Method::GET, collection, None, stage).await?;
        let (name_key, id_key) = match collection {
            paths::VSMART => ("policyName", "policyId"),
            paths::DEFINITIONS => ("name", "definitionId"),
            _ => ("name", "listId"),
        };
        Ok(list["data"].as_array().into_iter().flatten().find_map(|i| {
            (i[name_key].as_str() == Some(name))
                .then(|| (i[id_key].as_str().unwrap_or_default().to_owned(), i.clone()))
        }))
    }

    /// Replaces `{name:X}` (in a string) with X's id, looking in the
    /// collection the context names.
    async fn resolve(&self, text: &str, stage: &str) -> Result<Option<String>, DeviceError> {
        let mut out = text.to_owned();
        while let Some(start) = out.find("{name:") {
            let end = out[start..].find('}').map_or(out.len(), |e| start + e);
            let name = out[start + 6..end].to_owned();
            let collection = if name.starts_with(POLICY_PREFIX) {
                paths::VSMART
            } else if name.contains("-sites-") {
                paths::SITE_LISTS
            } else {
                paths::DEFINITIONS
            };
            let Some((id, _)) = self.find(collection, &name, stage).await? else {
                return Ok(None);
            };
            out = format!("{}{}{}", &out[..start], id, &out[end + 1..]);
        }
        Ok(Some(out))
    }

    async fn resolve_body(&self, body: &Value, stage: &str) -> Result<Value, DeviceError> {
        let text = body.to_string();
        match self.resolve(&text, stage).await? {
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| dev_err(&self.device, stage, e.to_string(), None)),
            None => Err(dev_err(
                &self.device,
                stage,
                format!("a referenced object does not exist: {text}"),
                None,
            )),
        }
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
        self.activate.clear();
        self.cleanup.clear();
        for call in calls {
            match call.method.as_str() {
                "POST"
                    if call.path.contains("/activate/") || call.path.contains("/deactivate/") =>
                {
                    self.activate.push(call);
                }
                "DELETE" => self.cleanup.push(call),
                "POST" => {
                    let body = self
                        .resolve_body(call.body.as_ref().unwrap_or(&Value::Null), "prepare")
                        .await?;
                    let name_key = if call.path == paths::VSMART {
                        "policyName"
                    } else {
                        "name"
                    };
                    let name = body[name_key].as_str().unwrap_or_default().to_owned();
                    if self.find(&call.path, &name, "prepare").await?.is_some() {
                        continue; // content-named: the same object exists already
                    }
                    let r = self
                        .call(Method::POST, &call.path, Some(body), "prepare")
                        .await?;
                    let id = ["policyId", "definitionId", "listId"]
                        .iter()
                        .find_map(|k| r[*k].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    self.created.push((call.path.clone(), id));
                }
                other => {
                    return Err(dev_err(
                        &self.device,
                        "prepare",
                        format!("unsupported call {other} {}", call.path),
                        Some(&call.path),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn poll_action(&self, id: &str, stage: &str) -> Result<(), DeviceError> {
        let path = format!("/device/action/status/{id}");
        let deadline = Instant::now() + self.settings.job_timeout;
        loop {
            let a = self.call(Method::GET, &path, None, stage).await?;
            if a["summary"]["status"].as_str() == Some("done") {
                let failed: Vec<String> = a["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|d| d["status"].as_str() != Some("Success"))
                    .map(|d| {
                        format!(
                            "{}: {}",
                            d["host-name"]
                                .as_str()
                                .or_else(|| d["deviceID"].as_str())
                                .unwrap_or("device"),
                            d["activity"]
                                .as_array()
                                .and_then(|x| x.last())
                                .and_then(Value::as_str)
                                .unwrap_or("failed")
                        )
                    })
                    .collect();
                if failed.is_empty() {
                    return Ok(());
                }
                return Err(DeviceError {
                    device: self.device.clone(),
                    stage: stage.to_owned(),
                    message: format!("action {id} failed: {}", failed.join("; ")),
                    paths: failed,
                });
            }
            if Instant::now() > deadline {
                return Err(dev_err(
                    &self.device,
                    stage,
                    format!(
                        "action {id} did not finish in {:?}",
                        self.settings.job_timeout
                    ),
                    Some(&path),
                ));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    async fn run_activation(&mut self) -> Result<(), DeviceError> {
        for call in std::mem::take(&mut self.activate) {
            let Some(path) = self.resolve(&call.path, "activate").await? else {
                if call.path.contains("/deactivate/") {
                    continue; // nothing of Rampart's to deactivate
                }
                return Err(dev_err(
                    &self.device,
                    "activate",
                    format!("{} does not exist", call.path),
                    Some(&call.path),
                ));
            };
            let r = self
                .call(Method::POST, &path, Some(json!({})), "activate")
                .await?;
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            self.poll_action(&id, "activate").await?;
        }
        Ok(())
    }

    async fn run_cleanup(&mut self) {
        for call in std::mem::take(&mut self.cleanup) {
            match self.resolve(&call.path, "cleanup").await {
                Ok(Some(path)) => {
                    if let Err(e) = self.call(Method::DELETE, &path, None, "cleanup").await {
                        tracing::warn!(device = self.device, error = %e, "could not delete an old SD-WAN object");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(device = self.device, error = %e, "cleanup lookup failed"),
            }
        }
    }

    async fn delete_created(&mut self) {
        while let Some((collection, id)) = self.created.pop() {
            if let Err(e) = self
                .call(Method::DELETE, &format!("{collection}/{id}"), None, "abort")
                .await
            {
                tracing::warn!(device = self.device, error = %e, "could not delete a staged SD-WAN object");
            }
        }
    }

    /// A feature template by `templateName`: created when missing (the
    /// body is the API's feature template payload). Returns its id.
    ///
    /// # Errors
    /// The manager refusing the template.
    pub async fn ensure_feature_template(&self, body: &Value) -> Result<String, DeviceError> {
        self.ensure_template("/template/feature", body).await
    }

    /// A device template by `templateName`, created when missing (its
    /// `generalTemplates` must name existing feature templates). Returns its id.
    ///
    /// # Errors
    /// The manager refusing the template.
    pub async fn ensure_device_template(&self, body: &Value) -> Result<String, DeviceError> {
        self.ensure_template("/template/device", body).await
    }

    async fn ensure_template(&self, collection: &str, body: &Value) -> Result<String, DeviceError> {
        let name = body["templateName"].as_str().unwrap_or_default();
        let list = self.call(Method::GET, collection, None, "template").await?;
        if let Some(id) = list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["templateName"].as_str() == Some(name))
            .and_then(|t| t["templateId"].as_str())
        {
            return Ok(id.to_owned());
        }
        let path = if collection == "/template/device" {
            "/template/device/feature/"
        } else {
            collection
        };
        let r = self
            .call(Method::POST, path, Some(body.clone()), "template")
            .await?;
        r["templateId"].as_str().map(str::to_owned).ok_or_else(|| {
            dev_err(
                &self.device,
                "template",
                format!("no templateId in the answer: {r}"),
                Some(path),
            )
        })
    }

    /// Attaches device template `template_id` to the edges named
    /// `hostnames` and polls the action to its end; a device that fails is
    /// an error naming it.
    ///
    /// # Errors
    /// Unknown host names, refusals, a failed or timed-out action.
    pub async fn attach_device_template(
        &self,
        template_id: &str,
        hostnames: &[&str],
    ) -> Result<(), DeviceError> {
        let edges = self
            .call(Method::GET, "/system/device/vedges", None, "attach")
            .await?;
        let mut devices = Vec::new();
        for h in hostnames {
            let e = edges["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["host-name"].as_str() == Some(h))
                .ok_or_else(|| {
                    dev_err(
                        &self.device,
                        "attach",
                        format!("edge {h:?} is not in the manager's inventory"),
                        None,
                    )
                })?;
            devices.push(json!({
                "csv-status": "complete",
                "csv-deviceId": e["uuid"],
                "csv-deviceIP": e["system-ip"],
                "csv-host-name": e["host-name"],
            }));
        }
        let body = json!({"deviceTemplateList": [{
            "templateId": template_id,
            "device": devices,
            "isEdited": false,
            "isMasterEdited": false,
        }]});
        let r = self
            .call(
                Method::POST,
                "/template/device/config/attachfeature",
                Some(body),
                "attach",
            )
            .await?;
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        self.poll_action(&id, "attach").await
    }

    async fn owned(&self) -> Result<Value, DeviceError> {
        let list = self.call(Method::GET, paths::VSMART, None, "read").await?;
        let active = list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["isPolicyActivated"].as_bool() == Some(true))
            .cloned();
        let Some(active) = active else {
            return Ok(json!({"active": null}));
        };
        let name = active["policyName"].as_str().unwrap_or_default().to_owned();
        if !name.starts_with(POLICY_PREFIX) {
            return Ok(json!({"active": name}));
        }
        let id = active["policyId"].as_str().unwrap_or_default();
        let full = self
            .call(
                Method::GET,
                &format!("{}/definition/{id}", paths::VSMART),
                None,
                "read",
            )
            .await?;
        let mut defs = Vec::new();
        for a in full["policyDefinition"]["assembly"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let did = a["definitionId"].as_str().unwrap_or_default();
            let d = self
                .call(
                    Method::GET,
                    &format!("{}/{did}", paths::DEFINITIONS),
                    None,
                    "read",
                )
                .await?;
            defs.push(json!({"name": d["name"], "sequences": d["sequences"]}));
        }
        Ok(json!({"active": name, "definitions": defs}))
    }
}

#[tonic::async_trait]
impl Participant for SdWanParticipant {
    async fn prepare(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        self.stage(edit).await
    }

    async fn commit(&mut self) -> Result<Committed, DeviceError> {
        self.run_activation().await?;
        self.created.clear();
        self.run_cleanup().await;
        Ok(Committed::Final)
    }

    async fn confirm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    async fn abort(&mut self) {
        self.activate.clear();
        self.cleanup.clear();
        self.delete_created().await;
    }

    async fn cancel(&mut self) -> bool {
        false
    }

    async fn apply_now(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        let res = async {
            self.stage(edit).await?;
            self.run_activation().await
        }
        .await;
        if let Err(e) = res {
            self.abort().await;
            return Err(e);
        }
        self.created.clear();
        self.run_cleanup().await;
        Ok(())
    }

    async fn read(&mut self) -> Result<String, DeviceError> {
        Ok(self.owned().await?.to_string())
    }
}

/// The registry's constructor.
#[must_use]
pub fn new_driver(s: &Settings) -> Arc<dyn PlatformDriver> {
    Arc::new(Adapter(SdWanPlatform::new(
        SdWanPlatform::default_settings().with_shared(s),
    )))
}
