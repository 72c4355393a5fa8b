//! The change a plan carries to one participant. It stays typed from the
//! plan to the participant (and in the journal, as tagged JSON); its
//! [`Display`](std::fmt::Display) is the text dry-run and history show.

use std::fmt;

use rampart_proto::v1 as pb;
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    Format,
    http::{Call, render_calls},
};

/// One participant's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case")]
pub enum Edit {
    /// A NETCONF `<config>` element for `edit-config`.
    NetconfXml {
        /// The element.
        config: String,
    },
    /// Configuration-mode CLI lines (ASA).
    Cli {
        /// The lines, in order.
        lines: Vec<String>,
    },
    /// REST calls (Meraki, FDM, SD-WAN Manager); ids the device assigns
    /// appear as `{name:X}` placeholders the participant resolves.
    Http {
        /// Shown above the calls in dry-run.
        notes: Vec<String>,
        /// The calls, in order.
        calls: Vec<Call>,
    },
    /// A host agent's new policy.
    HostPolicy(HostPolicyEdit),
    /// An edit an older rampartd journaled as text: shown, never applied
    /// (participants refuse it; `check-sync` and `sync` repair the device).
    Text {
        /// The journaled text.
        text: String,
    },
}

/// An agent's change: the policy to enforce and a readable diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostPolicyEdit {
    /// Agent id.
    pub agent: String,
    /// Host name.
    pub hostname: String,
    /// Rule-level diff: `+`/`-` lines per interface and direction.
    pub changes: Vec<String>,
    /// The complete policy to enforce.
    pub policy: pb::HostPolicy,
}

impl HostPolicyEdit {
    /// Pretty JSON, the form dry-run shows.
    #[must_use]
    pub fn render(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl Edit {
    /// The rendering format of the edit; `None` for journaled text.
    #[must_use]
    pub fn format(&self) -> Option<Format> {
        match self {
            Edit::NetconfXml { .. } => Some(Format::NetconfXml),
            Edit::Cli { .. } => Some(Format::Cli),
            Edit::Http { .. } => Some(Format::Http),
            Edit::HostPolicy(_) => Some(Format::AgentPolicy),
            Edit::Text { .. } => None,
        }
    }

    /// The edit of the same kind that changes nothing (the inverse of an
    /// edit whose reverse direction has nothing to do).
    #[must_use]
    pub fn nothing_like(&self) -> Edit {
        match self {
            Edit::NetconfXml { .. } => Edit::NetconfXml {
                config: String::new(),
            },
            Edit::Cli { .. } => Edit::Cli { lines: Vec::new() },
            Edit::Http { .. } => Edit::Http {
                notes: Vec::new(),
                calls: Vec::new(),
            },
            Edit::HostPolicy(e) => Edit::HostPolicy(e.clone()),
            Edit::Text { .. } => Edit::Text {
                text: String::new(),
            },
        }
    }

    /// Why a participant expecting `expected` cannot apply this edit.
    #[must_use]
    pub fn unexpected(&self, expected: Format) -> String {
        match self.format() {
            Some(f) => format!("a {} edit where {} was expected", f.as_str(), expected.as_str()),
            None => "an edit journaled as text by an older rampartd is not replayed; run check-sync and sync".to_owned(),
        }
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::NetconfXml { config } => f.write_str(config),
            Edit::Cli { lines } => lines.iter().try_for_each(|l| writeln!(f, "{l}")),
            Edit::Http { notes, calls } => f.write_str(&render_calls(notes, calls)),
            Edit::HostPolicy(e) => f.write_str(&e.render()),
            Edit::Text { text } => f.write_str(text),
        }
    }
}

/// Reads a journaled edit: tagged JSON, or the plain text journals of
/// earlier releases held (kept as [`Edit::Text`], readable in history).
///
/// # Errors
/// Neither form.
pub fn journaled<'de, D: Deserializer<'de>>(d: D) -> Result<Edit, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Typed(Edit),
        Text(String),
    }
    Ok(match Stored::deserialize(d)? {
        Stored::Typed(e) => e,
        Stored::Text(text) => Edit::Text { text },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_journals_of_earlier_releases_still_read() {
        #[derive(Deserialize)]
        struct J {
            #[serde(deserialize_with = "journaled")]
            edit: Edit,
        }
        let old: J =
            serde_json::from_value(json!({"edit": "access-list A permit ip any any\n"})).unwrap();
        assert_eq!(old.edit.format(), None);
        assert_eq!(old.edit.to_string(), "access-list A permit ip any any\n");
        assert!(old.edit.unexpected(Format::Cli).contains("older rampartd"));
        let typed = Edit::Cli {
            lines: vec!["a".to_owned(), "b".to_owned()],
        };
        let new: J = serde_json::from_value(json!({"edit": typed})).unwrap();
        assert_eq!(new.edit, typed);
        assert_eq!(new.edit.to_string(), "a\nb\n");
    }

    #[test]
    fn http_edits_show_notes_then_calls() {
        let e = Edit::Http {
            notes: vec!["n".to_owned()],
            calls: vec![Call::new("PUT", "/x", Some(json!({"a": 1})))],
        };
        assert_eq!(e.to_string(), "# n\nPUT /x\n{\"a\":1}\n");
        assert_eq!(
            e.unexpected(Format::NetconfXml),
            "a http edit where netconf-xml was expected"
        );
    }
}
