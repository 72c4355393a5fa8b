//! HTTP edits of the REST platforms (Meraki Dashboard, FDM, SD-WAN
//! Manager): the calls a plan makes, and their text form shown by dry-run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One HTTP call of an edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// `GET`, `PUT`, `POST`, `DELETE`.
    pub method: String,
    /// Path relative to the API base; may hold `{placeholders}` the driver
    /// resolves (object names standing for ids the device assigns).
    pub path: String,
    /// JSON body.
    pub body: Option<Value>,
}

impl Call {
    /// A call with a body.
    #[must_use]
    pub fn new(method: &str, path: impl Into<String>, body: Option<Value>) -> Call {
        Call {
            method: method.to_owned(),
            path: path.into(),
            body,
        }
    }
}

/// Renders calls as text: `METHOD PATH`, then the compact JSON body on the
/// next line when there is one. `notes` become leading `# ` lines.
#[must_use]
pub fn render_calls(notes: &[String], calls: &[Call]) -> String {
    let mut out = String::new();
    for n in notes {
        out.push_str("# ");
        out.push_str(n);
        out.push('\n');
    }
    for c in calls {
        out.push_str(&c.method);
        out.push(' ');
        out.push_str(&c.path);
        out.push('\n');
        if let Some(b) = &c.body {
            out.push_str(&b.to_string());
            out.push('\n');
        }
    }
    out
}
