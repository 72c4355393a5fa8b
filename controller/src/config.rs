//! rampartd configuration: TOML with defaults, overridable by flags and
//! environment (flags win, then environment, then the file, then defaults).
//!
//! Every problem in a config file is reported at once, with its line, so an
//! operator fixes the file in one pass instead of one error per restart.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One or more settings are wrong; every one is listed.
    #[error("invalid configuration in {origin}:\n  {}", errors.join("\n  "))]
    Invalid {
        /// File name or "flags".
        origin: String,
        /// One line per problem: `line N: key: what is wrong`.
        errors: Vec<String>,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC management API.
    pub api: ApiConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Embedded database.
    pub store: StoreConfig,
    pub log: LogConfig,
    /// TLS of the management API.
    pub tls: TlsConfig,
    /// Authentication (tokens, JWT).
    pub auth: AuthConfig,
    /// Encryption of device credentials at rest.
    pub secrets: SecretsConfig,
    /// Per-user rate limits and concurrency.
    pub limits: LimitsConfig,
    /// How rampartd reaches devices (transactions, drift checks).
    pub southbound: SouthboundConfig,
    /// Host agents: enrollment, policy distribution, health.
    pub agents: AgentsConfig,
}

/// `[agents]`: the host-agent port (its own listener, TLS always on; see
/// `docs/fleet.md`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    /// Listen address of the agent port; unset: no agents are served.
    pub listen: Option<SocketAddr>,
    /// An agent silent this long is marked stale.
    pub stale_after_s: u64,
    /// Lifetime of agent certificates (agents renew at two thirds).
    pub cert_ttl_s: u64,
    /// How often desired host policies are recomputed and pushed.
    pub refresh_ms: u64,
    /// Extra SANs of the agent port's server certificate.
    pub extra_sans: Vec<String>,
    /// Where fleet metrics (`rampart_fleet_*`) are served as `/metrics`;
    /// unset: not served.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            stale_after_s: 15,
            cert_ttl_s: 30 * 86_400,
            refresh_ms: 1000,
            extra_sans: Vec::new(),
            metrics_listen: None,
        }
    }
}

/// `[southbound]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SouthboundConfig {
    /// OpenSSH known_hosts file for device host keys (default:
    /// `<data_dir>/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Record unknown device host keys instead of refusing them. Labs only:
    /// a changed key is still refused.
    pub trust_on_first_use: bool,
    /// Connect + SSH handshake + hello, milliseconds.
    pub connect_timeout_ms: u64,
    /// One RPC, milliseconds.
    pub rpc_timeout_ms: u64,
    /// Confirmed-commit timeout, seconds: how long a device waits for
    /// rampartd's confirmation before rolling back by itself.
    pub confirm_timeout_s: u64,
    /// Devices worked at once within one transaction.
    pub max_parallel_devices: usize,
    /// Time limit of one device's phase, milliseconds.
    pub device_timeout_ms: u64,
    /// Periodic drift check interval, seconds (0 disables).
    pub drift_interval_s: u64,
    /// Extra CA certificates (PEM bundle) trusted for HTTPS devices (FDM,
    /// Meraki, SD-WAN Manager) besides the system roots; read at connect.
    pub ca_bundle: Option<PathBuf>,
}

impl Default for SouthboundConfig {
    fn default() -> Self {
        Self {
            known_hosts: None,
            trust_on_first_use: false,
            connect_timeout_ms: 10_000,
            rpc_timeout_ms: 60_000,
            confirm_timeout_s: 120,
            max_parallel_devices: 16,
            device_timeout_ms: 120_000,
            drift_interval_s: 300,
            ca_bundle: None,
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve the API over TLS. Off only for labs: tokens then cross the
    /// network in clear (rampartd says so loudly).
    pub enabled: bool,
    /// Server certificate (PEM); unset: issued by the generated CA in
    /// `<data_dir>/tls/`.
    pub cert_file: Option<PathBuf>,
    /// Its key (PEM).
    pub key_file: Option<PathBuf>,
    /// CA bundle trusted for client certificates; unset: the generated CA.
    pub client_ca_file: Option<PathBuf>,
    /// More SANs for the generated server certificate (names or IPs).
    pub extra_sans: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            extra_sans: Vec::new(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// On a store without tokens, issue an admin token into
    /// `<data_dir>/admin.token` (0600).
    pub bootstrap_admin_token: bool,
    /// Expected `iss` of SSO JWTs; JWT validation is on when set.
    pub jwt_issuer: Option<String>,
    /// Expected `aud`.
    pub jwt_audience: Option<String>,
    /// The issuer's JWKS URL.
    pub jwks_url: Option<String>,
    /// Seconds a fetched JWKS is trusted before it is fetched again.
    pub jwks_refresh_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            bootstrap_admin_token: true,
            jwt_issuer: None,
            jwt_audience: None,
            jwks_url: None,
            jwks_refresh_secs: 300,
        }
    }
}

/// `[secrets]`
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Current key (base64 of 32 bytes); else `RAMPARTD_SECRET_KEY`, else
    /// `<data_dir>/secret.key` (generated).
    pub key_file: Option<PathBuf>,
    /// Older keys, for decrypting records not yet re-encrypted.
    pub previous_key_files: Vec<PathBuf>,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained requests per second per user.
    pub requests_per_second: f64,
    /// Requests a user may send at once above the sustained rate.
    pub burst: u32,
    /// Requests handled concurrently; more wait their turn.
    pub max_concurrent_requests: usize,
    /// Failed authentications per second per client address; beyond it
    /// the answer is ResourceExhausted and no longer audited.
    pub auth_failures_per_second: f64,
    /// Burst of failed authentications per client address.
    pub auth_failure_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50.0,
            burst: 100,
            max_concurrent_requests: 64,
            auth_failures_per_second: 2.0,
            auth_failure_burst: 20,
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Largest accepted request message, bytes (specs are small; this stops
    /// a client from making the daemon buffer gigabytes).
    pub max_request_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_request_bytes: 4 << 20,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// Listen address of the Prometheus endpoint (its own listener, so
    /// scraping never competes with API traffic).
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the sled database lives; see [`StoreConfig::resolved_data_dir`].
    /// With etcd it still holds the secret key and the TLS material.
    pub data_dir: Option<PathBuf>,
    /// Which store holds the state (see `docs/ha.md`).
    pub backend: StoreBackend,
    /// etcd client URLs (`https://10.0.0.1:2379`); required for etcd.
    pub etcd_endpoints: Vec<String>,
    /// CA bundle that signed the etcd servers' certificates.
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate for etcd's client-cert authentication.
    pub etcd_cert_file: Option<PathBuf>,
    /// Its private key.
    pub etcd_key_file: Option<PathBuf>,
    /// Every key rampartd writes starts with this, so one etcd cluster can
    /// hold several Rampart installations (or other users' data).
    pub etcd_prefix: Option<String>,
    /// Deadline of one etcd request, milliseconds (default 5000): past it a
    /// write is refused with an error naming etcd instead of hanging.
    pub etcd_timeout_ms: Option<u64>,
}

/// `[store] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Embedded, one machine, nothing to set up.
    #[default]
    Sled,
    /// An existing etcd cluster, shared by replicas.
    Etcd,
}

impl StoreConfig {
    /// Cross-field checks of `[store]`, appended to `errors`.
    fn check(&self, errors: &mut Vec<String>) {
        let etcd_set = !self.etcd_endpoints.is_empty()
            || self.etcd_ca_file.is_some()
            || self.etcd_cert_file.is_some()
            || self.etcd_key_file.is_some()
            || self.etcd_prefix.is_some()
            || self.etcd_timeout_ms.is_some();
        match self.backend {
            StoreBackend::Sled if etcd_set => errors.push(
                "store.etcd_*: set, but store.backend is \"sled\" (set backend = \"etcd\")"
                    .to_owned(),
            ),
            StoreBackend::Sled => {}
            StoreBackend::Etcd => self.check_etcd(errors),
        }
    }

    fn check_etcd(&self, errors: &mut Vec<String>) {
        if self.etcd_endpoints.is_empty() {
            errors.push("store.etcd_endpoints: required when store.backend = \"etcd\"".to_owned());
        }
        for e in &self.etcd_endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                errors.push(format!(
                    "store.etcd_endpoints: {e:?} must start with http:// or https://"
                ));
            }
        }
        let tls = self.etcd_ca_file.is_some() || self.etcd_cert_file.is_some();
        if tls && self.etcd_endpoints.iter().any(|e| e.starts_with("http://")) {
            errors.push(
                "store.etcd_endpoints: TLS files are set, so every endpoint must be https://"
                    .to_owned(),
            );
        }
        if self.etcd_cert_file.is_some() != self.etcd_key_file.is_some() {
            errors
                .push("store.etcd_cert_file, store.etcd_key_file: set both or neither".to_owned());
        }
        if let Some(p) = &self.etcd_prefix
            && !p.ends_with('/')
        {
            errors.push(format!(
                "store.etcd_prefix: {p:?} must end with '/' (so one prefix never covers another's keys)"
            ));
        }
        if self.etcd_timeout_ms.is_some_and(|t| t < 100) {
            errors.push("store.etcd_timeout_ms: must be at least 100".to_owned());
        }
    }

    /// The configured directory, or a default that works for whoever runs
    /// the daemon: systemd's `$STATE_DIRECTORY`, else
    /// `$XDG_DATA_HOME/rampart`, else `~/.local/share/rampart`, else
    /// `./rampart-data`.
    #[must_use]
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(d) = env("STATE_DIRECTORY") {
            // systemd may pass several, colon-separated; the first is ours.
            let first = d
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            return PathBuf::from(first);
        }
        if let Some(d) = env("XDG_DATA_HOME") {
            return d.join("rampart");
        }
        if let Some(h) = env("HOME") {
            return h.join(".local/share/rampart");
        }
        PathBuf::from("rampart-data")
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// `tracing` filter directive (`info`, `rampart_controller=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Values from flags or the environment that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `RAMPARTD_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--metrics-listen` / `RAMPARTD_METRICS_LISTEN`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--data-dir` / `RAMPARTD_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--log-format` / `RAMPARTD_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--log-level` / `RAMPARTD_LOG`.
    pub log_level: Option<String>,
    /// `--insecure` / `RAMPARTD_INSECURE`: plaintext API (labs only).
    pub insecure: bool,
}

impl Config {
    /// Loads `path` (defaults when `None`) and applies `overrides`.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem found.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Config::from_toml(&text, &p.display().to_string())?
            }
        };
        cfg.apply(overrides);
        cfg.check("flags and environment")?;
        Ok(cfg)
    }

    /// Parses a TOML document, reporting every error in it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with one entry per problem.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |errors| ConfigError::Invalid {
            origin: origin.to_owned(),
            errors,
        };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| line_of(text, s.start));
            invalid(vec![format!("line {}: {}", line.unwrap_or(0), e.message())])
        })?;
        match Config::deserialize(toml::Value::Table(table.clone())) {
            Ok(cfg) => {
                cfg.check(origin)?;
                Ok(cfg)
            }
            // serde stops at the first problem: probe each key on its own to
            // find them all.
            Err(_) => Err(invalid(collect_errors(text, &table))),
        }
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.listen {
            self.api.listen = v;
        }
        if let Some(v) = o.metrics_listen {
            self.metrics.listen = v;
        }
        if let Some(v) = &o.data_dir {
            self.store.data_dir = Some(v.clone());
        }
        if let Some(v) = o.log_format {
            self.log.format = v;
        }
        if let Some(v) = &o.log_level {
            self.log.level.clone_from(v);
        }
        if o.insecure {
            self.tls.enabled = false;
        }
    }

    /// Cross-field checks, all reported together.
    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if self.metrics.enabled
            && self.metrics.listen == self.api.listen
            && self.api.listen.port() != 0
        {
            errors.push(format!(
                "metrics.listen: {} is also api.listen; the two need their own sockets",
                self.metrics.listen
            ));
        }
        if self.api.max_request_bytes < 1024 {
            errors.push(format!(
                "api.max_request_bytes: {} is too small to carry any spec (minimum 1024)",
                self.api.max_request_bytes
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            errors.push(
                "tls.cert_file, tls.key_file: set both or neither (neither: rampartd issues its own)"
                    .to_owned(),
            );
        }
        let jwt = [
            ("auth.jwt_issuer", &self.auth.jwt_issuer),
            ("auth.jwt_audience", &self.auth.jwt_audience),
            ("auth.jwks_url", &self.auth.jwks_url),
        ];
        if jwt.iter().any(|(_, v)| v.is_some()) {
            for (key, v) in jwt {
                if v.as_deref().is_none_or(str::is_empty) {
                    errors.push(format!(
                        "{key}: required when any of auth.jwt_issuer, auth.jwt_audience, \
                         auth.jwks_url is set"
                    ));
                }
            }
        }
        if self.auth.jwks_refresh_secs == 0 {
            errors.push("auth.jwks_refresh_secs: must be at least 1".to_owned());
        }
        if !(self.limits.requests_per_second > 0.0 && self.limits.requests_per_second.is_finite()) {
            errors.push(format!(
                "limits.requests_per_second: {} must be a positive number",
                self.limits.requests_per_second
            ));
        }
        if !(self.limits.auth_failures_per_second > 0.0
            && self.limits.auth_failures_per_second.is_finite())
        {
            errors.push(format!(
                "limits.auth_failures_per_second: {} must be a positive number",
                self.limits.auth_failures_per_second
            ));
        }
        if self.limits.auth_failure_burst == 0 {
            errors.push("limits.auth_failure_burst: must be at least 1".to_owned());
        }
        if self.limits.burst == 0 {
            errors.push("limits.burst: must be at least 1".to_owned());
        }
        if self.limits.max_concurrent_requests == 0 {
            errors.push("limits.max_concurrent_requests: must be at least 1".to_owned());
        }
        if self.agents.stale_after_s == 0 {
            errors.push("agents.stale_after_s: must be at least 1".to_owned());
        }
        if self.agents.cert_ttl_s < 60 {
            errors.push(format!(
                "agents.cert_ttl_s: {} is too short (minimum 60)",
                self.agents.cert_ttl_s
            ));
        }
        if self.agents.refresh_ms < 10 {
            errors.push("agents.refresh_ms: must be at least 10".to_owned());
        }
        if let Some(a) = self.agents.listen
            && a.port() != 0
            && a == self.api.listen
        {
            errors.push(format!(
                "agents.listen: {a} is also api.listen; the agent port needs its own socket"
            ));
        }
        self.store.check(&mut errors);
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errors.push(format!(
                "log.level: {:?} is not a valid filter: {e}",
                self.log.level
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                errors,
            })
        }
    }
}

/// Probes every section and key separately so each problem is reported.
fn collect_errors(text: &str, table: &toml::Table) -> Vec<String> {
    const SECTIONS: [&str; 10] = [
        "api",
        "metrics",
        "store",
        "log",
        "tls",
        "auth",
        "secrets",
        "limits",
        "southbound",
        "agents",
    ];
    let mut errors = Vec::new();
    for (section, value) in table {
        let line = find_line(text, None, section);
        if !SECTIONS.contains(&section.as_str()) {
            errors.push(format!(
                "line {line}: unknown section [{section}] (expected one of {})",
                SECTIONS.join(", ")
            ));
            continue;
        }
        let Some(keys) = value.as_table() else {
            errors.push(format!(
                "line {line}: {section} must be a table ([{section}])"
            ));
            continue;
        };
        for (key, v) in keys {
            let mut one = toml::Table::new();
            let mut inner = toml::Table::new();
            inner.insert(key.clone(), v.clone());
            one.insert(section.clone(), toml::Value::Table(inner));
            if let Err(e) = Config::deserialize(toml::Value::Table(one)) {
                let line = find_line(text, Some(section), key);
                errors.push(format!(
                    "line {line}: {section}.{key}: {}",
                    e.message().trim()
                ));
            }
        }
    }
    errors
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// Best-effort line of `key` in `[section]` (or of the section header).
fn find_line(text: &str, section: Option<&str>, key: &str) -> usize {
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(h.trim().to_owned());
            if section.is_none() && h.trim() == key {
                return i + 1;
            }
            continue;
        }
        let k = line.split('=').next().unwrap_or_default().trim();
        if section.is_some() && current.as_deref() == section && k == key {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `systemd/rampartd.toml` says it lists every setting at its default:
    /// every key of [`Config`] is in it (active, or commented out with an
    /// example where there is no default), and every active value is the
    /// default except the two lines it marks `shipped:`.
    #[test]
    fn the_shipped_file_lists_every_setting_at_its_default() {
        let text = include_str!("../../systemd/rampartd.toml");
        let shipped = Config::from_toml(text, "rampartd.toml").unwrap();
        let mut expected = Config::default();
        expected.log.format = LogFormat::Json;
        expected.agents.listen = Some(SocketAddr::from(([0, 0, 0, 0], 7443)));
        assert_eq!(shipped, expected);
        assert_eq!(text.matches("# shipped:").count(), 2);

        // Commented-out examples are real keys with valid values.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(kv) if kv.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => kv,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        Config::from_toml(&uncommented, "uncommented").unwrap();
        let listed: toml::Table = toml::from_str(&uncommented).unwrap();
        // JSON keeps `None` fields (as null), so it names every key.
        let serde_json::Value::Object(all) = serde_json::to_value(Config::default()).unwrap()
        else {
            panic!("config is not an object");
        };
        for (section, keys) in &all {
            let serde_json::Value::Object(keys) = keys else {
                panic!("[{section}] is not a table");
            };
            let in_file = listed
                .get(section)
                .and_then(toml::Value::as_table)
                .unwrap_or_else(|| panic!("[{section}] missing from rampartd.toml"));
            let want: std::collections::BTreeSet<&String> = keys.keys().collect();
            let have: std::collections::BTreeSet<&String> = in_file.keys().collect();
            assert_eq!(have, want, "keys of [{section}] in rampartd.toml");
        }
        assert_eq!(listed.len(), all.len(), "sections of rampartd.toml");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = Config::from_toml("", "t.toml").unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.api.listen.port(), 50051);
    }

    #[test]
    fn full_file_parses() {
        let cfg = Config::from_toml(
            "[api]\nlisten = \"0.0.0.0:7000\"\n[metrics]\nlisten = \"127.0.0.1:7001\"\n\
             [store]\ndata_dir = \"/tmp/x\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(cfg.api.listen.port(), 7000);
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.store.resolved_data_dir(), PathBuf::from("/tmp/x"));
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text = "[api]\nlisten = \"nonsense\"\nlisten_port = 3\n[metrics]\nenabled = \"yes\"\n\
                    [bogus]\nx = 1\n";
        let Err(ConfigError::Invalid { errors, .. }) = Config::from_toml(text, "t.toml") else {
            panic!("expected errors");
        };
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 4, "{joined}");
        assert!(joined.contains("line 2: api.listen"), "{joined}");
        assert!(
            joined.contains("line 3: api.listen_port: unknown field"),
            "{joined}"
        );
        assert!(joined.contains("line 5: metrics.enabled"), "{joined}");
        assert!(
            joined.contains("line 6: unknown section [bogus]"),
            "{joined}"
        );
    }

    #[test]
    fn security_sections_parse_and_are_checked_together() {
        let cfg = Config::from_toml(
            "[tls]\nenabled = false\nextra_sans = [\"rampart.example\"]\n\
             [auth]\njwt_issuer = \"https://sso\"\njwt_audience = \"rampart\"\n\
             jwks_url = \"https://sso/jwks\"\n[secrets]\nkey_file = \"/k\"\n\
             previous_key_files = [\"/old\"]\n[limits]\nrequests_per_second = 5.0\nburst = 10\n",
            "t.toml",
        )
        .unwrap();
        assert!(!cfg.tls.enabled);
        assert_eq!(cfg.limits.burst, 10);
        assert_eq!(cfg.secrets.previous_key_files.len(), 1);
        let Err(ConfigError::Invalid { errors, .. }) = Config::from_toml(
            "[tls]\ncert_file = \"/c\"\n[auth]\njwt_issuer = \"x\"\n[limits]\nburst = 0\n",
            "t.toml",
        ) else {
            panic!("expected errors");
        };
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 4, "{joined}");
        assert!(joined.contains("tls.cert_file"), "{joined}");
        assert!(joined.contains("auth.jwks_url: required"), "{joined}");
        assert!(joined.contains("limits.burst"), "{joined}");
        assert!(
            Config::load(
                None,
                &Overrides {
                    insecure: true,
                    ..Overrides::default()
                }
            )
            .is_ok_and(|c| !c.tls.enabled)
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let Err(ConfigError::Invalid { errors, .. }) =
            Config::from_toml("[api]\nlisten = = 3\n", "t.toml")
        else {
            panic!("expected error");
        };
        assert!(errors[0].starts_with("line 2:"), "{errors:?}");
    }

    #[test]
    fn cross_field_checks_and_overrides() {
        let o = Overrides {
            listen: Some("127.0.0.1:9000".parse().unwrap()),
            metrics_listen: Some("127.0.0.1:9000".parse().unwrap()),
            log_level: Some("[[bad".into()),
            ..Overrides::default()
        };
        let Err(ConfigError::Invalid { errors, .. }) = Config::load(None, &o) else {
            panic!("expected errors");
        };
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn store_backend_etcd_is_checked_naming_fields() {
        let cfg = Config::from_toml(
            "[store]\nbackend = \"etcd\"\netcd_endpoints = [\"https://10.0.0.1:2379\"]\n\
             etcd_ca_file = \"/ca.pem\"\netcd_prefix = \"/lab/\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(cfg.store.backend, StoreBackend::Etcd);
        assert_eq!(Config::default().store.backend, StoreBackend::Sled);
        let Err(ConfigError::Invalid { errors, .. }) = Config::from_toml(
            "[store]\nbackend = \"etcd\"\netcd_cert_file = \"/c\"\netcd_prefix = \"x\"\n",
            "t.toml",
        ) else {
            panic!("accepted");
        };
        let all = errors.join("\n");
        for field in ["etcd_endpoints: required", "etcd_key_file", "etcd_prefix"] {
            assert!(all.contains(field), "{field} missing in {all}");
        }
        let Err(ConfigError::Invalid { errors, .. }) = Config::from_toml(
            "[store]\nbackend = \"zookeeper\"\netcd_endpoint = 1\n",
            "t.toml",
        ) else {
            panic!("accepted");
        };
        assert!(
            errors.iter().any(|e| e.contains("line 2: store.backend")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("line 3: store.etcd_endpoint")),
            "{errors:?}"
        );
    }
}
