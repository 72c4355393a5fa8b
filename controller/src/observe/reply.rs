//! Walking a vendor's JSON reply while keeping the JSON pointer of where
//! we are, so every error names the exact place (`/data/2/if-oper-status`)
//! of what is missing or of the wrong type.

use serde_json::Value;

use super::StateError;

/// Parses a reply body; the error names the line and column.
pub(super) fn parse(platform: &'static str, body: &str) -> Result<Value, StateError> {
    serde_json::from_str(body).map_err(|e| {
        StateError::new(
            platform,
            format!("line {} column {}", e.line(), e.column()),
            format!("not JSON: {e}"),
        )
    })
}

/// A value of a reply and its JSON pointer (RFC 6901).
pub(super) struct At<'a> {
    platform: &'static str,
    value: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    /// The whole reply.
    pub(super) fn root(platform: &'static str, value: &'a Value) -> Self {
        Self {
            platform,
            value,
            path: String::new(),
        }
    }

    /// An error about this value.
    pub(super) fn error(&self, message: impl Into<String>) -> StateError {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        StateError::new(self.platform, path, message)
    }

    fn path_of(&self, name: &str) -> String {
        format!(
            "{}/{}",
            self.path,
            name.replace('~', "~0").replace('/', "~1")
        )
    }

    /// The entries of this value, which must be an array.
    pub(super) fn entries(&self) -> Result<Vec<At<'a>>, StateError> {
        let arr = self
            .value
            .as_array()
            .ok_or_else(|| self.error("expected an array"))?;
        Ok(arr
            .iter()
            .enumerate()
            .map(|(i, value)| At {
                platform: self.platform,
                value,
                path: format!("{}/{i}", self.path),
            })
            .collect())
    }

    /// Member `name`, which must be present (null counts as absent).
    pub(super) fn get(&self, name: &str) -> Result<At<'a>, StateError> {
        let obj = self
            .value
            .as_object()
            .ok_or_else(|| self.error("expected an object"))?;
        let child = At {
            platform: self.platform,
            value: &Value::Null,
            path: self.path_of(name),
        };
        match obj.get(name) {
            Some(value) if !value.is_null() => Ok(At { value, ..child }),
            _ => Err(child.error("missing")),
        }
    }

    /// This value as text.
    pub(super) fn text(&self) -> Result<&'a str, StateError> {
        self.value
            .as_str()
            .ok_or_else(|| self.error("expected a string"))
    }

    /// This value as a non-negative integer: a JSON number, or a string of
    /// digits as some APIs encode counters.
    pub(super) fn count(&self) -> Result<u64, StateError> {
        match self.value {
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| self.error(format!("{n} is not a counter"))),
            Value::String(s) => s
                .parse()
                .map_err(|_| self.error(format!("{s:?} is not a counter"))),
            _ => Err(self.error("expected a number")),
        }
    }

    /// Member `name` as text.
    pub(super) fn str(&self, name: &str) -> Result<&'a str, StateError> {
        self.get(name)?.text()
    }
}

/// One page of an FDM-style list reply (`items` and `paging`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// What the page held.
    pub items: Vec<T>,
    /// The `offset` to ask for next, when the list goes on.
    pub next_offset: Option<u64>,
}

/// Reads `paging` of an FDM list reply: the next offset, if any.
pub(super) fn next_offset(root: &At<'_>) -> Result<Option<u64>, StateError> {
    let paging = root.get("paging")?;
    let offset = paging.get("offset")?.count()?;
    let limit = paging.get("limit")?.count()?;
    let count = paging.get("count")?.count()?;
    let next = offset.saturating_add(limit);
    Ok((next < count).then_some(next))
}
