//! The datastore: one libyang data tree validated against the loaded
//! models, owned by a dedicated thread (libyang contexts are not shared
//! across threads), driven through a channel.

use std::{path::PathBuf, sync::mpsc, thread};

use tokio::sync::oneshot;
use yang3::{
    context::{Context, ContextFlags},
    data::{Data, DataFormat, DataParserFlags, DataPrinterFlags, DataTree, DataValidationFlags},
    schema::{DataValueType, SchemaNodeKind},
};

/// Encoding of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/yang-data+json`.
    Json,
    /// `application/yang-data+xml`.
    Xml,
}

/// One RESTCONF error (RFC 8040 7.1), with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestconfError {
    /// HTTP status.
    pub status: u16,
    /// `error-type`.
    pub error_type: &'static str,
    /// `error-tag`.
    pub tag: &'static str,
    /// `error-path`, when known.
    pub path: Option<String>,
    /// `error-message`.
    pub message: String,
}

impl RestconfError {
    fn new(
        status: u16,
        error_type: &'static str,
        tag: &'static str,
        message: impl Into<String>,
    ) -> Self {
        RestconfError {
            status,
            error_type,
            tag,
            path: None,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>, path: Option<String>) -> Self {
        RestconfError {
            path,
            ..RestconfError::new(400, "application", "invalid-value", message)
        }
    }

    fn from_ly(e: &yang3::Error, status: u16, tag: &'static str) -> Self {
        RestconfError {
            status,
            error_type: "application",
            tag,
            path: e.path.clone(),
            message: e.msg.clone().unwrap_or_else(|| "libyang error".to_owned()),
        }
    }
}

/// A request to the store thread.
pub enum Op {
    /// Read the resource (`None` = whole datastore).
    Get {
        /// Path segments after `/restconf/data/`.
        path: Vec<String>,
        /// Response encoding.
        encoding: Encoding,
    },
    /// Replace the resource.
    Put {
        /// Path segments.
        path: Vec<String>,
        /// Body.
        body: String,
        /// Body encoding.
        encoding: Encoding,
    },
    /// Merge into the resource.
    Patch {
        /// Path segments.
        path: Vec<String>,
        /// Body.
        body: String,
        /// Body encoding.
        encoding: Encoding,
    },
    /// Delete the resource.
    Delete {
        /// Path segments.
        path: Vec<String>,
    },
}

/// Store reply: `(created, body)`.
pub type Reply = Result<(bool, Option<String>), RestconfError>;

/// Handle to the store thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<(Op, oneshot::Sender<Reply>)>,
}

impl Store {
    /// Starts the store thread with `modules` loaded from `dir`.
    ///
    /// # Errors
    /// When the models do not load.
    pub fn start(dir: PathBuf, modules: Vec<String>) -> anyhow::Result<Store> {
        let (tx, rx) = mpsc::channel::<(Op, oneshot::Sender<Reply>)>();
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::Builder::new()
            .name("restconf-store".to_owned())
            .spawn(move || {
                let ctx = match load(&dir, &modules) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut tree = DataTree::new(&ctx);
                while let Ok((op, reply)) = rx.recv() {
                    let _ = reply.send(handle(&ctx, &mut tree, op));
                }
            })?;
        ready_rx.recv()??;
        Ok(Store { tx })
    }

    /// Runs `op` on the store thread.
    ///
    /// # Errors
    /// The RESTCONF error to answer with.
    pub async fn run(&self, op: Op) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.tx.send((op, tx)).map_err(|_| {
            RestconfError::new(500, "application", "operation-failed", "store stopped")
        })?;
        rx.await.map_err(|_| {
            RestconfError::new(500, "application", "operation-failed", "store stopped")
        })?
    }
}

fn load(dir: &std::path::Path, modules: &[String]) -> anyhow::Result<Context> {
    let mut ctx = Context::new(ContextFlags::NO_YANGLIBRARY)?;
    ctx.set_searchdir(dir)?;
    for m in modules {
        ctx.load_module(m, None, &[])
            .map_err(|e| anyhow::anyhow!("loading {m}: {e}"))?;
    }
    Ok(ctx)
}

/// One URL segment: `[module:]name[=key,...]`.
struct Segment {
    module: Option<String>,
    name: String,
    keys: Option<Vec<String>>,
}

fn parse_segments(path: &[String]) -> Result<Vec<Segment>, RestconfError> {
    path.iter()
        .map(|raw| {
            let (ident, keys) = match raw.split_once('=') {
                Some((i, k)) => (
                    i,
                    Some(
                        k.split(',')
                            .map(percent_decode)
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                ),
                None => (raw.as_str(), None),
            };
            let (module, name) = match ident.split_once(':') {
                Some((m, n)) => (Some(m.to_owned()), n.to_owned()),
                None => (None, ident.to_owned()),
            };
            if name.is_empty() {
                return Err(RestconfError::new(
                    400,
                    "protocol",
                    "invalid-value",
                    format!("empty path segment in {raw:?}"),
                ));
            }
            Ok(Segment { module, name, keys })
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, RestconfError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let b = hex.ok_or_else(|| {
                RestconfError::new(
                    400,
                    "protocol",
                    "invalid-value",
                    format!("bad percent-encoding in {s:?}"),
                )
            })?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| RestconfError::new(400, "protocol", "invalid-value", "key is not UTF-8"))
}

/// One resolved URL segment.
struct Member {
    /// JSON member name (module-qualified where the module changes).
    qualified: String,
    /// Local name (XML element).
    name: String,
    /// XML namespace, where the module changes.
    ns: Option<String>,
    /// Key name, value, and whether the key is a JSON number.
    keys: Vec<(String, String, bool)>,
}

/// A resolved target: libyang data path and its segments.
struct Target {
    data_path: String,
    members: Vec<Member>,
}

fn resolve(ctx: &Context, path: &[String]) -> Result<Target, RestconfError> {
    let segments = parse_segments(path)?;
    let mut schema_path = String::new();
    let mut data_path = String::new();
    let mut members = Vec::new();
    let mut current_module: Option<String> = None;
    for seg in &segments {
        let Some(module) = seg.module.clone().or_else(|| current_module.clone()) else {
            return Err(RestconfError::new(
                400,
                "protocol",
                "invalid-value",
                format!("first segment {:?} needs a module name", seg.name),
            ));
        };
        let changed = current_module.as_deref() != Some(module.as_str());
        let qualified = if changed {
            format!("{module}:{}", seg.name)
        } else {
            seg.name.clone()
        };
        schema_path.push('/');
        schema_path.push_str(&qualified);
        let snode = ctx.find_path(&schema_path).map_err(|_| RestconfError {
            path: Some(schema_path.clone()),
            ..RestconfError::new(
                400,
                "protocol",
                "unknown-element",
                format!("no schema node {schema_path}"),
            )
        })?;
        data_path.push('/');
        data_path.push_str(&qualified);
        let mut keys = Vec::new();
        if snode.kind() == SchemaNodeKind::List {
            let key_nodes: Vec<_> = snode.list_keys().collect();
            let values = seg.keys.clone().unwrap_or_default();
            if values.len() != key_nodes.len() {
                return Err(RestconfError::new(
                    400,
                    "protocol",
                    "invalid-value",
                    format!(
                        "{qualified} needs {} key value(s), got {}",
                        key_nodes.len(),
                        values.len()
                    ),
                ));
            }
            for (k, v) in key_nodes.iter().zip(values) {
                let quote = if v.contains('\'') { '"' } else { '\'' };
                data_path.push_str(&format!("[{}={quote}{v}{quote}]", k.name()));
                let numeric = k.leaf_type().is_some_and(|t| {
                    matches!(
                        t.base_type(),
                        DataValueType::Uint8
                            | DataValueType::Uint16
                            | DataValueType::Uint32
                            | DataValueType::Int8
                            | DataValueType::Int16
                            | DataValueType::Int32
                    )
                });
                keys.push((k.name().to_owned(), v, numeric));
            }
        } else if seg.keys.is_some() {
            return Err(RestconfError::new(
                400,
                "protocol",
                "invalid-value",
                format!("{qualified} is not a list"),
            ));
        }
        let ns = if changed {
            ctx.get_module_latest(&module)
                .map(|m| m.namespace().to_owned())
        } else {
            None
        };
        members.push(Member {
            qualified,
            name: seg.name.clone(),
            ns,
            keys,
        });
        current_module = Some(module);
    }
    Ok(Target { data_path, members })
}

/// Wraps a body (the target resource) into its ancestors, giving a
/// top-level document libyang can parse.
fn wrap(target: &Target, body: &str, encoding: Encoding) -> Result<String, RestconfError> {
    let ancestors = &target.members[..target.members.len().saturating_sub(1)];
    match encoding {
        Encoding::Json => {
            let parsed: serde_json::Value = serde_json::from_str(body).map_err(|e| {
                RestconfError::new(
                    400,
                    "protocol",
                    "malformed-message",
                    format!("body is not JSON: {e}"),
                )
            })?;
            let mut inner = parsed.as_object().cloned().ok_or_else(|| {
                RestconfError::new(
                    400,
                    "protocol",
                    "malformed-message",
                    "body is not a JSON object",
                )
            })?;
            for Member {
                qualified: member,
                keys,
                ..
            } in ancestors.iter().rev()
            {
                let mut obj = serde_json::Map::new();
                for (k, v, numeric) in keys {
                    let value = if *numeric {
                        v.parse::<i64>()
                            .map(serde_json::Value::from)
                            .unwrap_or_else(|_| serde_json::Value::from(v.clone()))
                    } else {
                        serde_json::Value::from(v.clone())
                    };
                    obj.insert(k.clone(), value);
                }
                obj.extend(inner);
                let value = if keys.is_empty() {
                    serde_json::Value::Object(obj)
                } else {
                    serde_json::Value::Array(vec![serde_json::Value::Object(obj)])
                };
                inner = serde_json::Map::new();
                inner.insert(member.clone(), value);
            }
            Ok(serde_json::Value::Object(inner).to_string())
        }
        Encoding::Xml => {
            let mut open = String::new();
            let mut close = String::new();
            for Member { name, ns, keys, .. } in ancestors {
                open.push('<');
                open.push_str(name);
                if let Some(ns) = ns {
                    open.push_str(&format!(" xmlns=\"{}\"", escape(ns)));
                }
                open.push('>');
                for (k, v, _) in keys {
                    open.push_str(&format!("<{k}>{}</{k}>", escape(v)));
                }
                close.insert_str(0, &format!("</{name}>"));
            }
            Ok(format!("{open}{}{close}", strip_decl(body)))
        }
    }
}

fn strip_decl(body: &str) -> &str {
    let t = body.trim_start();
    if t.starts_with("<?xml") {
        t.find("?>").map_or(t, |i| &t[i + 2..])
    } else {
        t
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn format_of(e: Encoding) -> DataFormat {
    match e {
        Encoding::Json => DataFormat::JSON,
        Encoding::Xml => DataFormat::XML,
    }
}

fn handle(ctx: &Context, tree: &mut DataTree<'_>, op: Op) -> Reply {
    match op {
        Op::Get { path, encoding } => {
            if path.is_empty() {
                let s = tree
                    .print_string(format_of(encoding), DataPrinterFlags::WITH_SIBLINGS)
                    .map_err(|e| RestconfError::from_ly(&e, 500, "operation-failed"))?;
                return Ok((false, Some(s)));
            }
            let target = resolve(ctx, &path)?;
            let node = tree
                .find_path(&target.data_path)
                .map_err(|_| RestconfError {
                    path: Some(target.data_path.clone()),
                    ..RestconfError::new(
                        404,
                        "protocol",
                        "invalid-value",
                        "resource does not exist",
                    )
                })?;
            let s = node
                .print_string(format_of(encoding), DataPrinterFlags::empty())
                .map_err(|e| RestconfError::from_ly(&e, 500, "operation-failed"))?;
            Ok((false, Some(s)))
        }
        Op::Put {
            path,
            body,
            encoding,
        }
        | Op::Patch {
            path,
            body,
            encoding,
        } if path.is_empty() => {
            let _ = (body, encoding);
            Err(RestconfError::new(
                405,
                "protocol",
                "operation-not-supported",
                "replace or merge of the whole datastore is not supported; name a resource",
            ))
        }
        Op::Put {
            path,
            body,
            encoding,
        } => edit(ctx, tree, &path, &body, encoding, true),
        Op::Patch {
            path,
            body,
            encoding,
        } => edit(ctx, tree, &path, &body, encoding, false),
        Op::Delete { path } => {
            let target = resolve(ctx, &path)?;
            let mut candidate = tree
                .duplicate()
                .map_err(|e| RestconfError::from_ly(&e, 500, "operation-failed"))?;
            candidate
                .remove(&target.data_path)
                .map_err(|_| RestconfError {
                    path: Some(target.data_path.clone()),
                    ..RestconfError::new(
                        404,
                        "application",
                        "data-missing",
                        "resource does not exist",
                    )
                })?;
            candidate
                .validate(DataValidationFlags::NO_STATE)
                .map_err(|e| RestconfError::from_ly(&e, 400, "invalid-value"))?;
            *tree = candidate;
            Ok((false, None))
        }
    }
}

fn edit(
    ctx: &Context,
    tree: &mut DataTree<'_>,
    path: &[String],
    body: &str,
    encoding: Encoding,
    replace: bool,
) -> Reply {
    let target = resolve(ctx, path)?;
    let doc = wrap(&target, body, encoding)?;
    let parsed = DataTree::parse_string(
        ctx,
        doc.as_bytes(),
        format_of(encoding),
        DataParserFlags::NO_VALIDATION | DataParserFlags::STRICT | DataParserFlags::NO_STATE,
        DataValidationFlags::NO_STATE,
    )
    .map_err(|e| RestconfError::from_ly(&e, 400, "invalid-value"))?;
    if parsed.find_path(&target.data_path).is_err() {
        return Err(RestconfError::invalid(
            "the body does not hold the resource named by the URL (or its keys differ)",
            Some(target.data_path),
        ));
    }
    let existed = tree.find_path(&target.data_path).is_ok();
    if !replace && !existed {
        return Err(RestconfError {
            path: Some(target.data_path.clone()),
            ..RestconfError::new(
                404,
                "application",
                "data-missing",
                "PATCH target does not exist",
            )
        });
    }
    let mut candidate = tree
        .duplicate()
        .map_err(|e| RestconfError::from_ly(&e, 500, "operation-failed"))?;
    if replace && existed {
        candidate
            .remove(&target.data_path)
            .map_err(|e| RestconfError::from_ly(&e, 500, "operation-failed"))?;
    }
    candidate
        .merge(&parsed)
        .map_err(|e| RestconfError::from_ly(&e, 400, "invalid-value"))?;
    candidate
        .validate(DataValidationFlags::NO_STATE)
        .map_err(|e| RestconfError::from_ly(&e, 400, "invalid-value"))?;
    *tree = candidate;
    Ok((replace && !existed, None))
}
