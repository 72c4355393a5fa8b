//! Agent configuration: TOML file (default `/etc/rampart/agent.toml`),
//! every field optional, command-line flags override.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use thiserror::Error;

use crate::{attach::XdpModePref, fw::maps::Timeouts};

/// Configuration errors.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// File.
        path: String,
        /// Parser error (with line and column).
        #[source]
        source: Box<toml::de::Error>,
    },
}

/// Conntrack timeouts in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// TCP flow that has only seen a SYN.
    pub tcp_syn_secs: u64,
    /// Established TCP flow.
    pub tcp_established_secs: u64,
    /// TCP flow after FIN/RST.
    pub tcp_closed_secs: u64,
    /// UDP and other protocols.
    pub udp_secs: u64,
    /// ICMP echo.
    pub icmp_secs: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        Self {
            tcp_syn_secs: t.tcp_syn.as_secs(),
            tcp_established_secs: t.tcp_established.as_secs(),
            tcp_closed_secs: t.tcp_closed.as_secs(),
            udp_secs: t.udp.as_secs(),
            icmp_secs: t.icmp.as_secs(),
        }
    }
}

impl TimeoutConfig {
    /// As the map writer's type.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            tcp_syn: Duration::from_secs(self.tcp_syn_secs),
            tcp_established: Duration::from_secs(self.tcp_established_secs),
            tcp_closed: Duration::from_secs(self.tcp_closed_secs),
            udp: Duration::from_secs(self.udp_secs),
            icmp: Duration::from_secs(self.icmp_secs),
        }
    }
}

/// The agent's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// bpffs directory holding one sub-directory of pins per interface.
    pub pin_root: PathBuf,
    /// Prometheus `/metrics` listen address.
    pub metrics_listen: SocketAddr,
    /// Conntrack entries per interface (a policy's `conntrack_max` wins);
    /// takes effect when the maps are created (first attach after detach).
    pub conntrack_max: u32,
    /// XDP attach mode.
    pub xdp_mode: XdpModePref,
    /// How often the policy file is checked for changes.
    pub reload_interval_ms: u64,
    /// Conntrack timeouts.
    pub timeouts: TimeoutConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pin_root: PathBuf::from("/sys/fs/bpf/rampart"),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9469)),
            conntrack_max: 65_536,
            xdp_mode: XdpModePref::Auto,
            reload_interval_ms: 500,
            timeouts: TimeoutConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path`, or returns the defaults when `path` is `None`.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            source: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_keeps_defaults_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "conntrack_max = 1000\n[timeouts]\nudp_secs = 5\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.conntrack_max, 1000);
        assert_eq!(c.timeouts.udp_secs, 5);
        assert_eq!(c.timeouts.tcp_syn_secs, 30);
        std::fs::write(&p, "conntrak_max = 1\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("conntrak_max"), "{e}");
    }

    #[test]
    fn shipped_sample_is_the_defaults() {
        let sample: Config = toml::from_str(include_str!("../../systemd/agent.toml")).unwrap();
        let d = Config::default();
        assert_eq!(sample.pin_root, d.pin_root);
        assert_eq!(sample.metrics_listen, d.metrics_listen);
        assert_eq!(sample.conntrack_max, d.conntrack_max);
        assert_eq!(sample.xdp_mode, d.xdp_mode);
        assert_eq!(sample.reload_interval_ms, d.reload_interval_ms);
        let (s, d) = (sample.timeouts.timeouts(), d.timeouts.timeouts());
        assert_eq!(
            (s.tcp_syn, s.tcp_established, s.tcp_closed, s.udp, s.icmp),
            (d.tcp_syn, d.tcp_established, d.tcp_closed, d.udp, d.icmp)
        );
    }
}
