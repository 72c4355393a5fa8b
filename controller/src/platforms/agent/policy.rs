//! The host policy of one agent: the union of the host sections of every
//! service whose selector matches the agent's labels, merged by interface
//! and direction. Two services on one interface may not disagree on the
//! default action or reuse a rule sequence: that is a conflict, reported
//! (and nothing is pushed) rather than guessed.
//!
//! Load-balancer services add their `virtual_services`; two virtual
//! services claiming the same VIP, port and protocol on one agent are a
//! conflict naming both (service and virtual service).

use std::collections::BTreeMap;

use prost::Message as _;
use rampart_proto::v1 as pb;

use super::render::{firewall_policy, load_balancer_policy};
use crate::{model::spec::ServiceBody, store::StoredService};

/// Whether every selector label is among `labels`.
#[must_use]
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The merged policy for `labels` (version 0; the registry versions it).
///
/// # Errors
/// A message naming both services and the interface on a conflict.
pub fn policy_for(
    services: &[StoredService],
    labels: &BTreeMap<String, String>,
) -> Result<pb::HostPolicy, String> {
    // (interface, direction) -> (policy, owner of its default action)
    let mut merged: BTreeMap<(String, i32), (pb::InterfacePolicy, String)> = BTreeMap::new();
    let virtual_services = merge_virtual_services(services, labels)?;
    for svc in services {
        let ServiceBody::Firewall(fw) = &svc.spec.body else {
            continue;
        };
        let owner = svc.key();
        for target in fw
            .targets
            .hosts
            .iter()
            .filter(|t| selects(&t.selector, labels))
        {
            let frag = firewall_policy(fw, &svc.spec.metadata, target);
            for ifp in frag.interfaces {
                let key = (ifp.interface.clone(), ifp.direction);
                match merged.get_mut(&key) {
                    None => {
                        merged.insert(key, (ifp, owner.clone()));
                    }
                    Some((have, first)) => {
                        if have.default_action != ifp.default_action {
                            return Err(format!(
                                "services {first} and {owner} set different default actions on interface {}",
                                ifp.interface
                            ));
                        }
                        for r in ifp.rules {
                            if have.rules.iter().any(|h| h.sequence == r.sequence) {
                                return Err(format!(
                                    "services {first} and {owner} both use rule sequence {} on interface {}",
                                    r.sequence, ifp.interface
                                ));
                            }
                            have.rules.push(r);
                        }
                        have.rules.sort_by_key(|r| r.sequence);
                    }
                }
            }
        }
    }
    Ok(pb::HostPolicy {
        version: 0,
        interfaces: merged.into_values().map(|(p, _)| p).collect(),
        conntrack_max: 0,
        virtual_services,
    })
}

fn protocol_name(p: u32) -> String {
    match p {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        n => format!("protocol {n}"),
    }
}

/// The virtual services of every load-balancer service selecting `labels`,
/// sorted by name.
fn merge_virtual_services(
    services: &[StoredService],
    labels: &BTreeMap<String, String>,
) -> Result<Vec<pb::VirtualService>, String> {
    // (vip, port, protocol) -> (owner service key, virtual service name)
    let mut claimed: BTreeMap<(String, u32, u32), (String, String)> = BTreeMap::new();
    let mut out: Vec<pb::VirtualService> = Vec::new();
    for svc in services {
        let ServiceBody::LoadBalancer(lb) = &svc.spec.body else {
            continue;
        };
        let owner = svc.key();
        for (i, target) in lb.targets.hosts.iter().enumerate() {
            if !selects(&target.selector, labels) {
                continue;
            }
            let frag = load_balancer_policy(lb, &svc.spec.metadata, target, i)
                .map_err(|e| format!("service {owner}: {e}"))?;
            for vs in frag.virtual_services {
                let key = (vs.vip.clone(), vs.port, vs.protocol);
                if let Some((first, first_vs)) = claimed.get(&key) {
                    return Err(format!(
                        "services {first} (virtual service {first_vs}) and {owner} (virtual service {}) both claim VIP {} port {} {}",
                        vs.name,
                        vs.vip,
                        vs.port,
                        protocol_name(vs.protocol)
                    ));
                }
                claimed.insert(key, (owner.clone(), vs.name.clone()));
                out.push(vs);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Hash of a policy with its version zeroed: equal hashes mean the same
/// enforcement, whatever version number either side holds.
#[must_use]
pub fn policy_hash(p: &pb::HostPolicy) -> String {
    let mut p = p.clone();
    p.version = 0;
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &p.encode_to_vec(),
    ))
}
