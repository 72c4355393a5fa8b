//! The host policy of one agent: the union of the host sections of every
//! service whose selector matches the agent's labels, merged by interface
//! and direction. Two services on one interface may not disagree on the
//! default action or reuse a rule sequence: that is a conflict, reported
//! (and nothing is pushed) rather than guessed.

use std::collections::BTreeMap;

use prost::Message as _;
use rampart_proto::v1 as pb;

use crate::{compile::agent::firewall_policy, model::spec::ServiceBody, store::StoredService};

use super::ca::sha256_hex;

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
        virtual_services: Vec::new(),
    })
}

/// Hash of a policy with its version zeroed: equal hashes mean the same
/// enforcement, whatever version number either side holds.
#[must_use]
pub fn policy_hash(p: &pb::HostPolicy) -> String {
    let mut p = p.clone();
    p.version = 0;
    sha256_hex(&p.encode_to_vec())
}
