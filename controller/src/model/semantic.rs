//! Checks YANG cannot express: references into the device inventory, and
//! firewall rules that can never match (shadowed) or that silently lose to
//! an earlier rule with the opposite action (overlapping).

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::{
    Diagnostic, Severity,
    convert::{Converted, Origin, module_of, pred_value},
    device::Device,
    spec::{
        Action, FirewallRule, FirewallSpec, PortRange, Protocol, ServiceBody, ServiceSpec, Targets,
    },
};

/// Above this many rules the quadratic overlap analysis is skipped (with a
/// warning saying so) to keep validation fast.
const MAX_ANALYZED_RULES: usize = 5_000;
/// Overlap warnings beyond this are summarised in one line.
const MAX_OVERLAP_WARNINGS: usize = 100;

/// Runs every semantic check; returns errors and warnings.
pub(crate) fn check(
    spec: &ServiceSpec,
    conv: &Converted,
    inventory: &BTreeMap<String, Device>,
    source_name: &str,
) -> Vec<Diagnostic> {
    let mut c = Checker {
        conv,
        source_name,
        out: Vec::new(),
    };
    c.devices(spec, inventory);
    if let ServiceBody::Firewall(fw) = &spec.body {
        c.duplicate_sequences(fw);
        c.address_families(fw);
        c.rules(fw);
    }
    c.out
}

struct Checker<'a> {
    conv: &'a Converted,
    source_name: &'a str,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn push(&mut self, severity: Severity, path: String, origin: Option<&Origin>, message: String) {
        let (field, line, column) =
            origin.map_or((None, 0, 0), |o| (Some(o.field.clone()), o.line, o.column));
        self.out.push(Diagnostic {
            severity,
            message,
            path: Some(path),
            field: field.filter(|f| !f.is_empty()),
            line,
            column,
            source_name: self.source_name.to_owned(),
        });
    }

    fn origin(&self, path: &str) -> Option<Origin> {
        self.conv.origin_for_path(path).cloned()
    }

    /// Every device a spec names must be in the inventory.
    fn devices(&mut self, spec: &ServiceSpec, inventory: &BTreeMap<String, Device>) {
        let kind = spec.kind();
        let (module, top) = module_of(kind);
        let base = format!("/{module}:{top}");
        let mut refs: Vec<(String, String)> = Vec::new();
        let targets = |t: &Targets, refs: &mut Vec<(String, String)>| {
            for d in &t.devices {
                refs.push((
                    d.device.clone(),
                    format!(
                        "{base}/targets/device[device={}][interface={}]/device",
                        pred_value(&d.device),
                        pred_value(&d.interface)
                    ),
                ));
            }
        };
        match &spec.body {
            ServiceBody::Firewall(f) => targets(&f.targets, &mut refs),
            ServiceBody::LoadBalancer(l) => targets(&l.targets, &mut refs),
            ServiceBody::Router(r) => {
                for d in &r.devices {
                    refs.push((
                        d.device.clone(),
                        format!("{base}/device[device={}]/device", pred_value(&d.device)),
                    ));
                }
            }
            ServiceBody::Vpn(v) => {
                for t in &v.tunnels {
                    refs.push((
                        t.device.clone(),
                        format!(
                            "{base}/tunnel[device={}][peer={}]/device",
                            pred_value(&t.device),
                            pred_value(&t.peer.to_string())
                        ),
                    ));
                }
            }
            ServiceBody::SdWan(s) => {
                for site in &s.sites {
                    for d in &site.devices {
                        refs.push((
                            d.clone(),
                            format!(
                                "{base}/site[site-id='{}']/device[.={}]",
                                site.site_id,
                                pred_value(d)
                            ),
                        ));
                    }
                }
            }
        }
        for (name, path) in refs {
            if !inventory.contains_key(&name) {
                let origin = self.origin(&path);
                let known: Vec<&str> = inventory.keys().map(String::as_str).collect();
                let hint = super::convert::closest(&name, &known)
                    .map(|c| format!("; did you mean \"{c}\"?"))
                    .unwrap_or_default();
                self.push(
                    Severity::Error,
                    path,
                    origin.as_ref(),
                    format!("unknown device \"{name}\": not in the inventory{hint}"),
                );
            }
        }
    }

    /// libyang and the converter already refuse repeated sequence numbers;
    /// this keeps the typed model honest should either ever change.
    fn duplicate_sequences(&mut self, fw: &FirewallSpec) {
        let mut seen = std::collections::HashSet::new();
        for r in &fw.rules {
            if !seen.insert(r.sequence) {
                let path = rule_path(r.sequence);
                let origin = self.origin(&path);
                self.push(
                    Severity::Error,
                    path,
                    origin.as_ref(),
                    format!("duplicate sequence number {}", r.sequence),
                );
            }
        }
    }

    /// A rule whose sources and destinations share no address family can
    /// match no packet; renderers would drop it, so it is refused here.
    fn address_families(&mut self, fw: &FirewallSpec) {
        for rule in &fw.rules {
            let (Some(src), Some(dst)) = (families(&rule.sources), families(&rule.destinations))
            else {
                continue;
            };
            if src & dst != 0 {
                continue;
            }
            let path = rule_path(rule.sequence);
            let origin = self.origin(&path);
            self.push(
                Severity::Error,
                path,
                origin.as_ref(),
                format!(
                    "rule {}: sources are {} and destinations {}; no packet can match both                      (split it into one rule per address family)",
                    rule.sequence,
                    family_words(src),
                    family_words(dst)
                ),
            );
        }
    }

    fn rules(&mut self, fw: &FirewallSpec) {
        let mut rules: Vec<&FirewallRule> = fw.rules.iter().collect();
        rules.sort_by_key(|r| r.sequence);
        if rules.len() > MAX_ANALYZED_RULES {
            let path = "/rampart-firewall:firewall/rule".to_owned();
            let origin = self.origin(&path);
            self.push(
                Severity::Warning,
                path,
                origin.as_ref(),
                format!(
                    "{} rules: shadowing and overlap analysis skipped (limit {MAX_ANALYZED_RULES})",
                    rules.len()
                ),
            );
            return;
        }
        let mut overlaps = 0usize;
        // A shadowed rule never matches, so overlapping it means nothing.
        let mut dead = vec![false; rules.len()];
        for (j, later) in rules.iter().enumerate() {
            let mut shadowed = false;
            for earlier in &rules[..j] {
                if covers(earlier, later) {
                    let lpath = rule_path(later.sequence);
                    let lo = self.origin(&lpath);
                    let eo = self.origin(&rule_path(earlier.sequence));
                    let verdict = if earlier.action == later.action {
                        "is redundant"
                    } else {
                        "never matches"
                    };
                    self.push(
                        Severity::Warning,
                        lpath,
                        lo.as_ref(),
                        format!(
                            "rule {} {verdict}: it is shadowed by rule {} (line {}), which matches everything it matches",
                            later.sequence,
                            earlier.sequence,
                            eo.map_or(0, |o| o.line)
                        ),
                    );
                    shadowed = true;
                    dead[j] = true;
                    break;
                }
            }
            if shadowed {
                continue;
            }
            for (i, earlier) in rules[..j].iter().enumerate() {
                if !dead[i] && earlier.action != later.action && intersects(earlier, later) {
                    overlaps += 1;
                    if overlaps > MAX_OVERLAP_WARNINGS {
                        continue;
                    }
                    let lpath = rule_path(later.sequence);
                    let lo = self.origin(&lpath);
                    let eo = self.origin(&rule_path(earlier.sequence));
                    self.push(
                        Severity::Warning,
                        lpath,
                        lo.as_ref(),
                        format!(
                            "rule {} ({}) overlaps rule {} (line {}, {}); for the common traffic rule {} wins",
                            later.sequence,
                            action_word(later.action),
                            earlier.sequence,
                            eo.map_or(0, |o| o.line),
                            action_word(earlier.action),
                            earlier.sequence
                        ),
                    );
                }
            }
        }
        if overlaps > MAX_OVERLAP_WARNINGS {
            let path = "/rampart-firewall:firewall/rule".to_owned();
            let origin = self.origin(&path);
            self.push(
                Severity::Warning,
                path,
                origin.as_ref(),
                format!(
                    "{} more overlapping rule pairs not listed",
                    overlaps - MAX_OVERLAP_WARNINGS
                ),
            );
        }
    }
}

const V4: u8 = 1;
const V6: u8 = 2;

/// The address families of a prefix list as bits; `None` for an empty
/// list, which matches either family.
fn families(prefixes: &[IpNet]) -> Option<u8> {
    (!prefixes.is_empty()).then(|| {
        prefixes.iter().fold(0, |f, p| {
            f | match p {
                IpNet::V4(_) => V4,
                IpNet::V6(_) => V6,
            }
        })
    })
}

fn family_words(f: u8) -> &'static str {
    if f == V4 { "IPv4 only" } else { "IPv6 only" }
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Permit => "permit",
        Action::Deny => "deny",
    }
}

fn rule_path(sequence: u32) -> String {
    format!("/rampart-firewall:firewall/rule[sequence='{sequence}']")
}

// ===== rule geometry =====

/// Whether every packet `b` matches is also matched by `a`.
fn covers(a: &FirewallRule, b: &FirewallRule) -> bool {
    proto_covers(a.protocol, b.protocol)
        && prefixes_cover(&a.sources, &b.sources)
        && prefixes_cover(&a.destinations, &b.destinations)
        && ports_cover(&a.source_ports, &b.source_ports)
        && ports_cover(&a.destination_ports, &b.destination_ports)
        && opt_covers(a.icmp_type, b.icmp_type)
        && opt_covers(a.icmp_code, b.icmp_code)
}

/// Whether some packet matches both.
fn intersects(a: &FirewallRule, b: &FirewallRule) -> bool {
    proto_intersects(a.protocol, b.protocol)
        && prefixes_intersect(&a.sources, &b.sources)
        && prefixes_intersect(&a.destinations, &b.destinations)
        && ports_intersect(&a.source_ports, &b.source_ports)
        && ports_intersect(&a.destination_ports, &b.destination_ports)
        && opt_intersects(a.icmp_type, b.icmp_type)
        && opt_intersects(a.icmp_code, b.icmp_code)
}

fn proto_covers(a: Protocol, b: Protocol) -> bool {
    a == Protocol::Any || a == b
}

fn proto_intersects(a: Protocol, b: Protocol) -> bool {
    a == Protocol::Any || b == Protocol::Any || a == b
}

/// Empty means any address of either family.
fn prefixes_cover(a: &[IpNet], b: &[IpNet]) -> bool {
    if a.is_empty() {
        return true;
    }
    if b.is_empty() {
        return false;
    }
    b.iter().all(|pb| a.iter().any(|pa| pa.contains(pb)))
}

fn prefixes_intersect(a: &[IpNet], b: &[IpNet]) -> bool {
    a.is_empty()
        || b.is_empty()
        || a.iter()
            .any(|pa| b.iter().any(|pb| pa.contains(pb) || pb.contains(pa)))
}

fn ports_cover(a: &[PortRange], b: &[PortRange]) -> bool {
    if a.is_empty() {
        return true;
    }
    if b.is_empty() {
        return false;
    }
    // Each range of b must be covered by the union of a's ranges.
    let mut merged: Vec<PortRange> = a.to_vec();
    merged.sort();
    let mut union: Vec<PortRange> = Vec::new();
    for r in merged {
        match union.last_mut() {
            Some(last) if u32::from(r.first) <= u32::from(last.last) + 1 => {
                last.last = last.last.max(r.last);
            }
            _ => union.push(r),
        }
    }
    b.iter().all(|rb| union.iter().any(|ra| ra.contains(rb)))
}

fn ports_intersect(a: &[PortRange], b: &[PortRange]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|ra| b.iter().any(|rb| ra.overlaps(rb)))
}

fn opt_covers(a: Option<u8>, b: Option<u8>) -> bool {
    a.is_none() || a == b
}

fn opt_intersects(a: Option<u8>, b: Option<u8>) -> bool {
    a.is_none() || b.is_none() || a == b
}
