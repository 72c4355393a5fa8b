//! The policy's `virtual_services` turned into what the load balancer
//! runs: per interface, validated [`ServiceSpec`]s and their health checks.
//! Every refusal names the virtual service (by name, or index when the name
//! is missing), the backend and the field, so a hand-written file or a
//! controller push is fixed in one round.

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use rampart_proto::v1 as pb;
use thiserror::Error;

use super::{
    health::{Check, HealthSpec},
    maglev,
    service::{self, BackendSpec, Mode, ServiceError, ServiceSpec},
};

/// Default probe period when the policy leaves `interval_ms` at 0.
pub const DEFAULT_INTERVAL_MS: u32 = 1000;
/// Default per-probe timeout when the policy leaves `timeout_ms` at 0.
pub const DEFAULT_TIMEOUT_MS: u32 = 500;
/// Largest accepted backend weight (the Maglev table's limit).
pub const MAX_WEIGHT: u32 = 10_000;

/// A refused `virtual_services` section.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LbPolicyError {
    /// A field of a virtual service (or of one of its backends) is invalid.
    #[error("virtual service {service}{}: {field}: {reason}", backend.as_ref().map(|b| format!(" backend {b}")).unwrap_or_default())]
    Field {
        /// Virtual service name (or `#index`).
        service: String,
        /// Backend, as written (or `#index`), when the field is a backend's.
        backend: Option<String>,
        /// Field name, as in the policy file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Two virtual services share a name.
    #[error("virtual service name {name:?} is used twice (entries {first} and {second})")]
    DuplicateName {
        /// The name.
        name: String,
        /// Index of the first entry.
        first: usize,
        /// Index of the second entry.
        second: usize,
    },
    /// The load balancer's own validation refused a service.
    #[error("interface {interface}: {source}")]
    Service {
        /// Interface of the services.
        interface: String,
        /// The refusal.
        #[source]
        source: ServiceError,
    },
    /// The interface does not exist on this host.
    #[error("virtual service {service}: interface {interface:?} does not exist on this host")]
    UnknownInterface {
        /// Virtual service name.
        service: String,
        /// Interface.
        interface: String,
    },
    /// More services on one interface than the dataplane has room for.
    #[error(
        "interface {interface}: {count} virtual services, the load balancer has room for {max}"
    )]
    TooManyServices {
        /// Interface.
        interface: String,
        /// Services asked for.
        count: usize,
        /// Room.
        max: u32,
    },
}

/// One virtual service as the agent runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbService {
    /// Interface whose ingress runs the balancer.
    pub interface: String,
    /// What the dataplane serves.
    pub spec: ServiceSpec,
    /// Health checking of the backends, when configured.
    pub health: Option<HealthSpec>,
    /// Owner (reports).
    pub owner: String,
    /// Tenant (reports).
    pub tenant: String,
}

impl LbService {
    /// The backends' probe targets: address and the port they serve on.
    #[must_use]
    pub fn targets(&self) -> Vec<SocketAddr> {
        self.spec
            .backends
            .iter()
            .map(|b| SocketAddr::new(b.address, backend_port(&self.spec, b)))
            .collect()
    }
}

/// The port a backend serves on (its own, or the VIP's).
#[must_use]
pub fn backend_port(s: &ServiceSpec, b: &BackendSpec) -> u16 {
    if b.port == 0 { s.port } else { b.port }
}

/// The services of a policy, by interface.
pub type LbPlan = BTreeMap<String, Vec<LbService>>;

fn port(
    v: u32,
    service: &str,
    backend: Option<&str>,
    field: &'static str,
) -> Result<u16, LbPolicyError> {
    u16::try_from(v).map_err(|_| LbPolicyError::Field {
        service: service.to_owned(),
        backend: backend.map(str::to_owned),
        field,
        reason: format!("{v} is not a port (1-65535)"),
    })
}

fn health(h: &pb::HealthCheck, service: &str) -> Result<HealthSpec, LbPolicyError> {
    let bad = |field: &'static str, reason: String| LbPolicyError::Field {
        service: service.to_owned(),
        backend: None,
        field,
        reason,
    };
    let check = match pb::HealthCheckKind::try_from(h.kind) {
        Ok(pb::HealthCheckKind::Tcp) => {
            if !h.path.is_empty() {
                return Err(bad(
                    "health_check.path",
                    "a path is only meaningful for kind http".to_owned(),
                ));
            }
            Check::Tcp
        }
        Ok(pb::HealthCheckKind::Http) => {
            let path = if h.path.is_empty() {
                "/".to_owned()
            } else {
                h.path.clone()
            };
            if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(
                    "health_check.path",
                    format!("{path:?} is not an absolute path without spaces"),
                ));
            }
            let status = if h.expected_status == 0 {
                200
            } else {
                h.expected_status
            };
            if !(100..=599).contains(&status) {
                return Err(bad(
                    "health_check.expected_status",
                    format!("{status} is not an HTTP status (100-599)"),
                ));
            }
            Check::Http {
                path,
                expect_status: u16::try_from(status).unwrap_or(200),
            }
        }
        _ => {
            return Err(bad(
                "health_check.kind",
                "missing or unknown (tcp or http)".to_owned(),
            ));
        }
    };
    let interval = if h.interval_ms == 0 {
        DEFAULT_INTERVAL_MS
    } else {
        h.interval_ms
    };
    let timeout = if h.timeout_ms == 0 {
        DEFAULT_TIMEOUT_MS.min(interval)
    } else {
        h.timeout_ms
    };
    if interval < 10 {
        return Err(bad(
            "health_check.interval_ms",
            format!("{interval} ms is below 10 ms"),
        ));
    }
    if timeout > interval {
        return Err(bad(
            "health_check.timeout_ms",
            format!("{timeout} ms exceeds interval_ms {interval}"),
        ));
    }
    let defaults = HealthSpec::default();
    Ok(HealthSpec {
        check,
        interval: Duration::from_millis(u64::from(interval)),
        timeout: Duration::from_millis(u64::from(timeout)),
        rise: if h.rise == 0 { defaults.rise } else { h.rise },
        fall: if h.fall == 0 { defaults.fall } else { h.fall },
    })
}

/// Converts one virtual service (fields only; cross-service checks are in
/// [`plan`]). `index` names it when the name is missing.
///
/// # Errors
/// [`LbPolicyError::Field`] naming the service, backend and field.
pub fn convert(vs: &pb::VirtualService, index: usize) -> Result<LbService, LbPolicyError> {
    let service = if vs.name.is_empty() {
        format!("#{index}")
    } else {
        vs.name.clone()
    };
    let bad = |field: &'static str, reason: String| LbPolicyError::Field {
        service: service.clone(),
        backend: None,
        field,
        reason,
    };
    if vs.name.is_empty() {
        return Err(bad("name", "missing".to_owned()));
    }
    if vs.interface.is_empty() {
        return Err(bad(
            "interface",
            "missing (the interface whose ingress runs the load balancer)".to_owned(),
        ));
    }
    let address: IpAddr = vs
        .vip
        .parse()
        .map_err(|_| bad("vip", format!("{:?} is not an IP address", vs.vip)))?;
    let protocol = match vs.protocol {
        6 | 17 => u8::try_from(vs.protocol).unwrap_or(6),
        p => return Err(bad("protocol", format!("{p} is not 6 (tcp) or 17 (udp)"))),
    };
    let vport = port(vs.port, &service, None, "port")?;
    if vport == 0 {
        return Err(bad("port", "missing (1-65535)".to_owned()));
    }
    let mode = match pb::ForwardingMode::try_from(vs.mode) {
        Ok(pb::ForwardingMode::Unspecified | pb::ForwardingMode::Ipip) => Mode::Ipip,
        Ok(pb::ForwardingMode::Dnat) => Mode::Dnat,
        Err(_) => return Err(bad("mode", format!("unknown value {}", vs.mode))),
    };
    if vs.maglev_table_size != 0 && !maglev::is_prime(vs.maglev_table_size) {
        return Err(bad(
            "maglev_table_size",
            format!("{} is not prime", vs.maglev_table_size),
        ));
    }
    let mut backends = Vec::with_capacity(vs.backends.len());
    let mut seen = HashSet::new();
    for (i, b) in vs.backends.iter().enumerate() {
        let label = if b.address.is_empty() {
            format!("#{i}")
        } else {
            b.address.clone()
        };
        let bbad = |field: &'static str, reason: String| LbPolicyError::Field {
            service: service.clone(),
            backend: Some(label.clone()),
            field,
            reason,
        };
        let addr: IpAddr = b
            .address
            .parse()
            .map_err(|_| bbad("address", format!("{:?} is not an IP address", b.address)))?;
        if addr.is_ipv4() != address.is_ipv4() {
            return Err(bbad(
                "address",
                format!("not in the address family of the VIP {address}"),
            ));
        }
        let bport = port(b.port, &service, Some(&label), "port")?;
        if mode == Mode::Ipip && bport != 0 && bport != vport {
            return Err(bbad(
                "port",
                format!(
                    "{bport} differs from the VIP port {vport}: IP-in-IP keeps the destination port (use mode dnat)"
                ),
            ));
        }
        let weight = b.weight.unwrap_or(1);
        if weight > MAX_WEIGHT {
            return Err(bbad("weight", format!("{weight} exceeds {MAX_WEIGHT}")));
        }
        if !seen.insert((addr, if bport == 0 { vport } else { bport })) {
            return Err(bbad("address", "listed twice".to_owned()));
        }
        backends.push(BackendSpec {
            address: addr,
            port: bport,
            weight,
        });
    }
    let health = vs
        .health_check
        .as_ref()
        .map(|h| health(h, &service))
        .transpose()?;
    Ok(LbService {
        interface: vs.interface.clone(),
        spec: ServiceSpec {
            name: service,
            address,
            protocol,
            port: vport,
            backends,
            mode,
            maglev_table_size: vs.maglev_table_size,
        },
        health,
        owner: vs.service.clone(),
        tenant: vs.tenant.clone(),
    })
}

/// Converts and validates a policy's virtual services, grouped by
/// interface. Nothing is touched: this is the check both apply paths run
/// before changing either the firewall or the load balancer.
///
/// # Errors
/// The first problem, naming service, backend and field.
pub fn plan(
    services: &[pb::VirtualService],
    interface_exists: &dyn Fn(&str) -> bool,
    max_vips: u32,
    max_table_size: u32,
) -> Result<LbPlan, LbPolicyError> {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = LbPlan::new();
    for (i, vs) in services.iter().enumerate() {
        let s = convert(vs, i)?;
        if let Some(first) = names.insert(vs.name.as_str(), i) {
            return Err(LbPolicyError::DuplicateName {
                name: vs.name.clone(),
                first,
                second: i,
            });
        }
        if !interface_exists(&s.interface) {
            return Err(LbPolicyError::UnknownInterface {
                service: s.spec.name,
                interface: s.interface,
            });
        }
        let size = maglev::table_size(s.spec.maglev_table_size, s.spec.backends.len()).map_err(
            |source| LbPolicyError::Service {
                interface: s.interface.clone(),
                source: ServiceError::Maglev {
                    service: s.spec.name.clone(),
                    source,
                },
            },
        )?;
        if size > max_table_size {
            return Err(LbPolicyError::Field {
                service: s.spec.name,
                backend: None,
                field: "maglev_table_size",
                reason: format!(
                    "a table of {size} slots exceeds the agent's maximum {max_table_size}"
                ),
            });
        }
        out.entry(s.interface.clone()).or_default().push(s);
    }
    for (interface, list) in &out {
        if list.len() > max_vips as usize {
            return Err(LbPolicyError::TooManyServices {
                interface: interface.clone(),
                count: list.len(),
                max: max_vips,
            });
        }
        let specs: Vec<ServiceSpec> = list.iter().map(|s| s.spec.clone()).collect();
        service::validate(&specs).map_err(|source| LbPolicyError::Service {
            interface: interface.clone(),
            source,
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(yaml: &str) -> Vec<pb::VirtualService> {
        let p: pb::HostPolicy =
            serde_norway::from_str(&format!("virtual_services:\n{yaml}")).expect("parses");
        p.virtual_services
    }

    const WEB: &str = "  - name: web
    interface: eth0
    vip: 172.30.0.100
    protocol: tcp
    port: 80
    backends:
      - {address: 10.0.0.11}
      - {address: 10.0.0.12, weight: 3}
      - {address: 10.0.0.13, weight: 0}
    health_check: {kind: http, path: /healthz, interval_ms: 200, timeout_ms: 100, fall: 2}
";

    fn yes(_: &str) -> bool {
        true
    }

    #[test]
    fn a_hand_written_section_converts_with_defaults() {
        let p = plan(&vs(WEB), &yes, 16, 65_537).unwrap();
        let s = &p["eth0"][0];
        assert_eq!(s.spec.protocol, 6, "tcp spelled as a word");
        assert_eq!(s.spec.mode, Mode::Ipip, "mode defaults to ipip");
        let w: Vec<u32> = s.spec.backends.iter().map(|b| b.weight).collect();
        assert_eq!(w, [1, 3, 0], "absent weight = 1, 0 drains");
        let h = s.health.as_ref().unwrap();
        assert_eq!(
            h.check,
            Check::Http {
                path: "/healthz".into(),
                expect_status: 200
            }
        );
        assert_eq!((h.rise, h.fall), (2, 2), "rise default, fall given");
        assert_eq!(h.interval, Duration::from_millis(200));
        assert_eq!(
            s.targets()[0],
            "10.0.0.11:80".parse::<SocketAddr>().unwrap(),
            "probes go to the VIP port"
        );
    }

    fn err(yaml: &str) -> String {
        plan(&vs(yaml), &|i| i == "eth0", 16, 65_537)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn refusals_name_service_backend_and_field() {
        let cases = [
            (
                WEB.replace("172.30.0.100", "172.30.0.300"),
                "virtual service web: vip: \"172.30.0.300\" is not an IP address",
            ),
            (
                WEB.replace("protocol: tcp", "protocol: 1"),
                "virtual service web: protocol: 1 is not 6 (tcp) or 17 (udp)",
            ),
            (
                WEB.replace("port: 80", "port: 70000"),
                "virtual service web: port: 70000 is not a port (1-65535)",
            ),
            (
                WEB.replace(
                    "{address: 10.0.0.12, weight: 3}",
                    "{address: 10.0.0.12, port: 8080}",
                ),
                "virtual service web backend 10.0.0.12: port: 8080 differs from the VIP port 80: IP-in-IP keeps the destination port (use mode dnat)",
            ),
            (
                WEB.replace("10.0.0.13", "fd00::13"),
                "virtual service web backend fd00::13: address: not in the address family of the VIP 172.30.0.100",
            ),
            (
                WEB.replace("10.0.0.13, weight: 0", "10.0.0.11"),
                "virtual service web backend 10.0.0.11: address: listed twice",
            ),
            (
                WEB.replace("weight: 3", "weight: 20000"),
                "virtual service web backend 10.0.0.12: weight: 20000 exceeds 10000",
            ),
            (
                WEB.replace("interface: eth0", "interface: eth9"),
                "virtual service web: interface \"eth9\" does not exist on this host",
            ),
            (
                WEB.replace("kind: http, path: /healthz", "kind: tcp, path: /healthz"),
                "virtual service web: health_check.path: a path is only meaningful for kind http",
            ),
            (
                WEB.replace("timeout_ms: 100", "timeout_ms: 300"),
                "virtual service web: health_check.timeout_ms: 300 ms exceeds interval_ms 200",
            ),
            (
                WEB.replace("    interface: eth0\n", ""),
                "virtual service web: interface: missing (the interface whose ingress runs the load balancer)",
            ),
            (
                format!("{WEB}{}", WEB.replace("port: 80", "port: 81")),
                "virtual service name \"web\" is used twice (entries 0 and 1)",
            ),
            (
                format!("{WEB}{}", WEB.replace("name: web", "name: www")),
                "interface eth0: virtual service \"www\": VIP 172.30.0.100 port 80 protocol 6 already used by \"web\"",
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(err(&yaml), want, "for:\n{yaml}");
        }
    }

    #[test]
    fn unknown_words_are_refused_when_parsing() {
        let e = serde_norway::from_str::<pb::HostPolicy>(
            "virtual_services:\n  - {name: a, mode: gre}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown value \"gre\""), "{e}");
        let e = serde_norway::from_str::<pb::HostPolicy>(
            "virtual_services:\n  - {name: a, protocol: sctp}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown protocol \"sctp\""), "{e}");
    }

    #[test]
    fn ipv6_services_convert() {
        let six = "  - name: web6
    interface: eth0
    vip: 'fd01::100'
    protocol: 17
    port: 53
    mode: dnat
    backends: [{address: 'fd00::11', port: 5353}, {address: 'fd00::12', port: 5353, weight: 2}]
";
        let p = plan(&vs(six), &yes, 16, 65_537).unwrap();
        let s = &p["eth0"][0];
        assert!(s.spec.address.is_ipv6());
        assert_eq!(
            s.targets(),
            [
                "[fd00::11]:5353".parse::<SocketAddr>().unwrap(),
                "[fd00::12]:5353".parse().unwrap()
            ]
        );
        assert!(s.health.is_none(), "no health_check: backends always up");
    }

    #[test]
    fn the_example_policy_file_is_valid() {
        let p: pb::HostPolicy =
            serde_norway::from_str(include_str!("../../../examples/agent/lb-policy.yaml"))
                .expect("example parses");
        let plan = plan(&p.virtual_services, &yes, 16, 65_537).expect("example is valid");
        let specs = &plan["eth0"];
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].spec.mode, Mode::Dnat);
        assert_eq!(
            specs[1].targets()[0],
            "10.0.1.21:5353".parse::<SocketAddr>().unwrap(),
            "DNAT backends are probed on their own port"
        );
        crate::fw::policy::compile(&p, &yes).expect("firewall section compiles");
    }

    #[test]
    fn the_same_vip_on_two_interfaces_is_two_balancers() {
        let two = format!(
            "{WEB}{}",
            WEB.replace("name: web", "name: web2")
                .replace("interface: eth0", "interface: eth1")
        );
        let p = plan(&vs(&two), &yes, 16, 65_537).unwrap();
        assert_eq!(p.len(), 2);
        let e = plan(&vs(WEB), &yes, 16, 1_000).unwrap_err().to_string();
        assert_eq!(
            e,
            "virtual service web: maglev_table_size: a table of 65537 slots exceeds the agent's maximum 1000"
        );
    }
}
