//! A minimal YANG instance-data tree and its two encodings.
//!
//! The IOS-XE renderer builds one [`Node`] tree and prints it both as NETCONF
//! XML and as RFC 7951 JSON, so the two formats can never disagree about what
//! is configured: only the encoding differs. The tree knows exactly what each
//! encoding needs and nothing more: the module a node belongs to (namespaces
//! in XML, `module:` prefixes in JSON), whether a node is a list entry (JSON
//! arrays), how a leaf value is encoded (RFC 7951 writes 64-bit integers as
//! strings and `empty` as `[null]`), and an optional NETCONF edit operation.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The YANG modules whose nodes the renderer emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Module {
    /// `Cisco-IOS-XE-native` (and its submodules): the `/native` tree.
    Native,
    /// `Cisco-IOS-XE-acl`: named ACLs augmenting `/native/ip(v6)/access-list`.
    Acl,
    /// `Cisco-IOS-XE-nat`: NAT augmenting `/native/ip/nat`.
    Nat,
    /// `Cisco-IOS-XE-bgp`: BGP augmenting `/native/router`.
    Bgp,
    /// `Cisco-IOS-XE-object-group`: object-groups augmenting
    /// `/native/object-group`.
    ObjectGroup,
}

impl Module {
    /// The module name, used as the RFC 7951 JSON member prefix.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Module::Native => "Cisco-IOS-XE-native",
            Module::Acl => "Cisco-IOS-XE-acl",
            Module::Nat => "Cisco-IOS-XE-nat",
            Module::Bgp => "Cisco-IOS-XE-bgp",
            Module::ObjectGroup => "Cisco-IOS-XE-object-group",
        }
    }

    /// The XML namespace of the module.
    #[must_use]
    pub fn namespace(self) -> &'static str {
        match self {
            Module::Native => "http://cisco.com/ns/yang/Cisco-IOS-XE-native",
            Module::Acl => "http://cisco.com/ns/yang/Cisco-IOS-XE-acl",
            Module::Nat => "http://cisco.com/ns/yang/Cisco-IOS-XE-nat",
            Module::Bgp => "http://cisco.com/ns/yang/Cisco-IOS-XE-bgp",
            Module::ObjectGroup => "http://cisco.com/ns/yang/Cisco-IOS-XE-object-group",
        }
    }
}

/// A NETCONF edit-config operation attached to a node (RFC 6241 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EditOp {
    /// Replace the node and everything below it: used for subtrees the
    /// service owns outright (its ACLs), so entries removed from the spec
    /// disappear from the device.
    Replace,
    /// Delete the node; fails when it does not exist.
    Delete,
    /// Delete the node if it exists.
    Remove,
}

impl EditOp {
    /// The attribute value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EditOp::Replace => "replace",
            EditOp::Delete => "delete",
            EditOp::Remove => "remove",
        }
    }
}

/// How a leaf value is encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Strings, enumerations, addresses.
    Str(String),
    /// Integers of at most 32 bits: a JSON number.
    Int(i64),
    /// 64-bit integers: a JSON string (RFC 7951 6.1).
    Int64(u64),
    /// The `empty` type: `<leaf/>` in XML, `[null]` in JSON.
    Empty,
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Int64(u) => u.to_string(),
            Value::Empty => String::new(),
        }
    }
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A container with its children.
    Container(Vec<Node>),
    /// One entry of a list (keys first among the children).
    ListEntry(Vec<Node>),
    /// A leaf.
    Leaf(Value),
}

/// One data node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Local name.
    pub name: String,
    /// Module of the node; `None` means "same as the parent".
    pub module: Option<Module>,
    /// Container, list entry or leaf.
    pub kind: NodeKind,
    /// NETCONF operation attribute, if any (XML only; RESTCONF expresses
    /// operations through the HTTP method instead).
    pub op: Option<EditOp>,
}

impl Node {
    /// A container.
    #[must_use]
    pub fn container(name: &str, children: Vec<Node>) -> Node {
        Node {
            name: name.to_owned(),
            module: None,
            kind: NodeKind::Container(children),
            op: None,
        }
    }

    /// A list entry.
    #[must_use]
    pub fn entry(name: &str, children: Vec<Node>) -> Node {
        Node {
            name: name.to_owned(),
            module: None,
            kind: NodeKind::ListEntry(children),
            op: None,
        }
    }

    /// A string leaf.
    #[must_use]
    pub fn leaf(name: &str, value: impl Into<String>) -> Node {
        Node {
            name: name.to_owned(),
            module: None,
            kind: NodeKind::Leaf(Value::Str(value.into())),
            op: None,
        }
    }

    /// An integer leaf of at most 32 bits.
    #[must_use]
    pub fn int(name: &str, value: impl Into<i64>) -> Node {
        Node {
            name: name.to_owned(),
            module: None,
            kind: NodeKind::Leaf(Value::Int(value.into())),
            op: None,
        }
    }

    /// A 64-bit integer leaf.
    #[must_use]
    pub fn int64(name: &str, value: u64) -> Node {
        Node {
            name: name.to_owned(),
            module: None,
            kind: NodeKind::Leaf(Value::Int64(value)),
            op: None,
        }
    }

    /// An `empty` leaf.
    #[must_use]
    pub fn empty(name: &str) -> Node {
        Node {
            name: name.to_owned(),
            module: None,
            kind: NodeKind::Leaf(Value::Empty),
            op: None,
        }
    }

    /// Sets the node's module (for augmenting nodes).
    #[must_use]
    pub fn in_module(mut self, module: Module) -> Node {
        self.module = Some(module);
        self
    }

    /// Sets the NETCONF operation attribute.
    #[must_use]
    pub fn with_op(mut self, op: EditOp) -> Node {
        self.op = Some(op);
        self
    }

    /// Children of a container or list entry (empty for leaves).
    #[must_use]
    pub fn children(&self) -> &[Node] {
        match &self.kind {
            NodeKind::Container(c) | NodeKind::ListEntry(c) => c,
            NodeKind::Leaf(_) => &[],
        }
    }

    /// Children, mutable; `None` for a leaf.
    pub fn children_mut(&mut self) -> Option<&mut Vec<Node>> {
        match &mut self.kind {
            NodeKind::Container(c) | NodeKind::ListEntry(c) => Some(c),
            NodeKind::Leaf(_) => None,
        }
    }
}

// ===== XML =====

/// The NETCONF base namespace, for `<config>` and the `operation` attribute.
pub const NETCONF_NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";

/// Prints `root` (of module `root_module`) as a NETCONF `<config>` element.
#[must_use]
pub fn to_netconf_config(root: &Node, root_module: Module) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<config xmlns=\"{NETCONF_NS}\">");
    write_xml(&mut out, root, Module::Native, Some(root_module), 1);
    out.push_str("</config>\n");
    out
}

fn write_xml(
    out: &mut String,
    node: &Node,
    parent_module: Module,
    force: Option<Module>,
    depth: usize,
) {
    let indent = "  ".repeat(depth);
    let module = node.module.or(force).unwrap_or(parent_module);
    let _ = write!(out, "{indent}<{}", node.name);
    if force.is_some() || module != parent_module {
        let _ = write!(out, " xmlns=\"{}\"", module.namespace());
    }
    if let Some(op) = node.op {
        let _ = write!(
            out,
            " xmlns:nc=\"{NETCONF_NS}\" nc:operation=\"{}\"",
            op.as_str()
        );
    }
    match &node.kind {
        NodeKind::Leaf(Value::Empty) => out.push_str("/>\n"),
        NodeKind::Leaf(v) => {
            let _ = writeln!(
                out,
                ">{}</{}>",
                crate::wire::xml::escape(&v.text()),
                node.name
            );
        }
        NodeKind::Container(children) | NodeKind::ListEntry(children) => {
            if children.is_empty() {
                out.push_str("/>\n");
                return;
            }
            out.push_str(">\n");
            for child in children {
                write_xml(out, child, module, None, depth + 1);
            }
            let _ = writeln!(out, "{indent}</{}>", node.name);
        }
    }
}

// ===== JSON =====

/// Prints `root` (of module `root_module`) as RFC 7951 JSON, pretty-printed
/// with two-space indentation and members in tree order.
#[must_use]
pub fn to_json(root: &Node, root_module: Module) -> String {
    let mut out = String::from("{\n");
    let _ = write!(
        out,
        "  {}: ",
        json_str(&format!("{}:{}", root_module.name(), root.name))
    );
    write_json_value(&mut out, root, root.module.unwrap_or(root_module), 1);
    out.push_str("\n}\n");
    out
}

fn write_json_value(out: &mut String, node: &Node, module: Module, depth: usize) {
    match &node.kind {
        NodeKind::Leaf(v) => out.push_str(&json_leaf(v)),
        NodeKind::Container(children) | NodeKind::ListEntry(children) => {
            write_json_object(out, children, module, depth);
        }
    }
}

fn json_leaf(v: &Value) -> String {
    match v {
        Value::Str(s) => json_str(s),
        Value::Int(i) => i.to_string(),
        Value::Int64(u) => json_str(&u.to_string()),
        Value::Empty => "[null]".to_owned(),
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn write_json_object(out: &mut String, children: &[Node], module: Module, depth: usize) {
    if children.is_empty() {
        out.push_str("{}");
        return;
    }
    let indent = "  ".repeat(depth + 1);
    out.push_str("{\n");
    let mut done = vec![false; children.len()];
    let mut first = true;
    for (i, child) in children.iter().enumerate() {
        // Deletions have no RFC 7951 form: RESTCONF deletes with DELETE.
        if done[i] || matches!(child.op, Some(EditOp::Delete | EditOp::Remove)) {
            continue;
        }
        if !first {
            out.push_str(",\n");
        }
        first = false;
        let child_module = child.module.unwrap_or(module);
        let member = if child_module == module {
            child.name.clone()
        } else {
            format!("{}:{}", child_module.name(), child.name)
        };
        let _ = write!(out, "{indent}{}: ", json_str(&member));
        if matches!(child.kind, NodeKind::ListEntry(_)) {
            // All entries of one list form one array, wherever they sit.
            let entry_indent = "  ".repeat(depth + 2);
            out.push_str("[\n");
            let mut first_entry = true;
            for (j, other) in children.iter().enumerate().skip(i) {
                if other.name == child.name
                    && other.module == child.module
                    && matches!(other.kind, NodeKind::ListEntry(_))
                {
                    done[j] = true;
                    if !first_entry {
                        out.push_str(",\n");
                    }
                    first_entry = false;
                    out.push_str(&entry_indent);
                    write_json_value(out, other, child_module, depth + 2);
                }
            }
            let _ = write!(out, "\n{indent}]");
        } else {
            write_json_value(out, child, child_module, depth + 1);
        }
    }
    let _ = write!(out, "\n{}}}", "  ".repeat(depth));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Node {
        Node::container(
            "native",
            vec![Node::container(
                "ip",
                vec![Node::container(
                    "access-list",
                    vec![
                        Node::entry(
                            "extended",
                            vec![
                                Node::leaf("name", "A<&>"),
                                Node::int64("seq", 5),
                                Node::empty("log"),
                            ],
                        )
                        .in_module(Module::Acl)
                        .with_op(EditOp::Replace),
                        Node::int("other", 7),
                        Node::entry("extended", vec![Node::leaf("name", "B")])
                            .in_module(Module::Acl),
                    ],
                )],
            )],
        )
    }

    #[test]
    fn xml_declares_namespaces_where_modules_change() {
        let xml = to_netconf_config(&sample(), Module::Native);
        assert!(
            xml.contains("<native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\">"),
            "{xml}"
        );
        assert!(xml.contains(
            "<extended xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-acl\" xmlns:nc=\"urn:ietf:params:xml:ns:netconf:base:1.0\" nc:operation=\"replace\">"
        ));
        assert!(xml.contains("<name>A&lt;&amp;&gt;</name>"));
        assert!(xml.contains("<log/>"));
        assert!(!xml.contains("<ip xmlns"));
    }

    #[test]
    fn json_groups_list_entries_and_encodes_rfc7951_types() {
        let json = to_json(&sample(), Module::Native);
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let ext =
            &v["Cisco-IOS-XE-native:native"]["ip"]["access-list"]["Cisco-IOS-XE-acl:extended"];
        assert_eq!(ext.as_array().map(Vec::len), Some(2), "{json}");
        assert_eq!(ext[0]["seq"], serde_json::json!("5"));
        assert_eq!(ext[0]["log"], serde_json::json!([null]));
        assert_eq!(ext[1]["name"], serde_json::json!("B"));
        assert_eq!(
            v["Cisco-IOS-XE-native:native"]["ip"]["access-list"]["other"],
            serde_json::json!(7)
        );
    }
}
