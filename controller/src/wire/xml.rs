//! XML text helpers, on quick-xml's escaping.

/// Escapes text content and attribute values (`<`, `>`, `&`, `"`, `'`).
#[must_use]
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
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
