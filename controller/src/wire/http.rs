//! HTTP edits of the REST platforms (Meraki Dashboard, FDM, SD-WAN
//! Manager): the calls a plan makes, and their text form shown by dry-run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::WireError;

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

/// Parses [`render_calls`] text back.
///
/// # Errors
/// [`WireError::Edit`] naming the line that is not a call or JSON.
pub fn parse_calls(text: &str) -> Result<Vec<Call>, WireError> {
    let mut out: Vec<Call> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('{') || line.starts_with('[') {
            let body: Value = serde_json::from_str(line).map_err(|e| WireError::Edit {
                line: i + 1,
                reason: format!("body is not JSON: {e}"),
            })?;
            let Some(last) = out.last_mut().filter(|c| c.body.is_none()) else {
                return Err(WireError::Edit {
                    line: i + 1,
                    reason: "a body must follow a request line".to_owned(),
                });
            };
            last.body = Some(body);
            continue;
        }
        let (method, path) = line.split_once(' ').ok_or_else(|| WireError::Edit {
            line: i + 1,
            reason: format!("expected `METHOD /path`, got {line:?}"),
        })?;
        if !matches!(method, "GET" | "PUT" | "POST" | "DELETE") || !path.starts_with('/') {
            return Err(WireError::Edit {
                line: i + 1,
                reason: format!("expected `METHOD /path`, got {line:?}"),
            });
        }
        out.push(Call::new(method, path.trim(), None));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_and_bad_lines_are_named() {
        let calls = vec![
            Call::new(
                "PUT",
                "/networks/N/x",
                Some(serde_json::json!({"rules": []})),
            ),
            Call::new("DELETE", "/object/networks/{name:a}", None),
        ];
        let text = render_calls(&["note".to_owned()], &calls);
        assert_eq!(parse_calls(&text).unwrap(), calls);
        let err = parse_calls("PUT /a\n{bad\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse_calls("FETCH /a\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
