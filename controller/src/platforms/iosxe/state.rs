//! IOS-XE device state for transactions: merging the contributions of every
//! service on a device, and the NETCONF edit that moves a device from one
//! merged state to another (owned subtrees replaced, objects no service
//! produces any more removed).
//!
//! Ownership is derived, not stored: an object stays on the device as long
//! as at least one service still produces it, so deleting one of two
//! services that share an object leaves it in place (the reference count is
//! the number of contributions holding it).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::{
    render::{AclBindings, InterfaceConfig, InterfaceId, IosXeConfig, StaticRouteConfig},
    tree::{self, EditOp, Module, Node, NodeKind},
};

pub use crate::platforms::driver::Conflict;

/// Merges service contributions (`tenant/name` → config) into the device's
/// desired Rampart-owned configuration.
///
/// # Errors
/// [`Conflict`] when two services set the same leaf to different values.
pub fn merge(contributions: &BTreeMap<String, IosXeConfig>) -> Result<IosXeConfig, Conflict> {
    let mut out = IosXeConfig::default();
    let mut acl_owner: BTreeMap<String, String> = BTreeMap::new();
    let mut leaf_owner: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (service, c) in contributions {
        for (list, acls) in [
            (&mut out.ipv4_acls, &c.ipv4_acls),
            (&mut out.ipv6_acls, &c.ipv6_acls),
        ] {
            for acl in acls {
                match list.iter().find(|a| a.name == acl.name) {
                    Some(existing) if existing != acl => {
                        return Err(Conflict {
                            what: format!("ACL {}", acl.name),
                            first: acl_owner.get(&acl.name).cloned().unwrap_or_default(),
                            second: service.clone(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        acl_owner.insert(acl.name.clone(), service.clone());
                        list.push(acl.clone());
                    }
                }
            }
        }
        for (id, ic) in &c.interfaces {
            let target = out.interfaces.entry(id.clone()).or_default();
            let ifname = format!("{}{}", id.kind, id.number);
            let mut set = |what: &str, slot: &mut Option<String>, value: &Option<String>| {
                let Some(v) = value else { return Ok(()) };
                let key = format!("{ifname} {what}");
                match slot {
                    Some(cur) if cur != v => Err(Conflict {
                        what: key.clone(),
                        first: leaf_owner
                            .get(&key)
                            .map(|(s, _)| s.clone())
                            .unwrap_or_default(),
                        second: service.clone(),
                    }),
                    _ => {
                        *slot = Some(v.clone());
                        leaf_owner.insert(key, (service.clone(), v.clone()));
                        Ok(())
                    }
                }
            };
            set("description", &mut target.description, &ic.description)?;
            set(
                "ip access-group in",
                &mut target.acls.ipv4_in,
                &ic.acls.ipv4_in,
            )?;
            set(
                "ip access-group out",
                &mut target.acls.ipv4_out,
                &ic.acls.ipv4_out,
            )?;
            set(
                "ipv6 traffic-filter in",
                &mut target.acls.ipv6_in,
                &ic.acls.ipv6_in,
            )?;
            set(
                "ipv6 traffic-filter out",
                &mut target.acls.ipv6_out,
                &ic.acls.ipv6_out,
            )?;
            for a in &ic.ipv4 {
                if !target.ipv4.contains(a) {
                    target.ipv4.push(*a);
                }
            }
            for a in &ic.ipv6 {
                if !target.ipv6.contains(a) {
                    target.ipv6.push(*a);
                }
            }
            if ic.shutdown.is_some() {
                target.shutdown = ic.shutdown;
            }
            if let Some(side) = ic.nat {
                let key = format!("{ifname} ip nat");
                match target.nat {
                    Some(cur) if cur != side => {
                        return Err(Conflict {
                            what: format!("{key} {} / {}", cur.as_str(), side.as_str()),
                            first: leaf_owner
                                .get(&key)
                                .map(|(s, _)| s.clone())
                                .unwrap_or_default(),
                            second: service.clone(),
                        });
                    }
                    _ => {
                        target.nat = Some(side);
                        leaf_owner.insert(key, (service.clone(), side.as_str().to_owned()));
                    }
                }
            }
        }
        for e in &c.nat_static {
            let key = format!("ip nat inside source static {} {}", e.local, e.global);
            match out
                .nat_static
                .iter()
                .find(|x| x.local == e.local && x.global == e.global)
            {
                Some(x) if x != e => {
                    return Err(Conflict {
                        what: key.clone(),
                        first: leaf_owner
                            .get(&key)
                            .map(|(s, _)| s.clone())
                            .unwrap_or_default(),
                        second: service.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    leaf_owner.insert(key, (service.clone(), String::new()));
                    out.nat_static.push(e.clone());
                }
            }
        }
        for o in &c.nat_overloads {
            if !out.nat_overloads.contains(o) {
                out.nat_overloads.push(o.clone());
            }
        }
        for g in &c.network_groups {
            match out.network_groups.iter().find(|x| x.name == g.name) {
                Some(x) if x != g => {
                    return Err(Conflict {
                        what: format!("object-group network {}", g.name),
                        first: acl_owner.get(&g.name).cloned().unwrap_or_default(),
                        second: service.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    acl_owner.insert(g.name.clone(), service.clone());
                    out.network_groups.push(g.clone());
                }
            }
        }
        for r in &c.static_routes {
            if !out.static_routes.contains(r) {
                out.static_routes.push(r.clone());
            }
        }
        if let Some(b) = &c.bgp {
            match &out.bgp {
                Some(cur) if cur != b => {
                    return Err(Conflict {
                        what: "router bgp".to_owned(),
                        first: "another service".to_owned(),
                        second: service.clone(),
                    });
                }
                _ => out.bgp = Some(b.clone()),
            }
        }
    }
    out.ipv4_acls.sort_by(|a, b| a.name.cmp(&b.name));
    out.ipv6_acls.sort_by(|a, b| a.name.cmp(&b.name));
    out.static_routes.sort();
    out.nat_static.sort();
    out.nat_overloads.sort();
    out.network_groups.sort();
    Ok(out)
}

/// How many contributions hold each network object-group: a group stays on
/// the device while this is at least one.
#[must_use]
pub fn object_group_refcounts(
    contributions: &BTreeMap<String, IosXeConfig>,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in contributions.values() {
        let names: BTreeSet<&str> = c.network_groups.iter().map(|g| g.name.as_str()).collect();
        for n in names {
            *out.entry(n.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// How many contributions hold each ACL (the shared-object reference count).
#[must_use]
pub fn acl_refcounts(contributions: &BTreeMap<String, IosXeConfig>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in contributions.values() {
        let names: BTreeSet<&str> = c
            .ipv4_acls
            .iter()
            .chain(&c.ipv6_acls)
            .map(|a| a.name.as_str())
            .collect();
        for n in names {
            *out.entry(n.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// Whether moving from `prev` to `next` changes anything.
#[must_use]
pub fn is_noop(prev: &IosXeConfig, next: &IosXeConfig) -> bool {
    prev == next
}

fn removed_acl(list: &str, name: &str) -> Node {
    Node::entry(list, vec![Node::leaf("name", name)])
        .in_module(Module::Acl)
        .with_op(EditOp::Remove)
}

/// Removal nodes for interface settings `prev` had and `next` lacks.
fn interface_removals(
    id: &InterfaceId,
    prev: &InterfaceConfig,
    next: &InterfaceConfig,
) -> Vec<Node> {
    let mut out = Vec::new();
    if prev.description.is_some() && next.description.is_none() {
        out.push(Node::leaf("description", "").with_op(EditOp::Remove));
    }
    let mut ip = Vec::new();
    let gone = |p: &Option<String>, n: &Option<String>| p.is_some() && n.is_none();
    let AclBindings {
        ipv4_in,
        ipv4_out,
        ipv6_in,
        ipv6_out,
    } = &prev.acls;
    let mut access_group = Vec::new();
    for (dir, p, n) in [
        ("in", ipv4_in, &next.acls.ipv4_in),
        ("out", ipv4_out, &next.acls.ipv4_out),
    ] {
        if gone(p, n) {
            access_group.push(Node::container(dir, vec![]).with_op(EditOp::Remove));
        }
    }
    if !access_group.is_empty() {
        ip.push(Node::container("access-group", access_group));
    }
    if let Some(side) = prev.nat
        && next.nat != Some(side)
    {
        ip.push(
            Node::container(
                "nat",
                vec![Node::empty(side.as_str()).with_op(EditOp::Remove)],
            )
            .in_module(Module::Nat),
        );
    }
    if !prev.ipv4.is_empty() && next.ipv4.is_empty() {
        ip.push(Node::container("address", vec![]).with_op(EditOp::Remove));
    }
    if !ip.is_empty() {
        out.push(Node::container("ip", ip));
    }
    let mut ipv6 = Vec::new();
    for (dir, p, n) in [
        ("in", ipv6_in, &next.acls.ipv6_in),
        ("out", ipv6_out, &next.acls.ipv6_out),
    ] {
        if gone(p, n) {
            ipv6.push(
                Node::entry("traffic-filter", vec![Node::leaf("direction", dir)])
                    .with_op(EditOp::Remove),
            );
        }
    }
    if !prev.ipv6.is_empty() && next.ipv6.is_empty() {
        ipv6.push(Node::container("address", vec![]).with_op(EditOp::Remove));
    }
    if !ipv6.is_empty() {
        out.push(Node::container("ipv6", ipv6));
    }
    if out.is_empty() {
        return out;
    }
    let mut children = vec![id.key_node()];
    children.extend(out);
    vec![Node::entry(&id.kind, children)]
}

/// Same list entry or container as `b`, a node of the removal tree: same
/// name and module and, for entries, the same leading leaves (`b`'s keys;
/// removal entries carry only their keys before any child with an
/// operation, so multi-key lists such as static NAT entries compare every
/// key, not just the first).
fn same_node(a: &Node, b: &Node) -> bool {
    if a.name != b.name || a.module != b.module {
        return false;
    }
    match (&a.kind, &b.kind) {
        (NodeKind::ListEntry(x), NodeKind::ListEntry(y)) => {
            let keys: Vec<&Node> = y
                .iter()
                .take_while(|n| matches!(n.kind, NodeKind::Leaf(_)) && n.op.is_none())
                .collect();
            !keys.is_empty() && keys.iter().zip(x).all(|(k, v)| *k == v)
        }
        (NodeKind::Container(_), NodeKind::Container(_)) => true,
        _ => false,
    }
}

/// Adds `extra` into `base`, merging containers/entries that match.
fn graft(base: &mut Vec<Node>, extra: Vec<Node>) {
    for node in extra {
        if let Some(existing) = base
            .iter_mut()
            .find(|n| same_node(n, &node) && n.op.is_none())
        {
            if node.op.is_some() {
                existing.op = node.op;
                continue;
            }
            let keys = match &node.kind {
                NodeKind::ListEntry(y) => y
                    .iter()
                    .take_while(|n| matches!(n.kind, NodeKind::Leaf(_)) && n.op.is_none())
                    .count(),
                _ => 0,
            };
            if let (Some(kids), NodeKind::Container(more) | NodeKind::ListEntry(more)) =
                (existing.children_mut(), node.kind)
            {
                // An entry's leading key leaves are already present.
                let more: Vec<Node> = more.into_iter().skip(keys).collect();
                graft(kids, more);
            }
        } else {
            base.push(node);
        }
    }
}

/// What `next` adds or changes relative to `prev`: only those objects are
/// sent (so an edit never re-sends, or shows in a dry-run, other services'
/// unchanged objects).
fn delta(prev: &IosXeConfig, next: &IosXeConfig) -> IosXeConfig {
    let changed = |n: &[crate::platforms::iosxe::Acl], p: &[crate::platforms::iosxe::Acl]| {
        n.iter()
            .filter(|a| !p.contains(a))
            .cloned()
            .collect::<Vec<_>>()
    };
    IosXeConfig {
        ipv4_acls: changed(&next.ipv4_acls, &prev.ipv4_acls),
        ipv6_acls: changed(&next.ipv6_acls, &prev.ipv6_acls),
        interfaces: next
            .interfaces
            .iter()
            .filter(|(id, c)| prev.interfaces.get(*id) != Some(*c))
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect(),
        static_routes: next
            .static_routes
            .iter()
            .filter(|r| !prev.static_routes.contains(r))
            .cloned()
            .collect(),
        bgp: if prev.bgp == next.bgp {
            None
        } else {
            next.bgp.clone()
        },
        nat_static: next
            .nat_static
            .iter()
            .filter(|e| !prev.nat_static.contains(e))
            .cloned()
            .collect(),
        nat_overloads: next
            .nat_overloads
            .iter()
            .filter(|o| !prev.nat_overloads.contains(o))
            .cloned()
            .collect(),
        network_groups: next
            .network_groups
            .iter()
            .filter(|g| !prev.network_groups.contains(g))
            .cloned()
            .collect(),
    }
}

/// The forwarding key of a route in the native model: the interface when
/// there is one (the next hop then sits below it), else the next hop.
fn route_fwd(r: &StaticRouteConfig) -> Option<(String, Option<std::net::IpAddr>)> {
    match (&r.interface, r.next_hop) {
        (Some(itf), nh) => Some((itf.clone(), nh)),
        (None, Some(nh)) => Some((nh.to_string(), None)),
        (None, None) => None,
    }
}

/// Removal nodes for the static routes `prev` has and `next` lacks, by
/// family, at the narrowest level that removes exactly them: the whole
/// prefix entry when no route to the prefix remains, else the forwarding
/// entry, else the next hop below an interface; a distance that is no
/// longer set loses its leaf.
fn route_removals(prev: &[StaticRouteConfig], next: &[StaticRouteConfig], v4: bool) -> Vec<Node> {
    let fam = |r: &&StaticRouteConfig| matches!(r.prefix, IpNet::V4(_)) == v4;
    let (distance_leaf, hop_key, fwd_list, route_list) = if v4 {
        (
            "metric",
            "ip-address",
            "fwd-list",
            "ip-route-interface-forwarding-list",
        )
    } else {
        (
            "distance",
            "ipv6-address",
            "ipv6-fwd-list",
            "ipv6-route-list",
        )
    };
    let prefix_keys = |p: &IpNet| match p {
        IpNet::V4(p) => vec![
            Node::leaf("prefix", p.network().to_string()),
            Node::leaf("mask", p.netmask().to_string()),
        ],
        IpNet::V6(p) => vec![Node::leaf("prefix", p.to_string())],
    };
    let prefixes: BTreeSet<IpNet> = prev.iter().filter(fam).map(|r| r.prefix).collect();
    let mut out = Vec::new();
    for prefix in prefixes {
        let old: Vec<&StaticRouteConfig> = prev.iter().filter(|r| r.prefix == prefix).collect();
        let new: Vec<&StaticRouteConfig> = next.iter().filter(|r| r.prefix == prefix).collect();
        if new.is_empty() {
            out.push(Node::entry(route_list, prefix_keys(&prefix)).with_op(EditOp::Remove));
            continue;
        }
        let mut children = prefix_keys(&prefix);
        for r in &old {
            let Some((fwd, via)) = route_fwd(r) else {
                continue;
            };
            let same_fwd: Vec<&&StaticRouteConfig> = new
                .iter()
                .filter(|n| route_fwd(n).is_some_and(|(f, _)| f == fwd))
                .collect();
            if same_fwd.is_empty() {
                children.push(
                    Node::entry(fwd_list, vec![Node::leaf("fwd", fwd.clone())])
                        .with_op(EditOp::Remove),
                );
                continue;
            }
            let kept = same_fwd
                .iter()
                .find(|n| route_fwd(n).is_some_and(|(_, v)| v == via));
            let removal = match (kept, via) {
                (None, Some(nh)) => Some(
                    Node::entry(
                        "interface-next-hop",
                        vec![Node::leaf(hop_key, nh.to_string())],
                    )
                    .with_op(EditOp::Remove),
                ),
                (Some(k), Some(nh)) if k.distance.is_none() => r.distance.map(|d| {
                    Node::entry(
                        "interface-next-hop",
                        vec![
                            Node::leaf(hop_key, nh.to_string()),
                            Node::int(distance_leaf, d).with_op(EditOp::Remove),
                        ],
                    )
                }),
                (Some(k), None) if k.distance.is_none() => r
                    .distance
                    .map(|d| Node::int(distance_leaf, d).with_op(EditOp::Remove)),
                _ => None,
            };
            if let Some(n) = removal {
                children.push(Node::entry(
                    fwd_list,
                    vec![Node::leaf("fwd", fwd.clone()), n],
                ));
            }
        }
        if children.len() > prefix_keys(&prefix).len() {
            out.push(Node::entry(route_list, children));
        }
    }
    out
}

/// The `/native` tree of the edit that moves a device from `prev` to `next`.
#[must_use]
pub fn edit_tree(prev: &IosXeConfig, next: &IosXeConfig) -> Node {
    let mut root = delta(prev, next).to_tree(true);
    let mut extra = Vec::new();
    let removed =
        |p: &[crate::platforms::iosxe::Acl], n: &[crate::platforms::iosxe::Acl]| -> Vec<String> {
            p.iter()
                .filter(|a| !n.iter().any(|b| b.name == a.name))
                .map(|a| a.name.clone())
                .collect()
        };
    let v4: Vec<Node> = removed(&prev.ipv4_acls, &next.ipv4_acls)
        .iter()
        .map(|n| removed_acl("extended", n))
        .collect();
    let mut ip = Vec::new();
    if !v4.is_empty() {
        ip.push(Node::container("access-list", v4));
    }
    let routes4 = route_removals(&prev.static_routes, &next.static_routes, true);
    if !routes4.is_empty() {
        ip.push(Node::container("route", routes4));
    }
    if let Some(nat) = nat_removals(prev, next) {
        ip.push(nat);
    }
    if !ip.is_empty() {
        extra.push(Node::container("ip", ip));
    }
    let v6: Vec<Node> = removed(&prev.ipv6_acls, &next.ipv6_acls)
        .iter()
        .map(|n| removed_acl("named-acl", n))
        .collect();
    let mut ipv6 = Vec::new();
    if !v6.is_empty() {
        ipv6.push(Node::container("access-list", v6));
    }
    let routes6 = route_removals(&prev.static_routes, &next.static_routes, false);
    if !routes6.is_empty() {
        ipv6.push(Node::container("route", routes6));
    }
    if !ipv6.is_empty() {
        extra.push(Node::container("ipv6", ipv6));
    }
    let empty = InterfaceConfig::default();
    let mut ifaces = Vec::new();
    for (id, p) in &prev.interfaces {
        ifaces.extend(interface_removals(
            id,
            p,
            next.interfaces.get(id).unwrap_or(&empty),
        ));
    }
    if !ifaces.is_empty() {
        extra.push(Node::container("interface", ifaces));
    }
    let groups: Vec<Node> = prev
        .network_groups
        .iter()
        .filter(|g| !next.network_groups.iter().any(|n| n.name == g.name))
        .map(|g| {
            Node::entry("network", vec![Node::leaf("name", g.name.clone())])
                .in_module(Module::ObjectGroup)
                .with_op(EditOp::Remove)
        })
        .collect();
    if !groups.is_empty() {
        extra.push(Node::container("object-group", groups));
    }
    if let (Some(b), None) = (&prev.bgp, &next.bgp) {
        {
            extra.push(Node::container(
                "router",
                vec![
                    Node::entry("bgp", vec![Node::int("id", b.asn)])
                        .in_module(Module::Bgp)
                        .with_op(EditOp::Remove),
                ],
            ));
        }
    }
    if let Some(kids) = root.children_mut() {
        graft(kids, extra);
    }
    root
}

/// Removal of the NAT entries `prev` has and `next` lacks (static entries
/// by their address pair, overloads by their ACL id).
fn nat_removals(prev: &IosXeConfig, next: &IosXeConfig) -> Option<Node> {
    let mut source: Vec<Node> = prev
        .nat_overloads
        .iter()
        .filter(|o| !next.nat_overloads.iter().any(|n| n.acl == o.acl))
        .map(|o| Node::entry("list", vec![Node::leaf("id", o.acl.clone())]).with_op(EditOp::Remove))
        .collect();
    let statics: Vec<Node> = prev
        .nat_static
        .iter()
        .filter(|e| {
            !next
                .nat_static
                .iter()
                .any(|n| n.local == e.local && n.global == e.global)
        })
        .map(|e| {
            Node::entry(
                "nat-static-transport-list",
                vec![
                    Node::leaf("local-ip", e.local.to_string()),
                    Node::leaf("global-ip", e.global.to_string()),
                ],
            )
            .with_op(EditOp::Remove)
        })
        .collect();
    if !statics.is_empty() {
        source.push(Node::container("static", statics));
    }
    (!source.is_empty()).then(|| {
        Node::container(
            "nat",
            vec![Node::container(
                "inside",
                vec![Node::container("source", source)],
            )],
        )
        .in_module(Module::Nat)
    })
}

/// The NETCONF `<config>` of [`edit_tree`].
#[must_use]
pub fn edit_xml(prev: &IosXeConfig, next: &IosXeConfig) -> String {
    tree::to_netconf_config(&edit_tree(prev, next), Module::Native)
}

/// The stored (JSON) form of an [`IosXeConfig`]: JSON objects need string
/// keys, so the interface map travels as a list of pairs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    ipv4_acls: Vec<crate::platforms::iosxe::Acl>,
    ipv6_acls: Vec<crate::platforms::iosxe::Acl>,
    interfaces: Vec<(InterfaceId, InterfaceConfig)>,
    static_routes: Vec<crate::platforms::iosxe::StaticRouteConfig>,
    bgp: Option<crate::platforms::iosxe::BgpConfig>,
    #[serde(default)]
    nat_static: Vec<crate::platforms::iosxe::StaticNatConfig>,
    #[serde(default)]
    nat_overloads: Vec<crate::platforms::iosxe::NatOverloadConfig>,
    #[serde(default)]
    network_groups: Vec<crate::platforms::iosxe::NetworkGroup>,
}

/// Encodes a configuration for the store.
///
/// # Errors
/// Serialization failures (a bug).
pub fn to_json(c: &IosXeConfig) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(Stored {
        ipv4_acls: c.ipv4_acls.clone(),
        ipv6_acls: c.ipv6_acls.clone(),
        interfaces: c.interfaces.clone().into_iter().collect(),
        static_routes: c.static_routes.clone(),
        bgp: c.bgp.clone(),
        nat_static: c.nat_static.clone(),
        nat_overloads: c.nat_overloads.clone(),
        network_groups: c.network_groups.clone(),
    })
}

/// Decodes a stored configuration; `null` is the empty configuration.
///
/// # Errors
/// A value that is not a stored configuration.
pub fn from_json(v: &serde_json::Value) -> Result<IosXeConfig, serde_json::Error> {
    if v.is_null() {
        return Ok(IosXeConfig::default());
    }
    let s: Stored = serde_json::from_value(v.clone())?;
    Ok(IosXeConfig {
        ipv4_acls: s.ipv4_acls,
        ipv6_acls: s.ipv6_acls,
        interfaces: s.interfaces.into_iter().collect(),
        static_routes: s.static_routes,
        bgp: s.bgp,
        nat_static: s.nat_static,
        nat_overloads: s.nat_overloads,
        network_groups: s.network_groups,
    })
}
