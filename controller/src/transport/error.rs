//! Typed protocol errors shared by NETCONF (`<rpc-error>`, RFC 6241 4.3)
//! and RESTCONF (`ietf-restconf:errors`, RFC 8040 7.1).
//!
//! Both protocols report errors with the same fields, so both clients parse
//! into [`RpcError`] and callers match on [`ErrorTag`] instead of searching
//! message strings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The layer an error was raised in (`error-type`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorType {
    /// Secure transport layer.
    Transport,
    /// RPC layer.
    Rpc,
    /// Protocol operation layer.
    Protocol,
    /// Server application layer.
    Application,
    /// A value the RFCs do not define, kept verbatim.
    Other(String),
}

impl ErrorType {
    /// Parses the wire word.
    #[must_use]
    pub fn parse(s: &str) -> ErrorType {
        match s {
            "transport" => ErrorType::Transport,
            "rpc" => ErrorType::Rpc,
            "protocol" => ErrorType::Protocol,
            "application" => ErrorType::Application,
            other => ErrorType::Other(other.to_owned()),
        }
    }

    /// The wire word.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            ErrorType::Transport => "transport",
            ErrorType::Rpc => "rpc",
            ErrorType::Protocol => "protocol",
            ErrorType::Application => "application",
            ErrorType::Other(s) => s,
        }
    }
}

macro_rules! error_tags {
    ($($variant:ident => $word:literal),* $(,)?) => {
        /// The error condition (`error-tag`, RFC 6241 appendix A).
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorTag {
            $(
                #[doc = concat!("`", $word, "`.")]
                $variant,
            )*
            /// A tag the RFCs do not define, kept verbatim.
            Other(String),
        }

        impl ErrorTag {
            /// Parses the wire word.
            #[must_use]
            pub fn parse(s: &str) -> ErrorTag {
                match s {
                    $($word => ErrorTag::$variant,)*
                    other => ErrorTag::Other(other.to_owned()),
                }
            }

            /// The wire word.
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorTag::$variant => $word,)*
                    ErrorTag::Other(s) => s,
                }
            }
        }
    };
}

error_tags! {
    InUse => "in-use",
    InvalidValue => "invalid-value",
    TooBig => "too-big",
    MissingAttribute => "missing-attribute",
    BadAttribute => "bad-attribute",
    UnknownAttribute => "unknown-attribute",
    MissingElement => "missing-element",
    BadElement => "bad-element",
    UnknownElement => "unknown-element",
    UnknownNamespace => "unknown-namespace",
    AccessDenied => "access-denied",
    LockDenied => "lock-denied",
    ResourceDenied => "resource-denied",
    RollbackFailed => "rollback-failed",
    DataExists => "data-exists",
    DataMissing => "data-missing",
    OperationNotSupported => "operation-not-supported",
    OperationFailed => "operation-failed",
    PartialOperation => "partial-operation",
    MalformedMessage => "malformed-message",
}

/// `error-severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorSeverity {
    /// The operation failed.
    Error,
    /// The operation succeeded with a warning.
    Warning,
}

/// One `error-info` child, flattened to name and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Element (or JSON member) name without prefix.
    pub name: String,
    /// Its text (nested structure is flattened to its text).
    pub value: String,
}

/// One protocol error as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcError {
    /// `error-type`.
    pub error_type: ErrorType,
    /// `error-tag`.
    pub tag: ErrorTag,
    /// `error-severity`.
    pub severity: ErrorSeverity,
    /// `error-app-tag`.
    pub app_tag: Option<String>,
    /// `error-path`: where in the data the error is.
    pub path: Option<String>,
    /// `error-message`.
    pub message: Option<String>,
    /// `error-info` children (e.g. `session-id` for `lock-denied`,
    /// `bad-element`).
    pub info: Vec<ErrorInfo>,
}

impl RpcError {
    /// The value of an `error-info` child, e.g. `session-id`.
    #[must_use]
    pub fn info(&self, name: &str) -> Option<&str> {
        self.info
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.value.as_str())
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.error_type.as_str(), self.tag.as_str())?;
        if let Some(path) = &self.path {
            write!(f, " at {path}")?;
        }
        if let Some(msg) = &self.message {
            write!(f, ": {msg}")?;
        }
        for i in &self.info {
            write!(f, " [{}={}]", i.name, i.value)?;
        }
        Ok(())
    }
}

/// Formats a list of errors for an error message.
#[must_use]
pub fn join(errors: &[RpcError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
