//! The service model: spec documents (YAML/JSON) are converted to YANG
//! instance data of `models/yang/`, validated with libyang, checked
//! semantically, and turned into the typed [`spec::ServiceSpec`].
//!
//! Pipeline, one stage per file:
//! 1. `source`: YAML (several `---` documents) or JSON → a tree that
//!    remembers line and column of every node.
//! 2. `convert`: that tree → RFC 7951 JSON for the kind's module, plus a
//!    map from every YANG data path back to the user's field and line.
//! 3. `yang`: libyang parses and validates the JSON (types, ranges,
//!    patterns, `must`, keys); all its errors are mapped back to fields.
//! 4. `typed`: libyang's validated, default-filled output → the typed
//!    spec; and the way back ([`spec_to_json`]).
//! 5. `semantic`: inventory references, shadowed and overlapping rules.

pub mod device;
pub mod spec;

mod address;
mod convert;
mod semantic;
mod source;
mod typed;
mod yang;

use std::{collections::BTreeMap, fmt, sync::Mutex};

pub use typed::spec_to_json;

use self::{
    convert::{Converted, Converter},
    yang::{SNode, YangContext, YangError},
};

/// Largest document accepted, in bytes: specs are small; anything bigger
/// is a mistake or an attack.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// Deepest nesting accepted (the deepest valid spec nests about 8 levels).
pub const MAX_DEPTH: usize = 32;
/// Most rules in one firewall.
pub const MAX_RULES: usize = 20_000;

/// The syntax of a user document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DocFormat {
    /// JSON when the text starts with `{` or `[`, else YAML.
    #[default]
    Auto,
    /// YAML, possibly several `---` documents.
    Yaml,
    /// One JSON object.
    Json,
}

/// A document as the user sent it.
#[derive(Debug, Clone, Copy)]
pub struct SourceDoc<'a> {
    /// Full text.
    pub text: &'a str,
    pub format: DocFormat,
    /// File name (or `<request>`), used in diagnostics.
    pub name: &'a str,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The spec is accepted but probably not what the user meant.
    Warning,
    /// The spec is refused.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One finding about a user document, pointing at the field and line the
/// user has to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in words.
    pub message: String,
    /// YANG data path, when the finding is about a data node.
    pub path: Option<String>,
    /// The user's field path (`spec.rules[2].protocol`).
    pub field: Option<String>,
    /// Line in the user's file, 1-based (0 when not from a file).
    pub line: u32,
    /// Column, 1-based (0 when unknown).
    pub column: u32,
    /// The file the finding is about.
    pub source_name: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.source_name, self.line, self.column)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(path) = &self.path {
            write!(f, " ({path})")?;
        }
        Ok(())
    }
}

/// A spec that passed validation, with what the user should still look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The typed spec.
    pub spec: spec::ServiceSpec,
    /// Warnings (shadowed rules, overlaps).
    pub warnings: Vec<Diagnostic>,
}

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The document is wrong; every finding is listed.
    #[error("{source_name}: invalid spec: {}", summarize(diagnostics))]
    Invalid {
        /// File name.
        source_name: String,
        /// Every error (and warning) found, in file order.
        diagnostics: Vec<Diagnostic>,
    },
    /// The embedded YANG modules could not be loaded, or the schema and
    /// the typed model disagree: a bug in rampartd, not in the document.
    #[error("YANG schema: {message}")]
    Schema {
        /// What failed.
        message: String,
    },
}

fn summarize(diags: &[Diagnostic]) -> String {
    let errors: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    match errors.as_slice() {
        [] => "no errors".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// Validates spec documents and inventory devices against Rampart's YANG
/// modules. Cheap to share: build one and keep it in an `Arc`.
pub struct Validator {
    ctx: Mutex<YangContext>,
    schemas: std::collections::HashMap<String, SNode>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("modules", &self.schemas.keys())
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// Builds the libyang context from the modules embedded in the binary.
    ///
    /// # Errors
    /// [`ModelError::Schema`] when a module does not compile (a build bug).
    pub fn new() -> Result<Self, ModelError> {
        let (ctx, schemas) = YangContext::new()?;
        Ok(Self {
            ctx: Mutex::new(ctx),
            schemas,
        })
    }

    /// Validates every document of `doc` against the YANG model, the
    /// inventory and the semantic rules.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] listing every error of every document (the
    /// file is accepted or refused as a whole).
    pub fn validate(
        &self,
        doc: &SourceDoc<'_>,
        inventory: &BTreeMap<String, device::Device>,
    ) -> Result<Vec<Validated>, ModelError> {
        let invalid = |diagnostics: Vec<Diagnostic>| ModelError::Invalid {
            source_name: doc.name.to_owned(),
            diagnostics,
        };
        let at = |line: u32, column: u32, message: String| Diagnostic {
            severity: Severity::Error,
            message,
            path: None,
            field: None,
            line,
            column,
            source_name: doc.name.to_owned(),
        };
        if doc.text.len() > MAX_DOCUMENT_BYTES {
            return Err(invalid(vec![at(
                1,
                1,
                format!(
                    "document is {} bytes, larger than the limit of {MAX_DOCUMENT_BYTES}; \
                     documents over 4 MiB are refused",
                    doc.text.len()
                ),
            )]));
        }
        let docs = source::parse_documents(doc.text, doc.format)
            .map_err(|e| invalid(vec![at(e.pos.line, e.pos.column, e.message)]))?;
        if docs.is_empty() {
            return Err(invalid(vec![at(1, 1, "no document found".to_owned())]));
        }
        let mut all = Vec::new();
        let mut out = Vec::new();
        // The same service twice in one file would silently replace itself.
        let mut names: std::collections::HashMap<(spec::Kind, String, String), u32> =
            std::collections::HashMap::new();
        for udoc in &docs {
            let (converted, mut diags) =
                Converter::new(doc.name).convert(udoc, |m| self.schemas.get(m));
            let Some((_kind, converted)) = converted else {
                all.append(&mut diags);
                continue;
            };
            let result = self.lock().validate_json(&converted.json);
            match result {
                Err(errors) => {
                    let mapped = yang_diags(&errors, &converted, &diags, doc.name);
                    diags.extend(mapped);
                }
                Ok(value) if diags.is_empty() => {
                    match typed::from_yang(&value, &converted, &self.schemas) {
                        Ok(spec) => {
                            let mut found = semantic::check(&spec, &converted, inventory, doc.name);
                            let warnings: Vec<Diagnostic> = found
                                .iter()
                                .filter(|d| d.severity == Severity::Warning)
                                .cloned()
                                .collect();
                            found.retain(|d| d.severity == Severity::Error);
                            let id = (
                                spec.kind(),
                                spec.metadata.tenant.clone(),
                                spec.metadata.name.clone(),
                            );
                            let (module, top) = convert::module_of(spec.kind());
                            let name_path = format!("/{module}:{top}/metadata/name");
                            let name_at = converted
                                .origin_for_path(&name_path)
                                .map_or((udoc.pos.line, udoc.pos.column), |o| (o.line, o.column));
                            if let Some(first) = names.insert(id, name_at.0) {
                                found.push(Diagnostic {
                                    field: Some("metadata.name".to_owned()),
                                    path: Some(name_path),
                                    ..at(
                                        name_at.0,
                                        name_at.1,
                                        format!(
                                            "{} \"{}\" of tenant \"{}\" is already defined in this file (line {first})",
                                            spec.kind(),
                                            spec.metadata.name,
                                            spec.metadata.tenant
                                        ),
                                    )
                                });
                            }
                            if found.is_empty() {
                                out.push(Validated { spec, warnings });
                            } else {
                                diags.append(&mut found);
                                diags.extend(warnings);
                            }
                        }
                        Err(message) => return Err(ModelError::Schema { message }),
                    }
                }
                Ok(_) => {}
            }
            all.append(&mut diags);
        }
        if all.iter().any(|d| d.severity == Severity::Error) {
            all.sort_by_key(|d| (d.line, d.column));
            all.dedup_by(|a, b| a.line == b.line && a.message == b.message);
            tracing::debug!(source = doc.name, errors = all.len(), "spec refused");
            return Err(invalid(all));
        }
        tracing::debug!(source = doc.name, documents = out.len(), "spec validated");
        Ok(out)
    }

    /// Checks an inventory device against `rampart-devices.yang`.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming each bad field (line 0: devices do not
    /// come from a file).
    pub fn validate_device(&self, device: &device::Device) -> Result<(), ModelError> {
        let json = typed::device_to_yang(device);
        let source_name = format!("device {}", device.name);
        match self.lock().validate_json(&json.to_string()) {
            Ok(_) => address::check(&device.address).map_err(|message| ModelError::Invalid {
                diagnostics: vec![Diagnostic {
                    severity: Severity::Error,
                    message: format!("{:?}: {message}", device.address),
                    path: Some(format!(
                        "/rampart-devices:devices/device[name='{}']/address",
                        device.name
                    )),
                    field: Some("address".to_owned()),
                    line: 0,
                    column: 0,
                    source_name: source_name.clone(),
                }],
                source_name,
            }),
            Err(errors) => Err(ModelError::Invalid {
                diagnostics: errors
                    .iter()
                    .filter(|e| {
                        errors.len() == 1
                            || !e.message.starts_with("List instance is missing its key")
                    })
                    .map(|e| {
                        let yname = e
                            .data_path
                            .as_deref()
                            .and_then(|p| p.rsplit('/').next())
                            .map(|s| s.split('[').next().unwrap_or(s));
                        let field = yname.and_then(|n| match n {
                            "name"
                                if e.data_path
                                    .as_deref()
                                    .is_some_and(|p| p.contains("/label[")) =>
                            {
                                Some("labels".to_owned())
                            }
                            "device" | "name" => Some("name".to_owned()),
                            "platform" | "address" => Some(n.to_owned()),
                            "credentials-ref" => Some("credentialsRef".to_owned()),
                            "label" | "value" => Some("labels".to_owned()),
                            _ => None,
                        });
                        Diagnostic {
                            severity: Severity::Error,
                            message: clean_message(&e.message, None),
                            path: e.data_path.clone(),
                            field,
                            line: 0,
                            column: 0,
                            source_name: source_name.clone(),
                        }
                    })
                    .collect(),
                source_name,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, YangContext> {
        // A panic while holding the lock cannot leave libyang half-updated
        // in a way that matters: each call parses into a fresh tree.
        self.ctx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Maps libyang's errors back to the user's fields and lines, dropping the
/// follow-on errors of a value libyang already refused (an invalid
/// `action` is also reported as a missing `action`).
fn yang_diags(
    errors: &[YangError],
    conv: &Converted,
    earlier: &[Diagnostic],
    source_name: &str,
) -> Vec<Diagnostic> {
    let all: Vec<(Diagnostic, Option<String>)> = errors
        .iter()
        .map(|e| yang_diag(e, conv, source_name))
        .collect();
    let primary: Vec<String> = all
        .iter()
        .filter(|(_, scope)| scope.is_none())
        .map(|(d, _)| d)
        .chain(earlier)
        .filter_map(|d| d.field.clone())
        .collect();
    let explained = |f: &str| {
        primary
            .iter()
            .any(|p| p == f || p.starts_with(&format!("{f}[")) || p.starts_with(&format!("{f}.")))
    };
    all.into_iter()
        .filter(|(_, scope)| !scope.as_deref().is_some_and(explained))
        .map(|(d, _)| d)
        .collect()
}

/// One libyang error as a diagnostic and, for a possible follow-on error
/// (missing mandatory node or list key), the field whose other errors
/// explain it.
fn yang_diag(e: &YangError, conv: &Converted, source_name: &str) -> (Diagnostic, Option<String>) {
    let by_line = e
        .line
        .and_then(|l| usize::try_from(l).ok())
        .and_then(|l| conv.line_origins.get(l.checked_sub(1)?))
        .and_then(Option::as_ref);
    let quoted = e.message.split('"').nth(1);
    // A leaf-list value error names the leaf-list; find the very item.
    let by_item = e
        .data_path
        .as_deref()
        .zip(quoted)
        .and_then(|(p, v)| {
            conv.paths
                .get(&format!("{p}[.={}]", convert::pred_value(v)))
        })
        .and_then(|v| v.last());
    let by_path = by_item.or_else(|| e.data_path.as_deref().and_then(|p| conv.origin_for_path(p)));
    // Prefer whichever is more specific: a parse error's line points at the
    // value, a validation error's path at the node.
    let origin = match (by_line, by_path) {
        (Some(l), Some(p)) if p.field.len() > l.field.len() => Some(p),
        (Some(l), _) => Some(l),
        (None, p) => p,
    };
    let mut field = origin.map(|o| o.field.clone());
    let mut message = clean_message(
        &e.message,
        field.as_deref().and_then(|f| conv.leaf_types.get(f)),
    );
    let mut consequential = None;
    if let Some(key) = e
        .message
        .strip_prefix("List instance is missing its key \"")
        .and_then(|r| r.split('"').next())
    {
        let key_user = yang::user_name(key, false);
        let entry = field.clone().unwrap_or_default();
        field = Some(format!("{entry}.{key_user}"));
        message = format!("missing required field \"{key_user}\" (the list key)");
        consequential = Some(entry);
    }
    // "Mandatory node "x" instance does not exist." names a child of the
    // node the path points at: name the missing field itself.
    if let Some(missing) = e
        .message
        .strip_prefix("Mandatory node \"")
        .and_then(|r| r.split('"').next())
    {
        let missing_user = yang::user_name(missing, false);
        let parent = field.clone().unwrap_or_default();
        let parent = if parent.is_empty() {
            "spec".to_owned()
        } else {
            parent
        };
        field = Some(format!("{parent}.{missing_user}"));
        message = format!("missing required field \"{missing_user}\"");
        consequential = field.clone();
    }
    if let Some(dups) = e
        .data_path
        .as_deref()
        .filter(|_| e.message.starts_with("Duplicate instance"))
        .and_then(|p| conv.paths.get(p))
        .filter(|v| v.len() > 1)
    {
        let lines: Vec<String> = dups.iter().map(|o| o.line.to_string()).collect();
        message = format!("{message} (entries at lines {})", lines.join(", "));
    }
    let (line, column) = origin.map_or((1, 1), |o| (o.line, o.column));
    let diag = Diagnostic {
        severity: Severity::Error,
        message,
        path: e.data_path.clone().or_else(|| e.schema_path.clone()),
        field: field.filter(|f| !f.is_empty()),
        line,
        column,
        source_name: source_name.to_owned(),
    };
    (diag, consequential)
}

/// Rewrites libyang's wording where it dumps regular expressions or type
/// internals, using the leaf's type when known.
fn clean_message(msg: &str, leaf_type: Option<&(String, Vec<String>)>) -> String {
    let msg = msg.trim_end_matches(['.', '\n', ' ']);
    let value = msg.split('"').nth(1).unwrap_or_default();
    let type_name = leaf_type.map(|(t, _)| t.as_str());
    if msg.starts_with("Invalid enumeration value") {
        return match leaf_type {
            Some((_, enums)) if !enums.is_empty() => format!(
                "invalid value \"{value}\": expected one of {}",
                enums.join(", ")
            ),
            _ => format!("invalid value \"{value}\""),
        };
    }
    if msg.starts_with("Invalid union value") || msg.starts_with("Unsatisfied pattern") {
        return match type_name {
            Some(t) => format!("invalid value \"{value}\": not a valid {t}"),
            None => format!("invalid value \"{value}\""),
        };
    }
    if msg.starts_with("Too few") {
        return "too few entries: at least one is required".to_owned();
    }
    if let Some(cond) = msg
        .strip_prefix("When condition \"")
        .and_then(|r| r.split("\" not satisfied").next())
    {
        return format!("only allowed when {cond}");
    }
    if msg.starts_with("Value \"") && msg.contains("min/max bounds") {
        return format!(
            "value {value} is out of range for {}",
            type_name.unwrap_or("this field")
        );
    }
    if msg.starts_with("Unsatisfied range") || msg.starts_with("Unsatisfied length") {
        let what = if msg.starts_with("Unsatisfied range") {
            "out of range"
        } else {
            "of invalid length"
        };
        return format!(
            "value \"{value}\" is {what} for {}",
            type_name.unwrap_or("this field")
        );
    }
    msg.to_owned()
}
