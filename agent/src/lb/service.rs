//! Validated virtual-service definitions: what the agent's load balancer
//! is asked to serve. Built from the policy's `virtual_services` (or
//! directly by tests and the benchmark); every refusal names the service,
//! the backend and the field.

use std::net::IpAddr;

use thiserror::Error;

use super::maglev::{self, MaglevError};

/// How packets reach a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// IP-in-IP encapsulation, direct server return (Katran's mode).
    #[default]
    Ipip,
    /// Destination rewrite with reverse translation on the way back.
    Dnat,
}

/// One backend of a service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct BackendSpec {
    /// Backend address (same family as the VIP).
    pub address: IpAddr,
    /// Backend port (DNAT mode; IPIP keeps the VIP's port). 0 = VIP port.
    #[serde(default)]
    pub port: u16,
    /// Relative weight, 1..=10000; 0 removes it from the table.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// A virtual service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ServiceSpec {
    /// Name (logs, metrics).
    pub name: String,
    /// The VIP.
    pub address: IpAddr,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// VIP port.
    pub port: u16,
    /// Backends.
    pub backends: Vec<BackendSpec>,
    /// Forwarding mode.
    #[serde(default)]
    pub mode: Mode,
    /// Maglev table size; 0 = automatic (65537, or the next prime >= 100 x
    /// backends).
    #[serde(default)]
    pub maglev_table_size: u32,
}

/// A refused service definition.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ServiceError {
    /// Bad protocol.
    #[error("virtual service {service:?}: protocol {protocol} is not 6 (tcp) or 17 (udp)")]
    Protocol {
        /// Service name.
        service: String,
        /// Value.
        protocol: u32,
    },
    /// Port 0 or out of range.
    #[error("virtual service {service:?}: {field} {value} is not a port (1-65535)")]
    Port {
        /// Service name.
        service: String,
        /// Field name.
        field: String,
        /// Value.
        value: u32,
    },
    /// Address unparsable.
    #[error("virtual service {service:?}: {field} {value:?} is not an IP address")]
    Address {
        /// Service name.
        service: String,
        /// Field name.
        field: String,
        /// Value.
        value: String,
    },
    /// Backend family differs from the VIP's.
    #[error("virtual service {service:?}: backend {backend} is not in the VIP's address family")]
    Family {
        /// Service name.
        service: String,
        /// Backend address.
        backend: IpAddr,
    },
    /// Same backend twice.
    #[error("virtual service {service:?}: backend {backend} listed twice")]
    DuplicateBackend {
        /// Service name.
        service: String,
        /// Backend.
        backend: IpAddr,
    },
    /// Same VIP twice.
    #[error(
        "virtual service {service:?}: VIP {address} port {port} protocol {protocol} already used by {other:?}"
    )]
    DuplicateVip {
        /// Service name.
        service: String,
        /// Other service.
        other: String,
        /// VIP.
        address: IpAddr,
        /// Port.
        port: u16,
        /// Protocol.
        protocol: u8,
    },
    /// Maglev parameters refused.
    #[error("virtual service {service:?}: {source}")]
    Maglev {
        /// Service name.
        service: String,
        /// Why.
        #[source]
        source: MaglevError,
    },
    /// Mode not available.
    #[error("virtual service {service:?}: mode {mode:?} is not supported by this agent yet")]
    Unsupported {
        /// Service name.
        service: String,
        /// Mode.
        mode: Mode,
    },
}

/// Checks a set of services; the first problem is returned and nothing is
/// applied.
pub fn validate(services: &[ServiceSpec]) -> Result<(), ServiceError> {
    let mut seen: std::collections::HashMap<(IpAddr, u16, u8), &str> = Default::default();
    for s in services {
        let service = s.name.clone();
        if s.protocol != 6 && s.protocol != 17 {
            return Err(ServiceError::Protocol {
                service,
                protocol: u32::from(s.protocol),
            });
        }
        if s.port == 0 {
            return Err(ServiceError::Port {
                service,
                field: "port".into(),
                value: 0,
            });
        }
        if let Some(other) = seen.insert((s.address, s.port, s.protocol), &s.name) {
            return Err(ServiceError::DuplicateVip {
                service,
                other: other.to_string(),
                address: s.address,
                port: s.port,
                protocol: s.protocol,
            });
        }
        let mut backends = std::collections::HashSet::new();
        for b in &s.backends {
            if b.address.is_ipv4() != s.address.is_ipv4() {
                return Err(ServiceError::Family {
                    service,
                    backend: b.address,
                });
            }
            if !backends.insert((b.address, b.port)) {
                return Err(ServiceError::DuplicateBackend {
                    service,
                    backend: b.address,
                });
            }
            if b.weight > 10_000 {
                return Err(ServiceError::Maglev {
                    service,
                    source: MaglevError::Weight {
                        index: backends.len() - 1,
                        weight: b.weight,
                    },
                });
            }
        }
        maglev::table_size(s.maglev_table_size, s.backends.len())
            .map_err(|source| ServiceError::Maglev { service, source })?;
    }
    Ok(())
}
