//! XML text helpers, on quick-xml's escaping.

/// Escapes text content and attribute values (`<`, `>`, `&`, `"`, `'`).
#[must_use]
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The character an entity or character reference in text stands for:
/// XML's five predefined entities and `&#N;`/`&#xN;`; `None` for anything
/// else (replies from devices declare no DTD entities).
#[must_use]
pub fn resolve_ref(r: &quick_xml::events::BytesRef<'_>) -> Option<char> {
    if r.is_char_ref() {
        return r.resolve_char_ref().ok().flatten();
    }
    match r.as_ref() as &str {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            super::escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(super::escape("plain é"), "plain é");
    }
}
