//! The libyang side: a context built from Rampart's modules embedded in the
//! binary, an owned copy of the schema tree the converter walks, and
//! validation that reports every error libyang finds, not just the last.

use std::collections::HashMap;

use yang3::{
    context::{Context, ContextFlags, EmbeddedModuleKey, EmbeddedModules},
    data::{Data, DataFormat, DataParserFlags, DataPrinterFlags, DataTree, DataValidationFlags},
    schema::{DataValueType, SchemaNode, SchemaNodeKind},
};

use super::ModelError;

/// Rampart's YANG modules, compiled into the binary so rampartd needs no
/// files on disk. `(name, revision, text)`.
pub const MODULES: [(&str, &str, &str); 7] = [
    (
        "rampart-services",
        "2026-11-23",
        include_str!("../../../models/yang/rampart-services.yang"),
    ),
    (
        "rampart-firewall",
        "2026-11-23",
        include_str!("../../../models/yang/rampart-firewall.yang"),
    ),
    (
        "rampart-router",
        "2026-11-23",
        include_str!("../../../models/yang/rampart-router.yang"),
    ),
    (
        "rampart-loadbalancer",
        "2026-11-23",
        include_str!("../../../models/yang/rampart-loadbalancer.yang"),
    ),
    (
        "rampart-vpn",
        "2026-11-23",
        include_str!("../../../models/yang/rampart-vpn.yang"),
    ),
    (
        "rampart-sdwan",
        "2026-11-23",
        include_str!("../../../models/yang/rampart-sdwan.yang"),
    ),
    (
        "rampart-devices",
        "2026-11-23",
        include_str!("../../../models/yang/rampart-devices.yang"),
    ),
];

/// How a leaf's value is encoded in RFC 7951 JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeafKind {
    /// Integers of up to 32 bits: a JSON number.
    Number,
    /// boolean: a JSON `true`/`false`.
    Bool,
    /// `empty`: `[null]`.
    Empty,
    /// Everything else (strings, enumerations, 64-bit numbers, unions): a
    /// JSON string.
    Text,
}

/// The user-facing shape of a YANG list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListShape {
    /// A list of mappings, keyed by its YANG keys.
    Plain,
    /// `key name` + `value`: a YAML map (`labels: {env: prod}`).
    Map,
    /// `key "first last"`: ports written as `80` or `"8000-8080"`.
    PortRange,
    /// `key index`: a list with no natural key; the index is the position in
    /// the user's list.
    Indexed,
}

/// The kind of a schema node, with what the converter needs to know.
#[derive(Debug, Clone)]
pub(crate) enum SKind {
    /// A container.
    Container {
        /// Presence container (absent means "not configured").
        presence: bool,
    },
    /// A list.
    List {
        /// Key leaf names in order.
        keys: Vec<String>,
        /// How users write it.
        shape: ListShape,
    },
    /// A leaf.
    Leaf(LeafKind),
    /// A leaf-list.
    LeafList(LeafKind),
}

/// An owned schema node (the libyang context lives behind a mutex, the
/// converter should not need it).
#[derive(Debug, Clone)]
pub(crate) struct SNode {
    /// YANG name.
    pub name: String,
    /// The name users write (camelCase, plural for lists).
    pub user_name: String,
    pub kind: SKind,
    /// Children in schema order.
    pub children: Vec<SNode>,
    /// Name of the leaf's type (typedef or built-in), for error messages.
    pub type_name: Option<String>,
    /// Allowed values of an enumeration leaf, for error messages.
    pub enums: Vec<String>,
}

impl SNode {
    /// The child users call `user_name`.
    pub fn child_by_user_name(&self, user_name: &str) -> Option<&SNode> {
        self.children
            .iter()
            .find(|c| c.user_name == user_name && !c.is_hidden())
    }

    /// The child named `name` in YANG.
    pub fn child(&self, name: &str) -> Option<&SNode> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Nodes users never write (the synthetic `index` key).
    pub fn is_hidden(&self) -> bool {
        self.name == "index"
    }
}

/// The user-facing name of a YANG node: camelCase, plural for lists and
/// leaf-lists, with the few irregular cases spelled out.
pub(crate) fn user_name(yang_name: &str, is_multi: bool) -> String {
    match (yang_name, is_multi) {
        ("policy", true) => return "policies".to_owned(),
        ("ipv4" | "ipv6" | "selector", true) => return yang_name.to_owned(),
        _ => {}
    }
    let mut out = String::with_capacity(yang_name.len() + 1);
    let mut upper = false;
    for c in yang_name.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if is_multi {
        out.push('s');
    }
    out
}

fn leaf_kind(node: &SchemaNode<'_>) -> LeafKind {
    match node.leaf_type().map(|t| t.base_type()) {
        Some(
            DataValueType::Uint8
            | DataValueType::Uint16
            | DataValueType::Uint32
            | DataValueType::Int8
            | DataValueType::Int16
            | DataValueType::Int32,
        ) => LeafKind::Number,
        Some(DataValueType::Bool) => LeafKind::Bool,
        Some(DataValueType::Empty) => LeafKind::Empty,
        _ => LeafKind::Text,
    }
}

fn snode(node: &SchemaNode<'_>) -> Option<SNode> {
    if !node.is_config() {
        return None;
    }
    let name = node.name().to_owned();
    let children: Vec<SNode> = node.children().filter_map(|c| snode(&c)).collect();
    let (kind, multi) = match node.kind() {
        SchemaNodeKind::Container => (
            SKind::Container {
                presence: !node.is_np_container(),
            },
            false,
        ),
        SchemaNodeKind::Leaf => (SKind::Leaf(leaf_kind(node)), false),
        SchemaNodeKind::LeafList => (SKind::LeafList(leaf_kind(node)), true),
        SchemaNodeKind::List => {
            let keys: Vec<String> = node.list_keys().map(|k| k.name().to_owned()).collect();
            let names: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
            let shape = match keys
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["index"] => ListShape::Indexed,
                ["first", "last"] => ListShape::PortRange,
                ["name"] if names == ["name", "value"] => ListShape::Map,
                _ => ListShape::Plain,
            };
            (SKind::List { keys, shape }, true)
        }
        _ => return None,
    };
    let type_name = node.leaf_type().map(|t| {
        t.typedef_name().unwrap_or_else(|| {
            match t.base_type() {
                DataValueType::Uint8 => "uint8",
                DataValueType::Uint16 => "uint16",
                DataValueType::Uint32 => "uint32",
                DataValueType::Bool => "boolean",
                DataValueType::Enum => "enumeration",
                _ => "string",
            }
            .to_owned()
        })
    });
    let enums = ffi::enum_names(node);
    Some(SNode {
        user_name: user_name(&name, multi),
        name,
        kind,
        children,
        type_name,
        enums,
    })
}

/// One error or warning reported by libyang.
#[derive(Debug, Clone)]
pub(crate) struct YangError {
    /// libyang's message.
    pub message: String,
    /// Data path, when libyang knows it.
    pub data_path: Option<String>,
    /// Schema path, when libyang knows it.
    pub schema_path: Option<String>,
    /// Line in the JSON input, when the error comes from the parser.
    pub line: Option<u64>,
}

/// The libyang context; `Context` holds a raw pointer and is not `Send`.
pub(crate) struct YangContext {
    ctx: ffi::SendContext,
}

impl YangContext {
    /// Builds a context with every embedded module loaded and implemented,
    /// and returns it with an owned copy of each module's top-level schema.
    pub fn new() -> Result<(Self, HashMap<String, SNode>), ModelError> {
        let schema_err = |what: String, e: &yang3::Error| ModelError::Schema {
            message: format!("{what}: {e}"),
        };
        let mut ctx = Context::new(ContextFlags::NO_YANGLIBRARY | ContextFlags::DISABLE_SEARCHDIRS)
            .map_err(|e| schema_err("creating the libyang context".to_owned(), &e))?;
        let mut embedded = EmbeddedModules::new();
        for (name, rev, text) in MODULES {
            embedded.insert(EmbeddedModuleKey::new(name, Some(rev), None, None), text);
        }
        ctx.set_embedded_modules(&embedded);
        for (name, rev, _) in MODULES {
            ctx.load_module(name, Some(rev), &[])
                .map_err(|e| schema_err(format!("loading YANG module {name}@{rev}"), &e))?;
        }
        let mut schemas = HashMap::new();
        for (name, _, _) in MODULES {
            let module = ctx
                .get_module_latest(name)
                .ok_or_else(|| ModelError::Schema {
                    message: format!("module {name} missing after loading"),
                })?;
            for top in module.data() {
                if let Some(s) = snode(&top) {
                    schemas.insert(name.to_owned(), s);
                }
            }
        }
        Ok((
            Self {
                ctx: ffi::SendContext(ctx),
            },
            schemas,
        ))
    }

    /// Parses and validates RFC 7951 JSON; on success returns the validated
    /// tree printed back as JSON with every default filled in.
    ///
    /// Two passes. The first only parses (every value checked against its
    /// type, all errors collected). When one of its errors is on a list key
    /// (or cannot be placed), those errors are the answer; otherwise the
    /// second pass parses again and validates (`when`, `must`, mandatory,
    /// unique), so the other errors still come all at once. libyang's
    /// multi-error mode drops a list entry whose key is invalid while its
    /// validation sets still point into it: such an entry with a `when`
    /// below it crashed in `lyd_validate_node_when` (found by the mutation
    /// test), like the key-less entries before (see the converter). Valid
    /// documents pay for the parse twice.
    pub fn validate_json(&self, json: &str) -> Result<serde_json::Value, Vec<YangError>> {
        let ctx = &self.ctx.0;
        let (parsed, errors) = ffi::collect_errors(ctx, || {
            DataTree::parse_string(
                ctx,
                json,
                DataFormat::JSON,
                DataParserFlags::STRICT
                    | DataParserFlags::NO_STATE
                    | DataParserFlags::NO_VALIDATION,
                validation_flags(),
            )
        });
        if let Err(e) = parsed {
            let errors = Self::errors_or(errors, e);
            if errors.iter().any(|e| self.on_list_key(e)) {
                return Err(errors);
            }
        }
        let (result, errors) = ffi::collect_errors(ctx, || {
            DataTree::parse_string(
                ctx,
                json,
                DataFormat::JSON,
                DataParserFlags::STRICT | DataParserFlags::NO_STATE,
                validation_flags(),
            )
        });
        match result {
            Ok(tree) => {
                let printed = tree
                    .print_string(
                        DataFormat::JSON,
                        DataPrinterFlags::WD_ALL | DataPrinterFlags::WITH_SIBLINGS,
                    )
                    .map_err(|e| vec![internal(format!("printing validated data: {e}"))])?;
                serde_json::from_str(&printed)
                    .map_err(|e| vec![internal(format!("reading libyang output: {e}"))])
            }
            Err(e) => Err(Self::errors_or(errors, e)),
        }
    }

    /// Whether `e` is about a list key, or cannot be placed: the cases
    /// where validating the rest would reach the dropped entry.
    fn on_list_key(&self, e: &YangError) -> bool {
        let Some(path) = e.schema_path.as_deref().or(e.data_path.as_deref()) else {
            return true;
        };
        let mut plain = String::with_capacity(path.len());
        let mut depth = 0_u32;
        for c in path.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                _ if depth == 0 => plain.push(c),
                _ => {}
            }
        }
        self.ctx
            .0
            .find_path(&plain)
            .map_or(true, |n| n.is_list_key())
    }

    /// The collected errors, or libyang's last error when none was stored.
    fn errors_or(errors: Vec<YangError>, e: yang3::Error) -> Vec<YangError> {
        if errors.is_empty() {
            vec![YangError {
                message: e.msg.unwrap_or_else(|| "invalid data".to_owned()),
                data_path: e.path,
                schema_path: None,
                line: None,
            }]
        } else {
            errors
        }
    }
}

/// No state data, every error collected (libyang's multi-error mode).
fn validation_flags() -> DataValidationFlags {
    DataValidationFlags::NO_STATE
        | DataValidationFlags::from_bits_retain(yang3::ffi::LYD_VALIDATE_MULTI_ERROR)
}

fn internal(message: String) -> YangError {
    YangError {
        message,
        data_path: None,
        schema_path: None,
        line: None,
    }
}

/// The only unsafe code of the model: yang3 returns just the last libyang
/// error, and its `Context` is not `Send`.
#[allow(
    unsafe_code,
    reason = "reading libyang's error list; yang3 exposes only the last error"
)]
mod ffi {
    use std::ffi::CStr;

    use yang3::{context::Context, ffi as ly, schema::SchemaNode};

    use super::YangError;

    /// A `Context` that may move between threads.
    ///
    /// SAFETY: libyang contexts are not tied to the thread that created
    /// them; what they do not allow is concurrent use while parsing, and the
    /// validator only touches the context under its mutex.
    pub(super) struct SendContext(pub Context);

    // SAFETY: see the type's documentation; every use goes through the
    // validator's `Mutex`.
    unsafe impl Send for SendContext {}

    /// Runs `f` with libyang storing every error (thread-local setting, so
    /// other contexts and threads are unaffected and nothing is printed to
    /// stderr), then drains the context's error list.
    pub(super) fn collect_errors<T>(ctx: &Context, f: impl FnOnce() -> T) -> (T, Vec<YangError>) {
        let raw_ctx = ctx_ptr(ctx);
        let mut opts: u32 = ly::LY_LOSTORE;
        // SAFETY: `opts` outlives the call below; the temporary options are
        // reset before it goes out of scope.
        unsafe {
            ly::ly_temp_log_options(&raw mut opts);
            if !raw_ctx.is_null() {
                ly::ly_err_clean(raw_ctx, std::ptr::null_mut());
            }
        }
        let out = f();
        let mut errors = Vec::new();
        // SAFETY: the error list belongs to `raw_ctx` on this thread and is
        // walked before being freed by `ly_err_clean`.
        unsafe {
            ly::ly_temp_log_options(std::ptr::null_mut());
            if !raw_ctx.is_null() {
                let mut item = ly::ly_err_first(raw_ctx);
                while !item.is_null() {
                    let e = &*item;
                    if e.level == ly::LY_LOG_LEVEL::LY_LLERR {
                        errors.push(YangError {
                            message: cstr(e.msg).unwrap_or_default(),
                            data_path: cstr(e.data_path),
                            schema_path: cstr(e.schema_path),
                            line: (e.line > 0).then_some(e.line),
                        });
                    }
                    item = e.next;
                }
                ly::ly_err_clean(raw_ctx, std::ptr::null_mut());
            }
        }
        (out, errors)
    }

    /// The names of an enumeration leaf's values (yang3 has no accessor).
    pub(super) fn enum_names(node: &SchemaNode<'_>) -> Vec<String> {
        let Some(t) = node.leaf_type() else {
            return Vec::new();
        };
        let raw = t.as_raw();
        let mut out = Vec::new();
        // SAFETY: `raw` is a compiled type owned by the context borrowed by
        // `node`; an LY_TYPE_ENUM type is a `lysc_type_enum`, whose `enums`
        // is a libyang sized array (count stored just before the first item).
        unsafe {
            if raw.is_null() || (*raw).basetype != ly::LY_DATA_TYPE::LY_TYPE_ENUM {
                return out;
            }
            let enums = (*raw.cast::<ly::lysc_type_enum>()).enums;
            if enums.is_null() {
                return out;
            }
            let count = *enums.cast::<u64>().sub(1);
            for i in 0..usize::try_from(count).unwrap_or(0) {
                if let Some(name) = cstr((*enums.add(i)).name) {
                    out.push(name);
                }
            }
        }
        out
    }

    fn ctx_ptr(ctx: &Context) -> *mut ly::ly_ctx {
        // yang3 keeps the context pointer private; every module knows its
        // context.
        match ctx.modules(false).next() {
            // SAFETY: the module pointer is valid while `ctx` is borrowed.
            Some(m) => unsafe { (*m.as_raw()).ctx },
            None => std::ptr::null_mut(),
        }
    }

    fn cstr(p: *const std::os::raw::c_char) -> Option<String> {
        if p.is_null() {
            None
        } else {
            // SAFETY: libyang strings are NUL-terminated and live as long as
            // the error item.
            Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        }
    }
}
