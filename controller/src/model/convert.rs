//! User document → RFC 7951 JSON for the kind's YANG module, remembering for
//! every emitted node where the user wrote it.
//!
//! The walk is driven by the schema ([`SNode`]), so the YANG modules decide
//! which fields exist; this file only knows the few shapes where the user
//! format deliberately differs from plain YANG JSON (maps for labels, `80` /
//! `"8000-8080"` for port ranges, lists without a natural key).

use std::{collections::HashMap, fmt::Write as _};

use super::{
    Diagnostic, MAX_RULES, Severity,
    source::{ScalarStyle, UKey, UNode, UValue},
    spec::{API_VERSION, Kind},
    yang::{LeafKind, ListShape, SKind, SNode},
};

/// Where a YANG data node came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The user-facing field path (`spec.rules[2].protocol`).
    pub field: String,
    /// Line, 1-based.
    pub line: u32,
    /// Column, 1-based.
    pub column: u32,
}

/// The YANG module and top-level container of a kind.
pub(crate) fn module_of(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Firewall => ("rampart-firewall", "firewall"),
        Kind::Router => ("rampart-router", "router"),
        Kind::LoadBalancer => ("rampart-loadbalancer", "load-balancer"),
        Kind::Vpn => ("rampart-vpn", "vpn"),
        Kind::SdWan => ("rampart-sdwan", "sdwan"),
    }
}

/// A JSON value about to be printed, with its origin.
#[derive(Debug)]
pub(crate) enum J {
    /// Object members in order.
    Obj(Vec<(String, JNode)>),
    Arr(Vec<JNode>),
    /// A number, already checked to be an integer.
    Num(String),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// YANG `empty`: `[null]`.
    Empty,
}

/// A JSON value with the origin of the user node it came from.
#[derive(Debug)]
pub(crate) struct JNode {
    pub value: J,
    pub origin: Origin,
}

/// The result of converting one document.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    /// RFC 7951 JSON text, one scalar per line.
    pub json: String,
    /// Origin of each line of `json` (index 0 is line 1).
    pub line_origins: Vec<Option<Origin>>,
    /// YANG data path → origins (several when the user repeated an entry).
    pub paths: HashMap<String, Vec<Origin>>,
    /// User field path → (type name, enumeration values) of leaves, for
    /// error messages.
    pub leaf_types: HashMap<String, (String, Vec<String>)>,
    /// Module of the document.
    pub module: &'static str,
}

impl Converted {
    /// Best origin for a libyang data path: the exact node, else its nearest
    /// recorded ancestor (canonical values in predicates may differ from
    /// what the user wrote).
    pub fn origin_for_path(&self, path: &str) -> Option<&Origin> {
        let mut p = path;
        loop {
            if let Some(o) = self.paths.get(p).and_then(|v| v.last()) {
                return Some(o);
            }
            p = parent_path(p)?;
        }
    }
}

/// Strips the last segment of a data path, ignoring `/` inside predicates.
pub(crate) fn parent_path(path: &str) -> Option<&str> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut cut = None;
    for (i, c) in path.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' => depth += 1,
                ']' => depth -= 1,
                '/' if depth == 0 => cut = Some(i),
                _ => {}
            },
        }
    }
    match cut {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

/// Quotes a predicate value the way libyang prints it.
pub(crate) fn pred_value(v: &str) -> String {
    if v.contains('\'') {
        format!("\"{v}\"")
    } else {
        format!("'{v}'")
    }
}

/// Converts one parsed document, collecting diagnostics for what libyang
/// cannot see (envelope, unknown fields, wrong shapes, duplicate keys).
pub(crate) struct Converter<'a> {
    diags: Vec<Diagnostic>,
    source_name: &'a str,
    paths: HashMap<String, Vec<Origin>>,
    leaf_types: HashMap<String, (String, Vec<String>)>,
    /// Off while walking an entry that is dropped (a duplicate key), so its
    /// nodes do not shadow the first entry's in the path map.
    recording: bool,
}

impl<'a> Converter<'a> {
    pub(crate) fn new(source_name: &'a str) -> Self {
        Self {
            diags: Vec::new(),
            source_name,
            paths: HashMap::new(),
            leaf_types: HashMap::new(),
            recording: true,
        }
    }

    fn error(&mut self, field: &str, line: u32, column: u32, message: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            message,
            path: None,
            field: (!field.is_empty()).then(|| field.to_owned()),
            line,
            column,
            source_name: self.source_name.to_owned(),
        });
    }

    fn record(&mut self, ypath: &str, origin: &Origin) {
        if !self.recording {
            return;
        }
        self.paths
            .entry(ypath.to_owned())
            .or_default()
            .push(origin.clone());
    }

    /// Reads the envelope, picks the kind's schema and converts the body.
    /// Returns `None` (with the diagnostics saying why) when the kind could
    /// not be determined.
    pub(crate) fn convert(
        mut self,
        doc: &UNode,
        schema_of: impl Fn(&str) -> Option<&'a SNode>,
    ) -> (Option<(Kind, Converted)>, Vec<Diagnostic>) {
        let UValue::Map(entries) = &doc.value else {
            self.error(
                "",
                doc.pos.line,
                doc.pos.column,
                "a document must be a mapping (apiVersion, kind, metadata, spec)".to_owned(),
            );
            return (None, self.diags);
        };
        let mut api: Option<&UNode> = None;
        let mut kind_node: Option<&UNode> = None;
        let mut metadata: Option<(&UKey, &UNode)> = None;
        let mut spec: Option<(&UKey, &UNode)> = None;
        for (k, v) in entries {
            match k.text.as_str() {
                "apiVersion" => api = Some(v),
                "kind" => kind_node = Some(v),
                "metadata" => metadata = Some((k, v)),
                "spec" => spec = Some((k, v)),
                other => {
                    let msg = unknown_field_msg(
                        other,
                        "the document",
                        &["apiVersion", "kind", "metadata", "spec"],
                    );
                    self.error(other, k.pos.line, k.pos.column, msg);
                }
            }
        }
        match api {
            None => self.error(
                "apiVersion",
                doc.pos.line,
                doc.pos.column,
                format!("missing apiVersion (expected \"{API_VERSION}\")"),
            ),
            Some(v) => match v.scalar() {
                Some(API_VERSION) => {}
                Some(other) => self.error(
                    "apiVersion",
                    v.pos.line,
                    v.pos.column,
                    format!("unsupported apiVersion \"{other}\" (expected \"{API_VERSION}\")"),
                ),
                None => self.error(
                    "apiVersion",
                    v.pos.line,
                    v.pos.column,
                    format!("apiVersion must be a string, found {}", v.describe()),
                ),
            },
        }
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        let kind = match kind_node {
            None => {
                self.error(
                    "kind",
                    doc.pos.line,
                    doc.pos.column,
                    format!("missing kind (one of {})", kinds.join(", ")),
                );
                None
            }
            Some(v) => match v.scalar() {
                Some(s) => Kind::parse(s).or_else(|| {
                    let hint = closest(s, &kinds)
                        .map(|c| format!("; did you mean \"{c}\"?"))
                        .unwrap_or_default();
                    self.error(
                        "kind",
                        v.pos.line,
                        v.pos.column,
                        format!("unknown kind \"{s}\" (one of {}){hint}", kinds.join(", ")),
                    );
                    None
                }),
                None => {
                    self.error(
                        "kind",
                        v.pos.line,
                        v.pos.column,
                        format!("kind must be a string, found {}", v.describe()),
                    );
                    None
                }
            },
        };
        let Some(kind) = kind else {
            return (None, self.diags);
        };
        let (module, top) = module_of(kind);
        let Some(root) = schema_of(module) else {
            self.error(
                "kind",
                doc.pos.line,
                doc.pos.column,
                format!("no schema loaded for {module}"),
            );
            return (None, self.diags);
        };
        let top_path = format!("/{module}:{top}");
        let root_origin = Origin {
            field: String::new(),
            line: doc.pos.line,
            column: doc.pos.column,
        };
        self.record(&top_path, &root_origin);

        let mut members = Vec::new();
        match metadata {
            None => self.error(
                "metadata",
                doc.pos.line,
                doc.pos.column,
                "missing metadata (name and tenant are required)".to_owned(),
            ),
            Some((k, v)) => {
                if let Some(meta_schema) = root.child("metadata") {
                    let origin = Origin {
                        field: "metadata".to_owned(),
                        line: k.pos.line,
                        column: k.pos.column,
                    };
                    let ypath = format!("{top_path}/metadata");
                    self.record(&ypath, &origin);
                    let obj = self.container(v, meta_schema, &ypath, "metadata");
                    members.push((
                        "metadata".to_owned(),
                        JNode {
                            value: J::Obj(obj),
                            origin,
                        },
                    ));
                }
            }
        }
        let spec_schema = SNode {
            children: root
                .children
                .iter()
                .filter(|c| c.name != "metadata")
                .cloned()
                .collect(),
            ..root.clone()
        };
        if let Some((_, v)) = spec {
            members.extend(self.container(v, &spec_schema, &top_path, "spec"));
        }
        let doc_json = J::Obj(vec![(
            format!("{module}:{top}"),
            JNode {
                value: J::Obj(members),
                origin: root_origin.clone(),
            },
        )]);
        let mut printer = Printer {
            out: String::new(),
            line_origins: vec![None],
        };
        printer.print(
            &JNode {
                value: doc_json,
                origin: root_origin,
            },
            0,
        );
        let converted = Converted {
            json: printer.out,
            line_origins: printer.line_origins,
            paths: self.paths,
            leaf_types: self.leaf_types,
            module,
        };
        (Some((kind, converted)), self.diags)
    }

    fn join(parent: &str, name: &str) -> String {
        if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    }

    /// A mapping against a container (or list entry) schema.
    fn container(
        &mut self,
        node: &UNode,
        schema: &SNode,
        ypath: &str,
        upath: &str,
    ) -> Vec<(String, JNode)> {
        let entries = match &node.value {
            UValue::Map(m) => m,
            _ if node.is_null() => return Vec::new(),
            _ => {
                self.error(
                    upath,
                    node.pos.line,
                    node.pos.column,
                    format!("expected a mapping, found {}", node.describe()),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(child) = schema.child_by_user_name(&k.text) else {
                let known: Vec<&str> = schema
                    .children
                    .iter()
                    .filter(|c| !c.is_hidden())
                    .map(|c| c.user_name.as_str())
                    .collect();
                let place = if upath.is_empty() {
                    "the document".to_owned()
                } else {
                    upath.to_owned()
                };
                let msg = unknown_field_msg(&k.text, &place, &known);
                self.error(&Self::join(upath, &k.text), k.pos.line, k.pos.column, msg);
                continue;
            };
            let field = Self::join(upath, &child.user_name);
            let cpath = format!("{ypath}/{}", child.name);
            let origin = Origin {
                field: field.clone(),
                line: v.pos.line,
                column: v.pos.column,
            };
            if let Some(j) = self.node(v, child, &cpath, &field, &origin) {
                out.push((child.name.clone(), JNode { value: j, origin }));
            }
        }
        out
    }

    fn node(
        &mut self,
        v: &UNode,
        child: &SNode,
        cpath: &str,
        field: &str,
        origin: &Origin,
    ) -> Option<J> {
        match &child.kind {
            SKind::Leaf(lk) => {
                self.record(cpath, origin);
                self.leaf(v, child, *lk, field)
            }
            SKind::Container { .. } => {
                self.record(cpath, origin);
                Some(J::Obj(self.container(v, child, cpath, field)))
            }
            SKind::LeafList(lk) => {
                self.record(cpath, origin);
                let items = self.seq(v, field)?;
                let mut arr = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let ifield = format!("{field}[{i}]");
                    let io = Origin {
                        field: ifield.clone(),
                        line: item.pos.line,
                        column: item.pos.column,
                    };
                    if let Some(text) = item.scalar() {
                        self.record(&format!("{cpath}[.={}]", pred_value(text)), &io);
                    }
                    if let Some(j) = self.leaf(item, child, *lk, &ifield) {
                        arr.push(JNode {
                            value: j,
                            origin: io,
                        });
                    }
                }
                Some(J::Arr(arr))
            }
            SKind::List { keys, shape } => {
                self.record(cpath, origin);
                let arr = match shape {
                    ListShape::Map => self.map_list(v, child, cpath, field),
                    ListShape::PortRange => self.port_list(v, cpath, field),
                    ListShape::Indexed | ListShape::Plain => {
                        self.entry_list(v, child, keys, *shape, cpath, field)
                    }
                };
                Some(J::Arr(arr))
            }
        }
    }

    fn seq<'n>(&mut self, v: &'n UNode, field: &str) -> Option<&'n [UNode]> {
        match &v.value {
            UValue::Seq(items) => Some(items),
            _ if v.is_null() => Some(&[]),
            _ => {
                self.error(
                    field,
                    v.pos.line,
                    v.pos.column,
                    format!("expected a list, found {}", v.describe()),
                );
                None
            }
        }
    }

    fn leaf(&mut self, v: &UNode, schema: &SNode, kind: LeafKind, field: &str) -> Option<J> {
        if let Some(t) = schema.type_name.as_ref().filter(|_| self.recording) {
            self.leaf_types
                .insert(field.to_owned(), (t.clone(), schema.enums.clone()));
        }
        let Some(text) = v.scalar() else {
            let what = if v.is_null() {
                "no value".to_owned()
            } else {
                v.describe().to_owned()
            };
            self.error(
                field,
                v.pos.line,
                v.pos.column,
                format!("expected a single value, found {what}"),
            );
            return None;
        };
        let quoted = matches!(v.value, UValue::Scalar(_, ScalarStyle::Quoted));
        Some(match kind {
            LeafKind::Number => match text.parse::<i64>() {
                Ok(n) => J::Num(n.to_string()),
                Err(_) => {
                    self.error(
                        field,
                        v.pos.line,
                        v.pos.column,
                        format!("expected an integer, found \"{text}\""),
                    );
                    return None;
                }
            },
            LeafKind::Bool => match (text, quoted) {
                ("true", false) => J::Bool(true),
                ("false", false) => J::Bool(false),
                _ => {
                    self.error(
                        field,
                        v.pos.line,
                        v.pos.column,
                        format!("expected true or false, found \"{text}\""),
                    );
                    return None;
                }
            },
            LeafKind::Empty => J::Empty,
            LeafKind::Text => J::Str(text.to_owned()),
        })
    }

    /// `labels: {env: prod}` → `[{"name": "env", "value": "prod"}]`.
    fn map_list(&mut self, v: &UNode, _schema: &SNode, cpath: &str, field: &str) -> Vec<JNode> {
        let entries = match &v.value {
            UValue::Map(m) => m,
            _ if v.is_null() => return Vec::new(),
            _ => {
                self.error(
                    field,
                    v.pos.line,
                    v.pos.column,
                    format!("expected a mapping of key: value, found {}", v.describe()),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (k, val) in entries {
            let efield = format!("{field}.{}", k.text);
            let ko = Origin {
                field: efield.clone(),
                line: k.pos.line,
                column: k.pos.column,
            };
            let vo = Origin {
                field: efield.clone(),
                line: val.pos.line,
                column: val.pos.column,
            };
            let epath = format!("{cpath}[name={}]", pred_value(&k.text));
            self.record(&epath, &ko);
            self.record(&format!("{epath}/name"), &ko);
            self.record(&format!("{epath}/value"), &vo);
            let value = if val.is_null() {
                String::new()
            } else if let Some(s) = val.scalar() {
                s.to_owned()
            } else {
                self.error(
                    &efield,
                    val.pos.line,
                    val.pos.column,
                    format!("label values must be strings, found {}", val.describe()),
                );
                continue;
            };
            out.push(JNode {
                value: J::Obj(vec![
                    (
                        "name".to_owned(),
                        JNode {
                            value: J::Str(k.text.clone()),
                            origin: ko.clone(),
                        },
                    ),
                    (
                        "value".to_owned(),
                        JNode {
                            value: J::Str(value),
                            origin: vo,
                        },
                    ),
                ]),
                origin: ko,
            });
        }
        out
    }

    /// `[80, "8000-8080"]` → `[{"first": 80, "last": 80}, {"first": 8000, "last": 8080}]`.
    fn port_list(&mut self, v: &UNode, cpath: &str, field: &str) -> Vec<JNode> {
        let Some(items) = self.seq(v, field) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut seen: HashMap<(i64, i64), u32> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let ifield = format!("{field}[{i}]");
            let o = Origin {
                field: ifield.clone(),
                line: item.pos.line,
                column: item.pos.column,
            };
            let Some(text) = item.scalar() else {
                self.error(
                    &ifield,
                    item.pos.line,
                    item.pos.column,
                    format!(
                        "expected a port or a range \"first-last\", found {}",
                        item.describe()
                    ),
                );
                continue;
            };
            let parsed = match text.split_once('-') {
                Some((a, b)) => a
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .zip(b.trim().parse::<i64>().ok()),
                None => text.trim().parse::<i64>().ok().map(|p| (p, p)),
            };
            let Some((first, last)) = parsed else {
                self.error(
                    &ifield,
                    item.pos.line,
                    item.pos.column,
                    format!("expected a port or a range \"first-last\", found \"{text}\""),
                );
                continue;
            };
            if let Some(prev) = seen.insert((first, last), item.pos.line) {
                self.error(
                    &ifield,
                    item.pos.line,
                    item.pos.column,
                    format!("duplicate port entry \"{text}\" (first at line {prev})"),
                );
                continue;
            }
            let epath = format!("{cpath}[first='{first}'][last='{last}']");
            if self.recording {
                self.leaf_types
                    .insert(ifield.clone(), ("port-number".to_owned(), Vec::new()));
            }
            self.record(&epath, &o);
            self.record(&format!("{epath}/first"), &o);
            self.record(&format!("{epath}/last"), &o);
            out.push(JNode {
                value: J::Obj(vec![
                    (
                        "first".to_owned(),
                        JNode {
                            value: J::Num(first.to_string()),
                            origin: o.clone(),
                        },
                    ),
                    (
                        "last".to_owned(),
                        JNode {
                            value: J::Num(last.to_string()),
                            origin: o.clone(),
                        },
                    ),
                ]),
                origin: o,
            });
        }
        out
    }

    /// A list of mappings; keyed lists get their duplicate keys reported here
    /// with both lines (libyang would only say "duplicate instance").
    fn entry_list(
        &mut self,
        v: &UNode,
        schema: &SNode,
        keys: &[String],
        shape: ListShape,
        cpath: &str,
        field: &str,
    ) -> Vec<JNode> {
        let Some(items) = self.seq(v, field) else {
            return Vec::new();
        };
        if schema.name == "rule" && items.len() > MAX_RULES {
            self.error(
                field,
                v.pos.line,
                v.pos.column,
                format!("too many rules: {} (at most {MAX_RULES})", items.len()),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut seen: HashMap<Vec<String>, (String, u32)> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let ifield = format!("{field}[{i}]");
            let o = Origin {
                field: ifield.clone(),
                line: item.pos.line,
                column: item.pos.column,
            };
            let epath = if shape == ListShape::Indexed {
                format!("{cpath}[index='{i}']")
            } else {
                let mut key_values = Vec::new();
                let mut pred = String::new();
                let mut keyless = None;
                for key in keys {
                    let user_key = schema
                        .child(key)
                        .map_or(key.as_str(), |c| c.user_name.as_str());
                    let kv = key_value(item, user_key);
                    if let Some(kv) = &kv {
                        let _ = write!(pred, "[{key}={}]", pred_value(kv));
                    } else if keyless.is_none() {
                        keyless = Some(user_key);
                    }
                    key_values.push(kv.unwrap_or_default());
                }
                // libyang's multi-error validation frees a list instance
                // without its key while nodes under it are still queued
                // (heap use-after-free in lyd_validate_unres, found by
                // fuzzing: fuzz/regressions/spec_parse/). Such an entry is
                // reported here, walked for its own errors, and never
                // reaches libyang.
                if let Some(user_key) = keyless {
                    if key_absent_or_null(item, user_key) {
                        self.diags.push(Diagnostic {
                            severity: Severity::Error,
                            message: format!(
                                "missing required field \"{user_key}\" (the list key)"
                            ),
                            path: Some(cpath.to_owned()),
                            field: Some(format!("{ifield}.{user_key}")),
                            line: item.pos.line,
                            column: item.pos.column,
                            source_name: self.source_name.to_owned(),
                        });
                    }
                    let was = std::mem::replace(&mut self.recording, false);
                    let _ = self.container(item, schema, cpath, &ifield);
                    self.recording = was;
                    continue;
                }
                if keys.iter().len() == key_values.iter().filter(|k| !k.is_empty()).count() {
                    if let Some((prev_field, prev_line)) = seen.get(&key_values) {
                        let what = keys
                            .iter()
                            .zip(&key_values)
                            .map(|(k, v)| format!("{} {v}", user_name_of(schema, k)))
                            .collect::<Vec<_>>()
                            .join(", ");
                        self.error(
                            &ifield,
                            item.pos.line,
                            item.pos.column,
                            format!(
                                "duplicate {what}: already used by {prev_field} at line {prev_line}"
                            ),
                        );
                        // Still walk it for unknown fields, without letting
                        // it shadow the first entry.
                        let was = std::mem::replace(&mut self.recording, false);
                        let _ = self.container(item, schema, cpath, &ifield);
                        self.recording = was;
                        continue;
                    }
                    seen.insert(key_values, (ifield.clone(), item.pos.line));
                }
                format!("{cpath}{pred}")
            };
            self.record(&epath, &o);
            let mut members = self.container(item, schema, &epath, &ifield);
            if shape == ListShape::Indexed {
                members.insert(
                    0,
                    (
                        "index".to_owned(),
                        JNode {
                            value: J::Num(i.to_string()),
                            origin: o.clone(),
                        },
                    ),
                );
            }
            out.push(JNode {
                value: J::Obj(members),
                origin: o,
            });
        }
        out
    }
}

fn user_name_of<'s>(schema: &'s SNode, yang: &'s str) -> &'s str {
    schema.child(yang).map_or(yang, |c| c.user_name.as_str())
}

/// Whether a list entry lacks its key field or leaves it null (any other
/// unusable value gets its own error from the entry's walk).
fn key_absent_or_null(item: &UNode, user_key: &str) -> bool {
    let UValue::Map(m) = &item.value else {
        return item.is_null();
    };
    m.iter()
        .find(|(k, _)| k.text == user_key)
        .is_none_or(|(_, v)| v.is_null())
}

/// The normalised text of a list key as the user wrote it (numbers without
/// leading zeros, as libyang prints them).
fn key_value(item: &UNode, user_key: &str) -> Option<String> {
    let UValue::Map(m) = &item.value else {
        return None;
    };
    let (_, v) = m.iter().find(|(k, _)| k.text == user_key)?;
    let s = v.scalar()?;
    Some(
        s.parse::<i64>()
            .map_or_else(|_| s.to_owned(), |n| n.to_string()),
    )
}

/// "unknown field" with a suggestion of the closest known name.
pub(crate) fn unknown_field_msg(name: &str, place: &str, known: &[&str]) -> String {
    let hint = closest(name, known)
        .map(|c| format!("; did you mean \"{c}\"?"))
        .unwrap_or_default();
    let mut list: Vec<&str> = known.to_vec();
    list.sort_unstable();
    format!(
        "unknown field \"{name}\" in {place}{hint} (known: {})",
        list.join(", ")
    )
}

/// The known name closest to `name` by edit distance, when close enough
/// to be a plausible typo.
pub(crate) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lname = name.to_lowercase();
    known
        .iter()
        .map(|k| (levenshtein(&lname, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

// ===== printer =====

/// Prints JSON with one scalar per line so a libyang parse error's line
/// number points at exactly one user node.
struct Printer {
    out: String,
    line_origins: Vec<Option<Origin>>,
}

impl Printer {
    fn newline(&mut self, origin: Option<&Origin>) {
        self.out.push('\n');
        self.line_origins.push(origin.cloned());
    }

    fn print(&mut self, node: &JNode, indent: usize) {
        match &node.value {
            J::Obj(members) => {
                self.out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline(Some(&v.origin));
                    self.pad(indent + 1);
                    json_string(&mut self.out, k);
                    self.out.push_str(": ");
                    self.print(v, indent + 1);
                }
                self.newline(Some(&node.origin));
                self.pad(indent);
                self.out.push('}');
            }
            J::Arr(items) => {
                self.out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline(Some(&v.origin));
                    self.pad(indent + 1);
                    self.print(v, indent + 1);
                }
                self.newline(Some(&node.origin));
                self.pad(indent);
                self.out.push(']');
            }
            J::Num(n) => self.out.push_str(n),
            J::Str(s) => json_string(&mut self.out, s),
            J::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            J::Empty => self.out.push_str("[null]"),
        }
    }

    fn pad(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push(' ');
        }
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{DocFormat, ModelError, SourceDoc, Validator};

    /// Errors of `text` as `field: message (path)`.
    fn errors(text: &str) -> Vec<String> {
        let doc = SourceDoc {
            text,
            format: DocFormat::Yaml,
            name: "t",
        };
        match Validator::new().unwrap().validate(&doc, &BTreeMap::new()) {
            Err(ModelError::Invalid { diagnostics, .. }) => diagnostics
                .iter()
                .map(|d| {
                    format!(
                        "{}: {} ({})",
                        d.field.as_deref().unwrap_or(""),
                        d.message,
                        d.path.as_deref().unwrap_or("")
                    )
                })
                .collect(),
            other => panic!("expected diagnostics, got {other:?}"),
        }
    }

    // What libyang is given: no list instance without its key (the input
    // of fuzz/regressions/spec_parse/ made libyang read freed memory, which
    // only a sanitizer sees; this checks the cause instead).
    #[test]
    fn keyless_list_entries_never_reach_libyang() {
        let v = Validator::new().unwrap();
        let text = "kind: LoadBalancer\nspec:\n virtualServices:\n - healthCheck:\n - {name: w, healthCheck: {type: tcp}}\n";
        let docs = super::super::source::parse_documents(text, DocFormat::Yaml).unwrap();
        let (converted, diags) = super::Converter::new("t").convert(&docs[0], |m| v.schemas.get(m));
        let (_, converted) = converted.expect("kind recognised");
        let json: serde_json::Value = serde_json::from_str(&converted.json).unwrap();
        let entries = json
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|lb| lb.get("virtual-service"))
            .and_then(serde_json::Value::as_array)
            .unwrap_or_else(|| panic!("no virtual-service list in {json}"));
        assert_eq!(entries.len(), 1, "{json}");
        assert!(entries.iter().all(|e| e.get("name").is_some()), "{json}");
        assert!(
            diags
                .iter()
                .any(|d| d.field.as_deref() == Some("spec.virtualServices[0].name")),
            "{diags:?}"
        );
    }

    // The fuzzing regression (fuzz/regressions/spec_parse/): a keyed list
    // entry without its key, holding a container with `when` leaves, made
    // libyang read freed memory. The converter now names the missing key
    // itself, with the path libyang used to give.
    #[test]
    fn keyless_list_entries_are_reported_before_libyang() {
        let head = "apiVersion: rampart.io/v1\nkind: LoadBalancer\nmetadata: {name: lb, tenant: acme}\nspec:\n  targets: {hosts: [{selector: {role: lb}}]}\n  virtualServices:\n";
        for entry in [
            "    - {address: 10.0.0.1, port: 80, backends: [{address: 10.0.0.2}], healthCheck: {type: tcp}}\n",
            "    - {name: ~, address: 10.0.0.1, port: 80, backends: [{address: 10.0.0.2}], healthCheck: {}}\n",
            "    - healthCheck:\n",
        ] {
            let errs = errors(&format!("{head}{entry}"));
            let want = "spec.virtualServices[0].name: missing required field \"name\" (the list key) (/rampart-loadbalancer:";
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "{entry}: {errs:#?}"
            );
        }
        // A non-scalar key is a shape error of its own, not "missing".
        let errs = errors(&format!("{head}    - {{name: [a], port: 80}}\n"));
        assert!(
            errs.iter()
                .all(|e| !e.contains("missing required field \"name\"")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.virtualServices[0].name")),
            "{errs:#?}"
        );
    }
}
