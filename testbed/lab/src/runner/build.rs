//! `up`'s build order: namespaces, links, addresses and routes, the
//! management link, `exec` lines, then the processes of each role (devices
//! and servers, then rampartd, then agents, then Prometheus), the inventory
//! and the env file. Each object is recorded in the state file before it is
//! created, so `down` finds it after any failure.

use std::{collections::BTreeMap, net::Ipv4Addr};

use super::{
    base::{Env, LabError, Pending, host_if, lab_env, ns_name, record, step},
    envfile::write_env_file,
    ready::wait_ready,
    roles::{agent, controller, netconf, prometheus, server, sim},
};
use crate::{
    MGMT_IF, inventory,
    state::{Mgmt, NodeState, State},
    sys,
    topology::{Kind, Lab, Node, Role},
};

pub(super) fn build(lab: &Lab, env: &Env, state: &mut State) -> Result<(), LabError> {
    namespaces(lab, env, state)?;
    links(lab)?;
    addressing(lab, state)?;
    if let Some(ctl) = lab.controller() {
        mgmt_link(lab, ctl, env, state)?;
    }
    exec_lines(lab)?;
    let (creds, extra_env) = processes(lab, env, state)?;
    inventory_and_env(lab, env, state, &creds, &extra_env)
}

fn namespaces(lab: &Lab, env: &Env, state: &mut State) -> Result<(), LabError> {
    let file = env.state_file();
    let name = &lab.name;
    for n in &lab.nodes {
        let ns = ns_name(name, &n.name);
        state.namespaces.push(ns.clone());
        state.nodes.insert(
            n.name.clone(),
            NodeState {
                ns: ns.clone(),
                roles: n.roles.iter().map(ToString::to_string).collect(),
                ..NodeState::default()
            },
        );
        state.save(&file)?;
        sys::ip(&["netns", "add", &ns]).map_err(step(&n.name, "create namespace"))?;
        sys::ip_in(&ns, &["link", "set", "lo", "up"]).map_err(step(&n.name, "loopback up"))?;
        if n.kind == Kind::Bridge {
            sys::ip_in(&ns, &["link", "add", &n.name, "type", "bridge"])
                .map_err(step(&n.name, "create bridge"))?;
            sys::ip_in(&ns, &["link", "set", &n.name, "up"]).map_err(step(&n.name, "bridge up"))?;
        }
    }

    Ok(())
}

fn links(lab: &Lab) -> Result<(), LabError> {
    let name = &lab.name;
    for l in &lab.links {
        let (na, nb) = (ns_name(name, &l.a.node), ns_name(name, &l.b.node));
        let what = format!(
            "link {}:{} - {}:{}",
            l.a.node, l.a.interface, l.b.node, l.b.interface
        );
        sys::ip(&[
            "link",
            "add",
            &l.a.interface,
            "netns",
            &na,
            "type",
            "veth",
            "peer",
            "name",
            &l.b.interface,
            "netns",
            &nb,
        ])
        .map_err(step(&l.a.node, what.clone()))?;
        for (ns, e) in [(&na, &l.a), (&nb, &l.b)] {
            if let Some(mtu) = l.mtu {
                sys::ip_in(ns, &["link", "set", &e.interface, "mtu", &mtu.to_string()])
                    .map_err(step(&e.node, format!("{what}: mtu")))?;
            }
            let is_bridge = lab.node(&e.node).is_some_and(|n| n.kind == Kind::Bridge);
            if is_bridge {
                sys::ip_in(ns, &["link", "set", &e.interface, "master", &e.node])
                    .map_err(step(&e.node, format!("{what}: bridge port")))?;
            }
            sys::ip_in(ns, &["link", "set", &e.interface, "up"])
                .map_err(step(&e.node, format!("{what}: up")))?;
        }
    }

    Ok(())
}

/// Addresses, routes and IP forwarding of every node.
fn addressing(lab: &Lab, state: &mut State) -> Result<(), LabError> {
    let name = &lab.name;
    for n in &lab.nodes {
        let ns = ns_name(name, &n.name);
        let ns_state = state.nodes.entry(n.name.clone()).or_default();
        for i in &n.interfaces {
            for a in &i.addresses {
                sys::ip_in(&ns, &["addr", "add", &a.to_string(), "dev", &i.name])
                    .map_err(step(&n.name, format!("address {a} on {}", i.name)))?;
                ns_state.addresses.push(format!("{} {a}", i.name));
            }
        }
        for r in &n.routes {
            sys::ip_in(
                &ns,
                &[
                    "route",
                    "replace",
                    &r.dest.to_string(),
                    "via",
                    &r.via.to_string(),
                ],
            )
            .map_err(step(&n.name, format!("route {} via {}", r.dest, r.via)))?;
        }
        if n.forwarding {
            sys::run(
                "nsenter",
                &[
                    &format!("--net={}/{ns}", sys::NETNS_DIR),
                    "sh",
                    "-c",
                    "echo 1 > /proc/sys/net/ipv4/ip_forward",
                ],
            )
            .map_err(step(&n.name, "ip forwarding"))?;
        }
    }

    Ok(())
}

/// The management link host <-> controller.
fn mgmt_link(lab: &Lab, ctl: &Node, env: &Env, state: &mut State) -> Result<(), LabError> {
    let file = env.state_file();
    let name = &lab.name;
    let host = host_if(name);
    state.host_links.push(host.clone());
    state.save(&file)?;
    let (host_addr, node_addr) = free_mgmt_subnet(name);
    let ns = ns_name(name, &ctl.name);
    sys::ip(&[
        "link", "add", &host, "type", "veth", "peer", "name", MGMT_IF, "netns", &ns,
    ])
    .map_err(step(&ctl.name, "management link"))?;
    sys::ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host])
        .map_err(step(&ctl.name, "management address (host)"))?;
    sys::ip(&["link", "set", &host, "up"]).map_err(step(&ctl.name, "management link up"))?;
    sys::ip_in(
        &ns,
        &["addr", "add", &format!("{node_addr}/30"), "dev", MGMT_IF],
    )
    .map_err(step(&ctl.name, "management address (controller)"))?;
    sys::ip_in(&ns, &["link", "set", MGMT_IF, "up"])
        .map_err(step(&ctl.name, "management link up"))?;
    state.mgmt = Some(Mgmt {
        host_if: host,
        host_addr: format!("{host_addr}/30"),
        node_addr: node_addr.to_string(),
    });
    if let Some(s) = state.nodes.get_mut(&ctl.name) {
        s.addresses.push(format!("{MGMT_IF} {node_addr}/30"));
    }
    state.save(&file)?;
    Ok(())
}

/// The `exec` commands of linux nodes, in the node's namespace.
fn exec_lines(lab: &Lab) -> Result<(), LabError> {
    let name = &lab.name;
    for n in lab.nodes.iter().filter(|n| n.kind == Kind::Linux) {
        let ns = ns_name(name, &n.name);
        for (i, cmd) in n.exec.iter().enumerate() {
            sys::run_env(
                "nsenter",
                &[&format!("--net={}/{ns}", sys::NETNS_DIR), "sh", "-c", cmd],
                &lab_env(lab),
            )
            .map_err(step(&n.name, format!("exec[{i}] {cmd:?}")))?;
        }
    }

    Ok(())
}

/// Credentials (or other secrets) by environment variable.
type Vars = BTreeMap<String, String>;

/// The processes of every role: devices and servers first, then rampartd
/// (it needs the devices' credentials), then agents (managed ones enroll
/// with tokens the running rampartd issues), then Prometheus (it scrapes
/// all of them). Returns the credentials and the other variables the
/// simulators reported, for rampartd and the env file.
fn processes(lab: &Lab, env: &Env, state: &mut State) -> Result<(Vars, Vars), LabError> {
    let mut creds = Vars::new();
    let mut extra = Vars::new();
    let mut pending: Vec<Pending> = Vec::new();
    for n in &lab.nodes {
        for role in &n.roles {
            let p = match role {
                Role::NetconfDevice => Some(netconf::start(lab, n, env, &mut creds)?),
                Role::SimMeraki | Role::SimFdm | Role::SimSdwan | Role::SimAsa => {
                    Some(sim::start(lab, n, *role, env, &mut creds)?)
                }
                Role::Server => Some(server::start(lab, n, env)?),
                Role::Controller | Role::Agent | Role::Client | Role::Prometheus => None,
            };
            if let Some(p) = p {
                started(env, state, &mut pending, p)?;
            }
        }
    }
    wait_ready(&mut pending, env, state, &mut creds, &mut extra)?;
    sim::write_ca_bundle(env, state)?;
    if let Some(ctl) = lab.controller() {
        let p = controller::start(lab, ctl, env, state, &creds)?;
        started(env, state, &mut pending, p)?;
    }
    wait_ready(&mut pending, env, state, &mut creds, &mut extra)?;
    for n in lab.nodes.iter().filter(|n| n.has(Role::Agent)) {
        if let Some(p) = agent::start(lab, n, env, state)? {
            started(env, state, &mut pending, p)?;
        }
    }
    wait_ready(&mut pending, env, state, &mut creds, &mut extra)?;
    agent::wait_enrolled(lab, env, state)?;
    for n in lab.nodes.iter().filter(|n| n.has(Role::Prometheus)) {
        let p = prometheus::start(lab, n, env, state)?;
        started(env, state, &mut pending, p)?;
    }
    wait_ready(&mut pending, env, state, &mut creds, &mut extra)?;
    state.save(&env.state_file())?;
    Ok((creds, extra))
}

/// Records a started process in the state file before waiting for it.
fn started(
    env: &Env,
    state: &mut State,
    pending: &mut Vec<Pending>,
    p: Pending,
) -> Result<(), LabError> {
    record(state, &p.node, &p);
    state.save(&env.state_file())?;
    pending.push(p);
    Ok(())
}

/// The Rampart inventory the lab implies, and the env file.
fn inventory_and_env(
    lab: &Lab,
    env: &Env,
    state: &mut State,
    creds: &Vars,
    extra: &Vars,
) -> Result<(), LabError> {
    let inv = inventory::from_lab(lab);
    let inv_path = env.state_dir.join("inventory.yaml");
    inventory::write(
        &inv_path,
        &inv,
        &format!(
            "# Rampart inventory of lab {} (written by rampart-lab up from {}).\n# credentialsRef variables are in lab.env and in rampartd's environment.\n",
            lab.name,
            state.topology.display()
        ),
    )
    .map_err(|e| LabError::Io {
        path: inv_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    state.inventory = Some(inv_path);
    let env_path = env.state_dir.join("lab.env");
    write_env_file(&env_path, lab, env, state, creds, extra)?;
    state.env_file = Some(env_path);
    Ok(())
}

/// Picks a free 169.254.x.y/30 for the host-controller link: derived from
/// the lab name (stable across runs), skipping subnets already in use.
fn free_mgmt_subnet(lab: &str) -> (Ipv4Addr, Ipv4Addr) {
    let used = sys::ip(&["-o", "-4", "addr", "show"]).unwrap_or_default();
    mgmt_subnet(lab, &used)
}

/// [`free_mgmt_subnet`] given `ip -o -4 addr show`'s output.
fn mgmt_subnet(lab: &str, used: &str) -> (Ipv4Addr, Ipv4Addr) {
    let mut h: u32 = 2_166_136_261;
    for b in lab.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    for i in 0..4096u32 {
        let v = h.wrapping_add(i.wrapping_mul(7919)) % (250 * 64);
        let third = 1 + v / 64;
        if third == 169 || third == 254 {
            continue;
        }
        let base = (v % 64) * 4;
        let (Ok(third), Ok(base)) = (u8::try_from(third), u8::try_from(base)) else {
            continue;
        };
        let net = format!("169.254.{third}.");
        let taken = (0..4u8).any(|o| used.contains(&format!("inet {net}{}/", base + o)));
        if !taken {
            return (
                Ipv4Addr::new(169, 254, third, base + 1),
                Ipv4Addr::new(169, 254, third, base + 2),
            );
        }
    }
    (
        Ipv4Addr::new(169, 254, 250, 1),
        Ipv4Addr::new(169, 254, 250, 2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mgmt_subnets_are_aligned_link_local_and_skip_used_ones() {
        for i in 0..20_000u32 {
            let name = format!("l{i:x}");
            let (host, node) = mgmt_subnet(&name, "");
            let (h, n) = (host.octets(), node.octets());
            assert_eq!(h[..2], [169, 254], "{name}: {host}");
            assert_eq!(h[..3], n[..3], "{name}: same /24");
            assert_eq!(h[3] % 4, 1, "{name}: host is .1 of its /30");
            assert_eq!(n[3], h[3] + 1, "{name}");
            assert!(h[2] != 169 && h[2] != 254 && h[2] != 0, "{name}: {host}");
        }
        let (host, _) = mgmt_subnet("lab", "");
        let busy = format!(
            "2: eth0    inet {}/30 scope link eth0",
            Ipv4Addr::from(u32::from(host) - 1)
        );
        let (other, _) = mgmt_subnet("lab", &busy);
        assert_ne!(host, other, "a subnet in use is skipped");
        assert_eq!(
            mgmt_subnet("lab", ""),
            mgmt_subnet("lab", ""),
            "stable per name"
        );
    }
}
