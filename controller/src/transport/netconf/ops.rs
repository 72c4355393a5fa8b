//! NETCONF operations (RFC 6241 7, RFC 6241 8.4 confirmed commit) as typed
//! values that print their `<rpc>` body.

use crate::wire::xml::escape as escape_xml;

/// A configuration datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Datastore {
    /// `<running/>`.
    Running,
    /// `<candidate/>` (`:candidate`).
    Candidate,
    /// `<startup/>` (`:startup`).
    Startup,
}

impl Datastore {
    fn xml(self) -> &'static str {
        match self {
            Datastore::Running => "<running/>",
            Datastore::Candidate => "<candidate/>",
            Datastore::Startup => "<startup/>",
        }
    }
}

/// A `<filter>` for get and get-config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Subtree filter: the XML selecting the subtrees.
    Subtree(String),
    /// XPath filter (`:xpath`): the expression and the prefixes it uses.
    XPath {
        /// The `select` expression.
        select: String,
        /// `(prefix, namespace)` pairs declared on the filter element.
        namespaces: Vec<(String, String)>,
    },
}

impl Filter {
    fn xml(&self) -> String {
        match self {
            Filter::Subtree(inner) => format!("<filter type=\"subtree\">{inner}</filter>"),
            Filter::XPath { select, namespaces } => {
                let ns: String = namespaces
                    .iter()
                    .map(|(p, uri)| format!(" xmlns:{p}=\"{}\"", escape_xml(uri)))
                    .collect();
                format!(
                    "<filter type=\"xpath\"{ns} select=\"{}\"/>",
                    escape_xml(select)
                )
            }
        }
    }
}

/// `default-operation` of edit-config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultOperation {
    /// Merge (the protocol default).
    Merge,
    /// Replace the whole target with the config.
    Replace,
    /// Only nodes with explicit operations change.
    None,
}

/// `test-option` of edit-config (`:validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestOption {
    /// Validate, then apply only if valid.
    TestThenSet,
    /// Apply without validating.
    Set,
    /// Validate only (`:validate:1.1`).
    TestOnly,
}

/// `error-option` of edit-config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOption {
    /// Stop at the first error (the protocol default).
    StopOnError,
    /// Continue and report all errors.
    ContinueOnError,
    /// Undo everything on error (`:rollback-on-error`): never half-apply.
    RollbackOnError,
}

/// An `<edit-config>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditConfig {
    /// Target datastore.
    pub target: Datastore,
    /// The `<config>` element (with any `nc:operation` attributes).
    pub config: String,
    /// `default-operation`.
    pub default_operation: Option<DefaultOperation>,
    /// `test-option`.
    pub test_option: Option<TestOption>,
    /// `error-option`.
    pub error_option: Option<ErrorOption>,
}

impl EditConfig {
    /// An edit of `target` with `config` and protocol defaults otherwise.
    #[must_use]
    pub fn new(target: Datastore, config: impl Into<String>) -> EditConfig {
        EditConfig {
            target,
            config: config.into(),
            default_operation: None,
            test_option: None,
            error_option: None,
        }
    }
}

/// A `<commit>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// `<confirmed/>`: roll back unless confirmed in time.
    pub confirmed: bool,
    /// `<confirm-timeout>` in seconds (server default 600).
    pub confirm_timeout: Option<u32>,
    /// `<persist>`: lets another session confirm or cancel with this id.
    pub persist: Option<String>,
    /// `<persist-id>`: confirms a persisted confirmed commit.
    pub persist_id: Option<String>,
}

/// Every operation this client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `<get>`.
    Get(Option<Filter>),
    /// `<get-config>`.
    GetConfig(Datastore, Option<Filter>),
    /// `<edit-config>`.
    EditConfig(EditConfig),
    /// `<lock>`.
    Lock(Datastore),
    /// `<unlock>`.
    Unlock(Datastore),
    /// `<discard-changes>`.
    DiscardChanges,
    /// `<validate>` of a datastore.
    Validate(Datastore),
    /// `<commit>`.
    Commit(Commit),
    /// `<cancel-commit>` with an optional persist id.
    CancelCommit(Option<String>),
    /// `<close-session>`.
    CloseSession,
    /// `<kill-session>`.
    KillSession(u32),
}

impl Operation {
    /// The element name, for logs and errors.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Get(_) => "get",
            Operation::GetConfig(..) => "get-config",
            Operation::EditConfig(_) => "edit-config",
            Operation::Lock(_) => "lock",
            Operation::Unlock(_) => "unlock",
            Operation::DiscardChanges => "discard-changes",
            Operation::Validate(_) => "validate",
            Operation::Commit(_) => "commit",
            Operation::CancelCommit(_) => "cancel-commit",
            Operation::CloseSession => "close-session",
            Operation::KillSession(_) => "kill-session",
        }
    }

    /// The operation element (the `<rpc>` content).
    #[must_use]
    pub fn to_xml(&self) -> String {
        match self {
            Operation::Get(f) => format!(
                "<get>{}</get>",
                f.as_ref().map(Filter::xml).unwrap_or_default()
            ),
            Operation::GetConfig(src, f) => format!(
                "<get-config><source>{}</source>{}</get-config>",
                src.xml(),
                f.as_ref().map(Filter::xml).unwrap_or_default()
            ),
            Operation::EditConfig(e) => {
                let mut s = format!("<edit-config><target>{}</target>", e.target.xml());
                if let Some(d) = e.default_operation {
                    let w = match d {
                        DefaultOperation::Merge => "merge",
                        DefaultOperation::Replace => "replace",
                        DefaultOperation::None => "none",
                    };
                    s.push_str(&format!("<default-operation>{w}</default-operation>"));
                }
                if let Some(t) = e.test_option {
                    let w = match t {
                        TestOption::TestThenSet => "test-then-set",
                        TestOption::Set => "set",
                        TestOption::TestOnly => "test-only",
                    };
                    s.push_str(&format!("<test-option>{w}</test-option>"));
                }
                if let Some(o) = e.error_option {
                    let w = match o {
                        ErrorOption::StopOnError => "stop-on-error",
                        ErrorOption::ContinueOnError => "continue-on-error",
                        ErrorOption::RollbackOnError => "rollback-on-error",
                    };
                    s.push_str(&format!("<error-option>{w}</error-option>"));
                }
                s.push_str(e.config.trim());
                s.push_str("</edit-config>");
                s
            }
            Operation::Lock(t) => format!("<lock><target>{}</target></lock>", t.xml()),
            Operation::Unlock(t) => format!("<unlock><target>{}</target></unlock>", t.xml()),
            Operation::DiscardChanges => "<discard-changes/>".to_owned(),
            Operation::Validate(src) => {
                format!("<validate><source>{}</source></validate>", src.xml())
            }
            Operation::Commit(c) => {
                let mut s = String::from("<commit>");
                if c.confirmed {
                    s.push_str("<confirmed/>");
                }
                if let Some(t) = c.confirm_timeout {
                    s.push_str(&format!("<confirm-timeout>{t}</confirm-timeout>"));
                }
                if let Some(p) = &c.persist {
                    s.push_str(&format!("<persist>{}</persist>", escape_xml(p)));
                }
                if let Some(p) = &c.persist_id {
                    s.push_str(&format!("<persist-id>{}</persist-id>", escape_xml(p)));
                }
                s.push_str("</commit>");
                s
            }
            Operation::CancelCommit(id) => match id {
                Some(p) => format!(
                    "<cancel-commit><persist-id>{}</persist-id></cancel-commit>",
                    escape_xml(p)
                ),
                None => "<cancel-commit/>".to_owned(),
            },
            Operation::CloseSession => "<close-session/>".to_owned(),
            Operation::KillSession(id) => {
                format!("<kill-session><session-id>{id}</session-id></kill-session>")
            }
        }
    }
}

/// Wraps an operation in `<rpc>`.
#[must_use]
pub fn rpc(message_id: u64, operation: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rpc message-id=\"{message_id}\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">{operation}</rpc>"
    )
}

/// The client `<hello>`, offering base:1.0 and base:1.1.
pub const CLIENT_HELLO: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability><capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_print_rfc6241_elements() {
        let mut e = EditConfig::new(Datastore::Candidate, "<config><a/></config>");
        e.default_operation = Some(DefaultOperation::None);
        e.test_option = Some(TestOption::TestThenSet);
        e.error_option = Some(ErrorOption::RollbackOnError);
        assert_eq!(
            Operation::EditConfig(e).to_xml(),
            "<edit-config><target><candidate/></target><default-operation>none</default-operation><test-option>test-then-set</test-option><error-option>rollback-on-error</error-option><config><a/></config></edit-config>"
        );
        let c = Commit {
            confirmed: true,
            confirm_timeout: Some(5),
            persist: Some("p&1".to_owned()),
            persist_id: None,
        };
        assert_eq!(
            Operation::Commit(c).to_xml(),
            "<commit><confirmed/><confirm-timeout>5</confirm-timeout><persist>p&amp;1</persist></commit>"
        );
        let f = Filter::XPath {
            select: "/ios:native/ios:ip".to_owned(),
            namespaces: vec![("ios".to_owned(), "urn:x".to_owned())],
        };
        assert_eq!(
            Operation::GetConfig(Datastore::Running, Some(f)).to_xml(),
            "<get-config><source><running/></source><filter type=\"xpath\" xmlns:ios=\"urn:x\" select=\"/ios:native/ios:ip\"/></get-config>"
        );
    }
}
