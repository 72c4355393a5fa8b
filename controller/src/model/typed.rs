//! Between YANG instance data and the typed model.
//!
//! libyang's validated output (canonical values, defaults filled in) is
//! reshaped into the serde form of [`spec::ServiceSpec`] by walking the same
//! schema the converter used, so a field added to a YANG module only needs
//! its counterpart in `spec.rs`. [`spec_to_json`] walks the other way to the
//! user-facing camelCase form.

use std::{collections::HashMap, sync::OnceLock};

use serde_json::{Map, Value, json};

use super::{
    convert::{Converted, module_of},
    device::Device,
    spec::{API_VERSION, Kind, ServiceSpec},
    yang::{ListShape, SKind, SNode, YangContext},
};

/// The serde field name of a schema node in `spec.rs`.
fn serde_name(node: &SNode) -> String {
    if node.name == "type" {
        return "kind".to_owned();
    }
    let mut out = String::with_capacity(node.user_name.len() + 2);
    for c in node.user_name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The spec part of a kind's top container (everything but metadata).
fn spec_schema(root: &SNode) -> SNode {
    SNode {
        children: root
            .children
            .iter()
            .filter(|c| c.name != "metadata")
            .cloned()
            .collect(),
        ..root.clone()
    }
}

fn kind_of_module(module: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| module_of(*k).0 == module)
}

/// Builds the typed spec from libyang's validated JSON.
pub(crate) fn from_yang(
    value: &Value,
    conv: &Converted,
    schemas: &HashMap<String, SNode>,
) -> Result<ServiceSpec, String> {
    let kind =
        kind_of_module(conv.module).ok_or_else(|| format!("no kind for module {}", conv.module))?;
    let (module, top) = module_of(kind);
    let root = schemas
        .get(module)
        .ok_or_else(|| format!("no schema for {module}"))?;
    let data = value
        .get(format!("{module}:{top}"))
        .ok_or_else(|| format!("validated data lacks {module}:{top}"))?;
    let meta_schema = root.child("metadata").ok_or("schema lacks metadata")?;
    let meta = yang_to_serde(data.get("metadata"), meta_schema);
    let body = yang_to_serde(Some(data), &spec_schema(root));
    let typed = json!({ "metadata": meta, "body": { "kind": kind.as_str(), "spec": body } });
    serde_json::from_value(typed)
        .map_err(|e| format!("validated {kind} data does not fit the typed model: {e}"))
}

fn yang_to_serde(v: Option<&Value>, schema: &SNode) -> Value {
    let empty = Map::new();
    let obj = v.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = Map::new();
    for child in schema.children.iter().filter(|c| !c.is_hidden()) {
        let key = serde_name(child);
        let cv = obj.get(&child.name);
        match &child.kind {
            SKind::Leaf(_) => {
                if let Some(x) = cv {
                    out.insert(key, x.clone());
                }
            }
            SKind::LeafList(_) => {
                out.insert(key, cv.cloned().unwrap_or_else(|| json!([])));
            }
            SKind::Container { presence } => {
                if cv.is_some() || !presence {
                    out.insert(key, yang_to_serde(cv, child));
                }
            }
            SKind::List { shape, .. } => {
                let entries = cv
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let value = match shape {
                    ListShape::Map => Value::Object(
                        entries
                            .iter()
                            .filter_map(|e| {
                                let name = e.get("name")?.as_str()?.to_owned();
                                let value = e.get("value").cloned().unwrap_or_else(|| json!(""));
                                Some((name, value))
                            })
                            .collect(),
                    ),
                    ListShape::PortRange => Value::Array(
                        entries
                            .iter()
                            .map(|e| json!({ "first": e.get("first"), "last": e.get("last") }))
                            .collect(),
                    ),
                    ListShape::Plain | ListShape::Indexed => Value::Array(
                        entries
                            .iter()
                            .map(|e| yang_to_serde(Some(e), child))
                            .collect(),
                    ),
                };
                out.insert(key, value);
            }
        }
    }
    Value::Object(out)
}

/// The schemas, for [`spec_to_json`], which has no validator at hand.
fn schemas() -> &'static HashMap<String, SNode> {
    static SCHEMAS: OnceLock<HashMap<String, SNode>> = OnceLock::new();
    SCHEMAS.get_or_init(|| match YangContext::new() {
        Ok((_, s)) => s,
        Err(e) => {
            // The modules are compiled in and covered by tests; reaching
            // this is a build defect. Without schemas spec_to_json falls
            // back to the plain serde form.
            tracing::error!(error = %e, "embedded YANG modules failed to load");
            HashMap::new()
        }
    })
}

/// The user-facing (camelCase, `apiVersion`/`kind`/`metadata`/`spec`) form
/// of a typed spec: what the API returns as the normalised spec, and what
/// [`super::Validator::validate`] turns back into the same spec.
#[must_use]
pub fn spec_to_json(spec: &ServiceSpec) -> Value {
    let kind = spec.kind();
    let (module, _) = module_of(kind);
    let serde = serde_json::to_value(spec).unwrap_or(Value::Null);
    let Some(root) = schemas().get(module) else {
        return serde;
    };
    let meta = root
        .child("metadata")
        .map_or(Value::Null, |m| serde_to_user(serde.get("metadata"), m));
    let body = serde_to_user(serde.pointer("/body/spec"), &spec_schema(root));
    json!({ "apiVersion": API_VERSION, "kind": kind.as_str(), "metadata": meta, "spec": body })
}

fn serde_to_user(v: Option<&Value>, schema: &SNode) -> Value {
    let empty = Map::new();
    let obj = v.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = Map::new();
    for child in schema.children.iter().filter(|c| !c.is_hidden()) {
        let Some(cv) = obj.get(&serde_name(child)).filter(|v| !v.is_null()) else {
            continue;
        };
        let user = child.user_name.clone();
        let value = match &child.kind {
            // Labels and selectors are maps in both forms.
            SKind::Leaf(_)
            | SKind::LeafList(_)
            | SKind::List {
                shape: ListShape::Map,
                ..
            } => cv.clone(),
            SKind::Container { .. } => serde_to_user(Some(cv), child),
            SKind::List {
                shape: ListShape::PortRange,
                ..
            } => Value::Array(
                cv.as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|r| {
                        match (
                            r.get("first").and_then(Value::as_u64),
                            r.get("last").and_then(Value::as_u64),
                        ) {
                            (Some(a), Some(b)) if a == b => json!(a),
                            (Some(a), Some(b)) => json!(format!("{a}-{b}")),
                            _ => r.clone(),
                        }
                    })
                    .collect(),
            ),
            SKind::List { .. } => Value::Array(
                cv.as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|e| serde_to_user(Some(e), child))
                    .collect(),
            ),
        };
        let is_empty_list = value.as_array().is_some_and(Vec::is_empty);
        if !is_empty_list {
            out.insert(user, value);
        }
    }
    Value::Object(out)
}

/// An inventory device as `rampart-devices` instance data.
pub(crate) fn device_to_yang(device: &Device) -> Value {
    let mut entry = Map::new();
    entry.insert("name".to_owned(), json!(device.name));
    entry.insert("platform".to_owned(), json!(device.platform.as_str()));
    entry.insert("address".to_owned(), json!(device.address));
    if !device.credentials_ref.is_empty() {
        entry.insert("credentials-ref".to_owned(), json!(device.credentials_ref));
    }
    if !device.labels.is_empty() {
        let labels: Vec<Value> = device
            .labels
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        entry.insert("label".to_owned(), Value::Array(labels));
    }
    json!({ "rampart-devices:devices": { "device": [Value::Object(entry)] } })
}
