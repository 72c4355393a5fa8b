//! IOS-XE operational state from Cisco's `-oper` models: the NETCONF
//! `<get>` subtree filters rampartd sends, and the reply parser for both
//! encodings (NETCONF XML and RESTCONF RFC 7951 JSON).
//!
//! Paths read (Cisco-IOS-XE-acl-oper, -interfaces-oper, -bgp-oper; the same
//! in 16.9 and 17.12):
//! - `/access-lists/access-list[access-control-list-name]/access-list-entries/
//!   access-list-entry[rule-name]/access-list-entries-oper-data/match-counter`
//! - `/interfaces/interface[name]/oper-status` (`if-oper-state-ready` is up)
//! - `/bgp-state-data/neighbors/neighbor[afi-safi vrf-name neighbor-id]/
//!   session-state` (`fsm-established` is up)

use quick_xml::{Reader, events::Event};
use serde_json::{Map, Value};

use super::{AceCounter, BgpNeighbor, InterfaceState, Snapshot, StateError};

const PLATFORM: &str = "iosxe";
/// Namespaces of the three operational modules.
pub const ACL_OPER_NS: &str = "http://cisco.com/ns/yang/Cisco-IOS-XE-acl-oper";
/// See [`ACL_OPER_NS`].
pub const INTERFACES_OPER_NS: &str = "http://cisco.com/ns/yang/Cisco-IOS-XE-interfaces-oper";
/// See [`ACL_OPER_NS`].
pub const BGP_OPER_NS: &str = "http://cisco.com/ns/yang/Cisco-IOS-XE-bgp-oper";

/// The `<get>` subtree filter: only the leaves the parser reads, so a
/// device with thousands of ACEs or routes answers with what is needed.
#[must_use]
pub fn subtree_filter() -> String {
    format!(
        "<access-lists xmlns=\"{ACL_OPER_NS}\"><access-list><access-control-list-name/>\
<access-list-entries><access-list-entry><rule-name/><access-list-entries-oper-data>\
<match-counter/></access-list-entries-oper-data></access-list-entry></access-list-entries>\
</access-list></access-lists>\
<interfaces xmlns=\"{INTERFACES_OPER_NS}\"><interface><name/><oper-status/></interface></interfaces>\
<bgp-state-data xmlns=\"{BGP_OPER_NS}\"><neighbors><neighbor><afi-safi/><vrf-name/>\
<neighbor-id/><session-state/></neighbor></neighbors></bgp-state-data>"
    )
}

/// RESTCONF resources read, in order (RFC 8040 data paths with fields).
pub const RESTCONF_PATHS: [&str; 3] = [
    "Cisco-IOS-XE-acl-oper:access-lists",
    "Cisco-IOS-XE-interfaces-oper:interfaces/interface?fields=name;oper-status",
    "Cisco-IOS-XE-bgp-oper:bgp-state-data/neighbors",
];

/// Parses the inner XML of a `<get>` reply's `<data>`.
///
/// # Errors
/// [`StateError`] for XML that does not parse or values of the wrong type.
pub fn parse_xml(data: &str) -> Result<Snapshot, StateError> {
    parse_value(&xml_to_value(data)?)
}

/// Parses RFC 7951 JSON: one document, or several (one per
/// [`RESTCONF_PATHS`] resource) merged by the caller into one object.
///
/// # Errors
/// [`StateError`] for JSON that does not parse or values of the wrong type.
pub fn parse_json(data: &str) -> Result<Snapshot, StateError> {
    let v: Value = serde_json::from_str(data)
        .map_err(|e| StateError::new(PLATFORM, format!("line {}", e.line()), e.to_string()))?;
    parse_value(&v)
}

fn parse_value(root: &Value) -> Result<Snapshot, StateError> {
    let mut snap = Snapshot::default();
    for list in items(member(Some(root), "access-lists"), "access-list") {
        let name = text(
            list,
            "access-control-list-name",
            "/access-lists/access-list",
        )?;
        let path = format!("/access-lists/access-list[{name}]");
        for ace in items(
            member(Some(list), "access-list-entries"),
            "access-list-entry",
        ) {
            let entry = number(ace, "rule-name", &path)?;
            // An entry the device has not counted yet carries no counter.
            let matches = match member(Some(ace), "access-list-entries-oper-data") {
                Some(oper) if member(Some(oper), "match-counter").is_some() => {
                    number(oper, "match-counter", &path)?
                }
                _ => 0,
            };
            snap.acl_entries.push(AceCounter {
                list: name.clone(),
                entry,
                matches,
            });
        }
    }
    for intf in items(member(Some(root), "interfaces"), "interface") {
        let name = text(intf, "name", "/interfaces/interface")?;
        let status = member(Some(intf), "oper-status").and_then(Value::as_str);
        snap.interfaces.push(InterfaceState {
            up: status == Some("if-oper-state-ready"),
            name,
        });
    }
    let neighbors = member(member(Some(root), "bgp-state-data"), "neighbors");
    for n in items(
        neighbors.or_else(|| member(Some(root), "neighbors")),
        "neighbor",
    ) {
        let path = "/bgp-state-data/neighbors/neighbor";
        let state = member(Some(n), "session-state").and_then(Value::as_str);
        snap.bgp_neighbors.push(BgpNeighbor {
            vrf: text(n, "vrf-name", path)?,
            neighbor: text(n, "neighbor-id", path)?,
            established: state == Some("fsm-established"),
        });
    }
    Ok(snap)
}

/// The member `name` of an object, whatever module prefix qualifies it
/// (RFC 7951 prefixes top-level and cross-module members).
fn member<'a>(v: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    let obj = v?.as_object()?;
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.rsplit_once(':').is_some_and(|(_, local)| local == name))
            .map(|(_, v)| v)
    })
}

/// Entries of list `name` under `parent` (one entry decodes as an object).
fn items<'a>(parent: Option<&'a Value>, name: &str) -> Vec<&'a Value> {
    match member(parent, name) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    }
}

fn text(v: &Value, leaf: &str, path: &str) -> Result<String, StateError> {
    match member(Some(v), leaf) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(StateError::new(
            PLATFORM,
            format!("{path}/{leaf}"),
            "missing",
        )),
    }
}

/// A counter or integer key: JSON numbers, or strings as RFC 7951 encodes
/// 64-bit integers and XML encodes everything.
fn number(v: &Value, leaf: &str, path: &str) -> Result<u64, StateError> {
    let at = || format!("{path}/{leaf}");
    match member(Some(v), leaf) {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| StateError::new(PLATFORM, at(), format!("{n} is not a counter"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| StateError::new(PLATFORM, at(), format!("{s:?} is not a counter"))),
        _ => Err(StateError::new(PLATFORM, at(), "missing")),
    }
}

/// XML to the shape RFC 7951 JSON has, without prefixes: an element with
/// children is an object, a repeated element an array, a leaf its text.
fn xml_to_value(data: &str) -> Result<Value, StateError> {
    let mut reader = Reader::from_str(data);
    reader.config_mut().trim_text(true);
    // Stack of (local name, children, text) of open elements.
    let mut stack: Vec<(String, Map<String, Value>, String)> =
        vec![(String::new(), Map::new(), String::new())];
    loop {
        let ev = reader.read_event().map_err(|e| {
            StateError::new(
                PLATFORM,
                format!("byte {}", reader.buffer_position()),
                e.to_string(),
            )
        })?;
        match ev {
            Event::Start(s) => {
                let name = s.local_name().as_ref().to_owned();
                stack.push((name, Map::new(), String::new()));
            }
            Event::Empty(s) => {
                let name = s.local_name().as_ref().to_owned();
                let top = stack.last_mut().expect("root frame");
                insert(&mut top.1, name, Value::String(String::new()));
            }
            Event::Text(t) => stack
                .last_mut()
                .expect("root frame")
                .2
                .push_str(&t.xml10_content()),
            Event::CData(t) => stack
                .last_mut()
                .expect("root frame")
                .2
                .push_str(&t.into_inner()),
            Event::GeneralRef(r) => {
                let c = crate::wire::xml::resolve_ref(&r).ok_or_else(|| {
                    StateError::new(
                        PLATFORM,
                        format!("byte {}", reader.buffer_position()),
                        format!("unknown entity &{};", r.as_ref() as &str),
                    )
                })?;
                stack.last_mut().expect("root frame").2.push(c);
            }
            Event::End(_) => {
                if stack.len() < 2 {
                    return Err(StateError::new(PLATFORM, "end tag", "unbalanced"));
                }
                let (name, children, text) = stack.pop().expect("checked");
                let value = if children.is_empty() {
                    Value::String(text)
                } else {
                    Value::Object(children)
                };
                insert(&mut stack.last_mut().expect("root frame").1, name, value);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(StateError::new(
            PLATFORM,
            format!("<{}>", stack.last().map_or("", |f| f.0.as_str())),
            "element not closed",
        ));
    }
    Ok(Value::Object(stack.pop().expect("root frame").1))
}

fn insert(map: &mut Map<String, Value>, name: String, value: Value) {
    match map.get_mut(&name) {
        Some(Value::Array(a)) => a.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            map.insert(name, value);
        }
    }
}
