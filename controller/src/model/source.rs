//! Reading user documents (YAML, possibly several `---` documents, or
//! JSON) into a small tree that remembers where every node came from.
//!
//! Both syntaxes end up in the same [`UNode`] tree so the conversion to YANG
//! instance data does not care which one the user wrote. YAML goes through
//! `marked-yaml`; JSON has its own small parser because YAML's flow syntax is
//! not quite JSON (tabs as indentation, for one) and JSON users deserve JSON
//! error messages.

use std::panic::AssertUnwindSafe;

use marked_yaml::{LoaderOptions, Node};

use super::{DocFormat, MAX_DEPTH};

/// A position in the user's file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    /// Line, 1-based.
    pub line: u32,
    /// Column, 1-based.
    pub column: u32,
}

/// How a scalar was written, which decides how it may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarStyle {
    /// YAML plain scalar or JSON number/boolean/null: may be a number,
    /// boolean or null.
    Plain,
    /// Quoted (YAML) or a JSON string: always a string.
    Quoted,
}

/// A node of a user document.
#[derive(Debug, Clone)]
pub(crate) enum UValue {
    /// A scalar, with its text as written.
    Scalar(String, ScalarStyle),
    /// A mapping; keys keep their own positions and the user's order.
    Map(Vec<(UKey, UNode)>),
    /// A sequence.
    Seq(Vec<UNode>),
}

/// A mapping key and where it is.
#[derive(Debug, Clone)]
pub(crate) struct UKey {
    /// The key text.
    pub text: String,
    /// Where the key starts.
    pub pos: Pos,
}

/// A node with its position.
#[derive(Debug, Clone)]
pub(crate) struct UNode {
    /// Where the node starts.
    pub pos: Pos,
    /// The content.
    pub value: UValue,
}

impl UNode {
    /// The scalar text when this is a scalar that is not null.
    pub fn scalar(&self) -> Option<&str> {
        match &self.value {
            UValue::Scalar(s, _) if !self.is_null() => Some(s),
            _ => None,
        }
    }

    /// YAML null (`~`, `null`, empty) or JSON `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, UValue::Scalar(s, ScalarStyle::Plain) if s.is_empty() || s == "~" || s == "null" || s == "Null" || s == "NULL")
    }

    /// Short word for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            UValue::Scalar(..) if self.is_null() => "null",
            UValue::Scalar(..) => "a scalar",
            UValue::Map(_) => "a mapping",
            UValue::Seq(_) => "a list",
        }
    }
}

/// One document of a file, or the reason it could not be read.
#[derive(Debug)]
pub(crate) struct ParseError {
    /// What went wrong, in the parser's words.
    pub message: String,
    pub pos: Pos,
}

/// Splits and parses a file into documents.
pub(crate) fn parse_documents(text: &str, format: DocFormat) -> Result<Vec<UNode>, ParseError> {
    // Editors on some platforms start files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = match format {
        DocFormat::Auto => {
            if text.trim_start().starts_with(['{', '[']) {
                DocFormat::Json
            } else {
                DocFormat::Yaml
            }
        }
        f => f,
    };
    match format {
        DocFormat::Json => {
            let mut p = JsonParser::new(text);
            let node = p.document()?;
            Ok(vec![node])
        }
        DocFormat::Yaml | DocFormat::Auto => parse_yaml_stream(text),
    }
}

// ===== YAML =====

/// `marked-yaml` reads only the first document of a stream, so the stream is
/// cut at document markers first. A `---` or `...` at column 1 cannot occur
/// inside any YAML scalar, so cutting there is exact.
fn parse_yaml_stream(text: &str) -> Result<Vec<UNode>, ParseError> {
    check_flow_depth(text)?;
    let mut docs = Vec::new();
    let mut chunk = String::new();
    let mut chunk_first_line = 0u32;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let lineno = u32::try_from(i).unwrap_or(u32::MAX);
        let is_start = is_marker(line, "---");
        let is_end = is_marker(line, "...");
        if is_start || is_end {
            push_yaml_doc(&chunk, chunk_first_line, &mut docs)?;
            chunk.clear();
            chunk_first_line = lineno;
            if is_start {
                // Keep what follows the marker on its line (`--- {a: 1}`),
                // with the marker blanked so columns stay right.
                chunk.push_str("   ");
                chunk.push_str(&line[3..]);
            } else {
                chunk.push('\n');
            }
        } else {
            chunk.push_str(line);
        }
    }
    push_yaml_doc(&chunk, chunk_first_line, &mut docs)?;
    Ok(docs)
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

fn push_yaml_doc(chunk: &str, line_offset: u32, docs: &mut Vec<UNode>) -> Result<(), ParseError> {
    let meaningful = chunk.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
    });
    if !meaningful {
        return Ok(());
    }
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    // marked-yaml has `unreachable!()`s for inputs its author did not expect;
    // a spec upload must never take the controller down, so a panic becomes
    // an ordinary parse error.
    let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        marked_yaml::parse_yaml_with_options(0, chunk, options)
    }));
    let node = match parsed {
        Ok(Ok(node)) => node,
        Ok(Err(e)) => return Err(yaml_error(&e, line_offset)),
        Err(_) => {
            return Err(ParseError {
                message: "YAML parser failed on this document".to_owned(),
                pos: Pos {
                    line: line_offset + 1,
                    column: 1,
                },
            });
        }
    };
    docs.push(from_marked(&node, line_offset, 0)?);
    Ok(())
}

fn yaml_error(e: &marked_yaml::LoadError, line_offset: u32) -> ParseError {
    use marked_yaml::LoadError as L;
    let (marker, message) = match e {
        L::TopLevelMustBeMapping(m) => (
            Some(*m),
            "a document must be a mapping (apiVersion, kind, metadata, spec)".to_owned(),
        ),
        L::TopLevelMustBeSequence(m) => (Some(*m), "a document must be a sequence".to_owned()),
        L::UnexpectedAnchor(m) => (
            Some(*m),
            "YAML anchors and aliases are not supported".to_owned(),
        ),
        L::MappingKeyMustBeScalar(m) => (Some(*m), "mapping keys must be scalars".to_owned()),
        L::UnexpectedTag(m) => (Some(*m), "YAML tags are not supported".to_owned()),
        L::ScanError(m, se) => (Some(*m), se.info().to_owned()),
        L::DuplicateKey(inner) => {
            let first = inner
                .prev_key
                .span()
                .start()
                .map_or(0, marked_yaml::Marker::line);
            (
                inner.key.span().start().copied(),
                format!(
                    "duplicate key \"{}\" (first at line {})",
                    inner.key.as_str(),
                    u32::try_from(first).unwrap_or(0) + line_offset
                ),
            )
        }
    };
    ParseError {
        message,
        pos: marker.map_or(
            Pos {
                line: line_offset + 1,
                column: 1,
            },
            |m| marker_pos(&m, line_offset),
        ),
    }
}

fn marker_pos(m: &marked_yaml::Marker, line_offset: u32) -> Pos {
    Pos {
        line: u32::try_from(m.line())
            .unwrap_or(u32::MAX)
            .saturating_add(line_offset),
        column: u32::try_from(m.column()).unwrap_or(u32::MAX),
    }
}

fn from_marked(node: &Node, line_offset: u32, depth: usize) -> Result<UNode, ParseError> {
    let pos = node
        .span()
        .start()
        .map_or(Pos::default(), |m| marker_pos(m, line_offset));
    if depth > MAX_DEPTH {
        return Err(too_deep(pos));
    }
    let value = match node {
        Node::Scalar(s) => UValue::Scalar(
            s.as_str().to_owned(),
            if s.may_coerce() {
                ScalarStyle::Plain
            } else {
                ScalarStyle::Quoted
            },
        ),
        Node::Mapping(m) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m.iter() {
                let kpos = k.span().start().map_or(pos, |m| marker_pos(m, line_offset));
                out.push((
                    UKey {
                        text: k.as_str().to_owned(),
                        pos: kpos,
                    },
                    from_marked(v, line_offset, depth + 1)?,
                ));
            }
            // yaml-rust2 marks a block mapping at its first ':'; users
            // think of it as starting at its first key.
            if let Some((k, _)) = out
                .first()
                .filter(|(k, _)| (k.pos.line, k.pos.column) < (pos.line, pos.column))
            {
                return Ok(UNode {
                    pos: k.pos,
                    value: UValue::Map(out),
                });
            }
            UValue::Map(out)
        }
        Node::Sequence(s) => {
            let mut out = Vec::with_capacity(s.len());
            for v in s.iter() {
                out.push(from_marked(v, line_offset, depth + 1)?);
            }
            UValue::Seq(out)
        }
    };
    Ok(UNode { pos, value })
}

fn too_deep(pos: Pos) -> ParseError {
    ParseError {
        message: format!("document nests deeper than {MAX_DEPTH} levels"),
        pos,
    }
}

/// Rejects absurd flow nesting (`[[[[…`) before the YAML parser builds a
/// tree whose recursive drop could exhaust the stack.
fn check_flow_depth(text: &str) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut line = 1u32;
    let mut col = 0u32;
    let mut quote: Option<char> = None;
    let mut comment = false;
    for ch in text.chars() {
        col += 1;
        if ch == '\n' {
            line += 1;
            col = 0;
            comment = false;
            continue;
        }
        if comment {
            continue;
        }
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => {}
            None => match ch {
                '"' | '\'' => quote = Some(ch),
                '#' => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(too_deep(Pos { line, column: col }));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    Ok(())
}

// ===== JSON =====

/// A small JSON parser that keeps line and column of every value.
struct JsonParser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    column: u32,
    depth: usize,
}

impl<'a> JsonParser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            chars: text.chars().peekable(),
            line: 1,
            column: 1,
            depth: 0,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            message: message.into(),
            pos: self.pos(),
        })
    }

    fn skip_ws(&mut self) {
        while matches!(self.chars.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.bump();
        }
    }

    fn document(&mut self) -> Result<UNode, ParseError> {
        self.skip_ws();
        let node = self.value()?;
        self.skip_ws();
        if let Some(c) = self.chars.peek().copied() {
            return self.err(format!("JSON: unexpected '{c}' after the document"));
        }
        if !matches!(node.value, UValue::Map(_)) {
            return Err(ParseError {
                message: "a document must be an object (apiVersion, kind, metadata, spec)"
                    .to_owned(),
                pos: node.pos,
            });
        }
        Ok(node)
    }

    fn value(&mut self) -> Result<UNode, ParseError> {
        self.skip_ws();
        let pos = self.pos();
        match self.chars.peek().copied() {
            None => self.err("JSON: unexpected end of input, expected a value"),
            Some('{') => self.nested(|p| p.object(pos)),
            Some('[') => self.nested(|p| p.array(pos)),
            Some('"') => Ok(UNode {
                pos,
                value: UValue::Scalar(self.string()?, ScalarStyle::Quoted),
            }),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let mut s = String::new();
                while let Some(&c) = self.chars.peek() {
                    if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E') {
                        s.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                if s.parse::<f64>().is_err() {
                    return Err(ParseError {
                        message: format!("JSON: invalid number \"{s}\""),
                        pos,
                    });
                }
                Ok(UNode {
                    pos,
                    value: UValue::Scalar(s, ScalarStyle::Plain),
                })
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let mut s = String::new();
                while let Some(&c) = self.chars.peek() {
                    if c.is_ascii_alphanumeric() {
                        s.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                match s.as_str() {
                    "true" | "false" | "null" => Ok(UNode {
                        pos,
                        value: UValue::Scalar(s, ScalarStyle::Plain),
                    }),
                    _ => Err(ParseError {
                        message: format!(
                            "JSON: unexpected word \"{s}\" (strings need double quotes)"
                        ),
                        pos,
                    }),
                }
            }
            Some(c) => self.err(format!("JSON: unexpected '{c}', expected a value")),
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<UNode, ParseError>,
    ) -> Result<UNode, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(too_deep(self.pos()));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn object(&mut self, pos: Pos) -> Result<UNode, ParseError> {
        self.bump();
        let mut out: Vec<(UKey, UNode)> = Vec::new();
        self.skip_ws();
        if self.chars.peek() == Some(&'}') {
            self.bump();
            return Ok(UNode {
                pos,
                value: UValue::Map(out),
            });
        }
        loop {
            self.skip_ws();
            let kpos = self.pos();
            if self.chars.peek() != Some(&'"') {
                return self.err("JSON: expected a double-quoted key");
            }
            let key = self.string()?;
            if let Some((first, _)) = out.iter().find(|(k, _)| k.text == key) {
                return Err(ParseError {
                    message: format!("duplicate key \"{key}\" (first at line {})", first.pos.line),
                    pos: kpos,
                });
            }
            self.skip_ws();
            if self.bump() != Some(':') {
                return self.err(format!("JSON: expected ':' after key \"{key}\""));
            }
            let v = self.value()?;
            out.push((
                UKey {
                    text: key,
                    pos: kpos,
                },
                v,
            ));
            self.skip_ws();
            match self.bump() {
                Some(',') => {}
                Some('}') => {
                    return Ok(UNode {
                        pos,
                        value: UValue::Map(out),
                    });
                }
                _ => return self.err("JSON: expected ',' or '}' in object"),
            }
        }
    }

    fn array(&mut self, pos: Pos) -> Result<UNode, ParseError> {
        self.bump();
        let mut out = Vec::new();
        self.skip_ws();
        if self.chars.peek() == Some(&']') {
            self.bump();
            return Ok(UNode {
                pos,
                value: UValue::Seq(out),
            });
        }
        loop {
            out.push(self.value()?);
            self.skip_ws();
            match self.bump() {
                Some(',') => {}
                Some(']') => {
                    return Ok(UNode {
                        pos,
                        value: UValue::Seq(out),
                    });
                }
                _ => return self.err("JSON: expected ',' or ']' in array"),
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return self.err("JSON: unterminated string"),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('/') => s.push('/'),
                    Some('b') => s.push('\u{8}'),
                    Some('f') => s.push('\u{c}'),
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    Some('u') => {
                        let mut code = 0u32;
                        for _ in 0..4 {
                            let Some(d) = self.bump().and_then(|c| c.to_digit(16)) else {
                                return self.err("JSON: bad \\u escape");
                            };
                            code = code * 16 + d;
                        }
                        s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    _ => return self.err("JSON: bad escape in string"),
                },
                Some(c) if (c as u32) < 0x20 => {
                    return self.err("JSON: control character in string");
                }
                Some(c) => s.push(c),
            }
        }
    }
}
