//! Drift detection: does a device still hold what Rampart put there?
//!
//! Both sides are parsed into a small element tree (local names, trimmed
//! text; namespaces and attributes ignored) and compared structurally:
//! subtrees Rampart owns outright (its ACLs) must be equal — an extra or
//! changed entry is drift — while shared containers (an interface) only
//! need to contain Rampart's leaves.

use quick_xml::{Reader, events::Event};

/// An XML element reduced to what matters for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct El {
    /// Local name.
    pub name: String,
    /// Trimmed text content.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<El>,
}

/// Why a document could not be compared.
#[derive(Debug, thiserror::Error)]
#[error("unreadable XML at byte {position}: {message}")]
pub struct XmlError {
    /// Byte offset.
    pub position: u64,
    /// Parser message.
    pub message: String,
}

/// Parses `xml` into an element tree under a synthetic root.
///
/// # Errors
/// [`XmlError`] for malformed XML.
pub fn parse(xml: &str) -> Result<El, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut stack = vec![El {
        name: String::new(),
        text: String::new(),
        children: Vec::new(),
    }];
    loop {
        let ev = reader.read_event().map_err(|e| XmlError {
            position: reader.buffer_position(),
            message: e.to_string(),
        })?;
        match ev {
            Event::Start(s) => stack.push(El {
                name: s.local_name().as_ref().to_owned(),
                text: String::new(),
                children: Vec::new(),
            }),
            Event::Empty(s) => {
                let el = El {
                    name: s.local_name().as_ref().to_owned(),
                    text: String::new(),
                    children: Vec::new(),
                };
                if let Some(top) = stack.last_mut() {
                    top.children.push(el);
                }
            }
            Event::Text(t) => {
                let raw = t.xml10_content().into_owned();
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(raw.trim());
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.as_ref() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(ch);
                }
            }
            Event::End(_) if stack.len() > 1 => {
                let el = stack
                    .pop()
                    .unwrap_or_else(|| unreachable!("checked length"));
                if let Some(top) = stack.last_mut() {
                    top.children.push(el);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    stack.truncate(1);
    Ok(stack.pop().unwrap_or_else(|| unreachable!("root present")))
}

impl El {
    /// The first child named `name`.
    #[must_use]
    pub fn child(&self, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Finds a descendant by a path of names.
    #[must_use]
    pub fn at(&self, path: &[&str]) -> Option<&El> {
        path.iter().try_fold(self, |el, name| el.child(name))
    }

    /// The identity of a list entry: its name and the text of its first
    /// child (the key leaf of every list Rampart writes).
    fn identity(&self) -> (&str, &str) {
        (
            &self.name,
            self.children.first().map_or("", |c| c.text.as_str()),
        )
    }

    /// A canonical form: children sorted, so document order does not matter.
    #[must_use]
    pub fn canonical(&self) -> El {
        let mut children: Vec<El> = self.children.iter().map(El::canonical).collect();
        children.sort_by_key(|c| format!("{c:?}"));
        El {
            name: self.name.clone(),
            text: self.text.clone(),
            children,
        }
    }
}

/// One difference between the expected and the actual configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Path of the element (`/native/ip/access-list/extended[RAMPART-ACME-WEB]`).
    pub path: String,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// Compares `actual` with `expected`. Elements whose name is in `owned`
/// must be equal as a whole (canonically); everything else must merely
/// contain what is expected.
#[must_use]
pub fn compare(expected: &El, actual: &El, owned: &[&str]) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(expected, actual, owned, String::new(), &mut out);
    out
}

fn walk(expected: &El, actual: &El, owned: &[&str], path: String, out: &mut Vec<Difference>) {
    if expected.children.is_empty() && expected.text != actual.text {
        out.push(Difference {
            path,
            what: format!("expected {:?}, found {:?}", expected.text, actual.text),
        });
        return;
    }
    for e in &expected.children {
        let (name, key) = e.identity();
        let label = if e.children.len() > 1 {
            format!("{name}[{key}]")
        } else {
            name.to_owned()
        };
        let p = format!("{path}/{label}");
        let found = actual
            .children
            .iter()
            .find(|a| a.name == e.name && (e.children.len() <= 1 || a.identity() == e.identity()));
        match found {
            None => out.push(Difference {
                path: p,
                what: "missing on the device".to_owned(),
            }),
            Some(a) if owned.contains(&e.name.as_str()) => {
                if a.canonical() != e.canonical() {
                    out.push(Difference {
                        path: p,
                        what: "changed on the device (entries differ)".to_owned(),
                    });
                }
            }
            Some(a) => walk(e, a, owned, p, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: &str = r#"<native><ip><access-list><extended><name>A</name>
        <access-list-seq-rule><sequence>10</sequence><ace-rule><action>permit</action></ace-rule></access-list-seq-rule>
        </extended></access-list></ip></native>"#;

    #[test]
    fn equal_modulo_order_and_whitespace() {
        let e = parse(EXPECTED).unwrap();
        let a = parse(&format!(
            "<data xmlns='x'>{}</data>",
            EXPECTED.replace('\n', " ")
        ))
        .unwrap();
        let a = a.child("data").unwrap().clone();
        let a = El {
            name: String::new(),
            ..a
        };
        assert!(compare(&e, &a, &["extended"]).is_empty());
    }

    #[test]
    fn changed_and_missing_owned_entries_are_drift() {
        let e = parse(EXPECTED).unwrap();
        let changed = parse(&EXPECTED.replace("permit", "deny")).unwrap();
        let d = compare(&e, &changed, &["extended"]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].path.ends_with("extended[A]"), "{d:?}");
        let extra = parse(&EXPECTED.replace(
            "</extended>",
            "<access-list-seq-rule><sequence>20</sequence></access-list-seq-rule></extended>",
        ))
        .unwrap();
        assert_eq!(compare(&e, &extra, &["extended"]).len(), 1);
        let gone = parse("<native><ip><access-list/></ip></native>").unwrap();
        let d = compare(&e, &gone, &["extended"]);
        assert_eq!(d[0].what, "missing on the device");
    }
}
