//! Parsing of `<hello>` and `<rpc-reply>` messages.
//!
//! Replies are parsed with quick-xml (no DTDs, no external entities, no
//! recursion), so hostile input costs at most linear time and gives a
//! [`ReplyError`] naming what is wrong. `<rpc-error>` elements become typed
//! [`RpcError`]s; `<data>` is kept as the raw inner XML for the caller.

use quick_xml::{
    Reader,
    events::{BytesStart, Event},
};

use crate::transport::error::{ErrorInfo, ErrorSeverity, ErrorTag, ErrorType, RpcError};

/// Why a message could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The bytes are not UTF-8.
    #[error("message is not UTF-8 (at byte {offset})")]
    NotUtf8 {
        /// First invalid byte.
        offset: usize,
    },
    /// The XML is malformed.
    #[error("malformed XML at byte {offset}: {reason}")]
    Xml {
        /// Byte offset.
        offset: u64,
        /// The parser's message.
        reason: String,
    },
    /// The top element is not the expected one.
    #[error("expected <{expected}>, found {found}")]
    UnexpectedRoot {
        /// Expected element.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// A required element is missing or invalid.
    #[error("invalid <{element}>: {reason}")]
    Invalid {
        /// The element.
        element: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The server's `<hello>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// `session-id`.
    pub session_id: u32,
    /// Capability URIs as sent.
    pub capabilities: Vec<String>,
}

/// A parsed `<rpc-reply>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcReply {
    /// `message-id` attribute.
    pub message_id: Option<String>,
    /// `<ok/>` was present.
    pub ok: bool,
    /// Raw inner XML of `<data>`, if present.
    pub data: Option<String>,
    /// Every `<rpc-error>`, warnings included.
    pub errors: Vec<RpcError>,
}

impl RpcReply {
    /// Errors of severity `error` (warnings excluded).
    pub fn fatal_errors(&self) -> impl Iterator<Item = &RpcError> {
        self.errors
            .iter()
            .filter(|e| e.severity == ErrorSeverity::Error)
    }
}

fn xml_err(reader: &Reader<&[u8]>, e: &quick_xml::Error) -> ReplyError {
    ReplyError::Xml {
        offset: reader.error_position(),
        reason: e.to_string(),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, ReplyError> {
    std::str::from_utf8(bytes).map_err(|e| ReplyError::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

fn local(e: &BytesStart<'_>) -> String {
    e.local_name().as_ref().to_owned()
}

/// Reads the text content of the element whose start tag was just read,
/// up to its end tag; nested elements contribute their text.
fn read_text(reader: &mut Reader<&[u8]>) -> Result<String, ReplyError> {
    let mut out = String::new();
    let mut depth = 0usize;
    loop {
        match reader.read_event().map_err(|e| xml_err(reader, &e))? {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                if depth == 0 {
                    return Ok(out.trim().to_owned());
                }
                depth -= 1;
            }
            Event::Text(t) => out.push_str(&t.xml10_content()),
            Event::CData(t) => out.push_str(&t.into_inner()),
            Event::GeneralRef(r) => out.push(resolve_ref(reader, &r)?),
            Event::Eof => {
                return Err(ReplyError::Xml {
                    offset: reader.buffer_position(),
                    reason: "unexpected end of message".to_owned(),
                });
            }
            _ => {}
        }
    }
}

fn resolve_ref(
    reader: &Reader<&[u8]>,
    r: &quick_xml::events::BytesRef<'_>,
) -> Result<char, ReplyError> {
    crate::wire::xml::resolve_ref(r).ok_or_else(|| ReplyError::Xml {
        offset: reader.buffer_position(),
        reason: format!("unknown entity &{};", r.as_ref() as &str),
    })
}

/// Moves to the root element, skipping the XML declaration and comments.
fn root<'a>(reader: &mut Reader<&'a [u8]>) -> Result<(BytesStart<'a>, bool), ReplyError> {
    loop {
        match reader.read_event().map_err(|e| xml_err(reader, &e))? {
            Event::Start(e) => return Ok((e, false)),
            Event::Empty(e) => return Ok((e, true)),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Text(t) if t.trim().is_empty() => {}
            Event::Eof => {
                return Err(ReplyError::UnexpectedRoot {
                    expected: "rpc-reply",
                    found: "end of message".to_owned(),
                });
            }
            other => {
                return Err(ReplyError::Xml {
                    offset: reader.buffer_position(),
                    reason: format!("unexpected content before the root element: {other:?}"),
                });
            }
        }
    }
}

/// Parses the server's `<hello>`.
///
/// # Errors
/// [`ReplyError`] when it is not a well-formed hello with a session id.
pub fn parse_hello(msg: &[u8]) -> Result<Hello, ReplyError> {
    let text = utf8(msg)?;
    let mut reader = Reader::from_str(text);
    let (start, empty) = root(&mut reader)?;
    if local(&start) != "hello" {
        return Err(ReplyError::UnexpectedRoot {
            expected: "hello",
            found: format!("<{}>", local(&start)),
        });
    }
    let mut capabilities = Vec::new();
    let mut session_id = None;
    let mut depth = 0usize;
    let mut open = !empty;
    while open {
        match reader.read_event().map_err(|e| xml_err(&reader, &e))? {
            Event::Start(e) => {
                let name = local(&e);
                match (depth, name.as_str()) {
                    (1, "capability") => capabilities.push(read_text(&mut reader)?),
                    (0, "session-id") => {
                        let t = read_text(&mut reader)?;
                        session_id = Some(t.parse::<u32>().map_err(|_| ReplyError::Invalid {
                            element: "session-id",
                            reason: format!("{t:?} is not a 32-bit number"),
                        })?);
                    }
                    _ => depth += 1,
                }
            }
            Event::End(_) => {
                if depth == 0 {
                    open = false;
                } else {
                    depth -= 1;
                }
            }
            Event::Eof => {
                return Err(ReplyError::Xml {
                    offset: reader.buffer_position(),
                    reason: "unexpected end of <hello>".to_owned(),
                });
            }
            _ => {}
        }
    }
    let session_id = session_id.ok_or(ReplyError::Invalid {
        element: "hello",
        reason: "no <session-id>".to_owned(),
    })?;
    if capabilities.is_empty() {
        return Err(ReplyError::Invalid {
            element: "hello",
            reason: "no capabilities".to_owned(),
        });
    }
    Ok(Hello {
        session_id,
        capabilities,
    })
}

/// Parses an `<rpc-reply>`.
///
/// # Errors
/// [`ReplyError`] when the message is not a well-formed rpc-reply.
pub fn parse_reply(msg: &[u8]) -> Result<RpcReply, ReplyError> {
    let text = utf8(msg)?;
    let mut reader = Reader::from_str(text);
    let (start, empty) = root(&mut reader)?;
    if local(&start) != "rpc-reply" {
        return Err(ReplyError::UnexpectedRoot {
            expected: "rpc-reply",
            found: format!("<{}>", local(&start)),
        });
    }
    let mut reply = RpcReply {
        message_id: None,
        ok: false,
        data: None,
        errors: Vec::new(),
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| ReplyError::Xml {
            offset: reader.buffer_position(),
            reason: e.to_string(),
        })?;
        if attr.key.local_name().as_ref() == "message-id" {
            let v = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| xml_err(&reader, &e))?;
            reply.message_id = Some(v.into_owned());
        }
    }
    let mut open = !empty;
    while open {
        match reader.read_event().map_err(|e| xml_err(&reader, &e))? {
            Event::Empty(e) => match local(&e).as_str() {
                "ok" => reply.ok = true,
                "data" => reply.data = Some(String::new()),
                _ => {}
            },
            Event::Start(e) => match local(&e).as_str() {
                "ok" => {
                    reader
                        .read_to_end(e.name())
                        .map_err(|err| xml_err(&reader, &err))?;
                    reply.ok = true;
                }
                "data" => {
                    let span = reader
                        .read_to_end(e.name())
                        .map_err(|err| xml_err(&reader, &err))?;
                    let range = usize::try_from(span.start).unwrap_or(0)
                        ..usize::try_from(span.end).unwrap_or(0);
                    reply.data = Some(text.get(range).unwrap_or_default().trim().to_owned());
                }
                "rpc-error" => reply.errors.push(parse_rpc_error(&mut reader, None)?),
                _ => {
                    reader
                        .read_to_end(e.name())
                        .map_err(|err| xml_err(&reader, &err))?;
                }
            },
            Event::End(_) => open = false,
            Event::Eof => {
                return Err(ReplyError::Xml {
                    offset: reader.buffer_position(),
                    reason: "unexpected end of <rpc-reply>".to_owned(),
                });
            }
            _ => {}
        }
    }
    // Nothing but whitespace and comments may follow the root.
    loop {
        match reader.read_event().map_err(|e| xml_err(&reader, &e))? {
            Event::Eof => break,
            Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if t.trim().is_empty() => {}
            _ => {
                return Err(ReplyError::Xml {
                    offset: reader.buffer_position(),
                    reason: "content after </rpc-reply>".to_owned(),
                });
            }
        }
    }
    Ok(reply)
}

/// Parses a RESTCONF XML error body (`<errors>` of `ietf-restconf`, RFC 8040
/// 7.1); `error-severity` is optional there and defaults to error.
///
/// # Errors
/// [`ReplyError`] when the body is not such a document.
pub fn parse_restconf_errors(msg: &[u8]) -> Result<Vec<RpcError>, ReplyError> {
    let text = utf8(msg)?;
    let mut reader = Reader::from_str(text);
    let (start, empty) = root(&mut reader)?;
    if local(&start) != "errors" {
        return Err(ReplyError::UnexpectedRoot {
            expected: "errors",
            found: format!("<{}>", local(&start)),
        });
    }
    let mut out = Vec::new();
    let mut open = !empty;
    while open {
        match reader.read_event().map_err(|e| xml_err(&reader, &e))? {
            Event::Start(e) if local(&e) == "error" => {
                out.push(parse_rpc_error(&mut reader, Some(ErrorSeverity::Error))?);
            }
            Event::Start(e) => {
                reader
                    .read_to_end(e.name())
                    .map_err(|err| xml_err(&reader, &err))?;
            }
            Event::End(_) => open = false,
            Event::Eof => {
                return Err(ReplyError::Xml {
                    offset: reader.buffer_position(),
                    reason: "unexpected end of <errors>".to_owned(),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

fn parse_rpc_error(
    reader: &mut Reader<&[u8]>,
    default_severity: Option<ErrorSeverity>,
) -> Result<RpcError, ReplyError> {
    let mut error_type = None;
    let mut tag = None;
    let mut severity = None;
    let mut e = RpcError {
        error_type: ErrorType::Other(String::new()),
        tag: ErrorTag::Other(String::new()),
        severity: ErrorSeverity::Error,
        app_tag: None,
        path: None,
        message: None,
        info: Vec::new(),
    };
    loop {
        match reader.read_event().map_err(|err| xml_err(reader, &err))? {
            Event::Start(start) => {
                let name = local(&start);
                if name == "error-info" {
                    e.info.extend(parse_error_info(reader)?);
                    continue;
                }
                let value = read_text(reader)?;
                match name.as_str() {
                    "error-type" => error_type = Some(ErrorType::parse(&value)),
                    "error-tag" => tag = Some(ErrorTag::parse(&value)),
                    "error-severity" => {
                        severity = Some(match value.as_str() {
                            "error" => ErrorSeverity::Error,
                            "warning" => ErrorSeverity::Warning,
                            other => {
                                return Err(ReplyError::Invalid {
                                    element: "error-severity",
                                    reason: format!("{other:?} is neither error nor warning"),
                                });
                            }
                        });
                    }
                    "error-app-tag" => e.app_tag = Some(value),
                    "error-path" => e.path = Some(value),
                    "error-message" => e.message = Some(value),
                    _ => {}
                }
            }
            Event::End(_) => break,
            Event::Eof => {
                return Err(ReplyError::Xml {
                    offset: reader.buffer_position(),
                    reason: "unexpected end of <rpc-error>".to_owned(),
                });
            }
            _ => {}
        }
    }
    e.error_type = error_type.ok_or(ReplyError::Invalid {
        element: "rpc-error",
        reason: "no <error-type>".to_owned(),
    })?;
    e.tag = tag.ok_or(ReplyError::Invalid {
        element: "rpc-error",
        reason: "no <error-tag>".to_owned(),
    })?;
    e.severity = severity.or(default_severity).ok_or(ReplyError::Invalid {
        element: "rpc-error",
        reason: "no <error-severity>".to_owned(),
    })?;
    Ok(e)
}

fn parse_error_info(reader: &mut Reader<&[u8]>) -> Result<Vec<ErrorInfo>, ReplyError> {
    let mut out = Vec::new();
    loop {
        match reader.read_event().map_err(|err| xml_err(reader, &err))? {
            Event::Start(start) => {
                let name = local(&start);
                out.push(ErrorInfo {
                    name,
                    value: read_text(reader)?,
                });
            }
            Event::Empty(start) => out.push(ErrorInfo {
                name: local(&start),
                value: String::new(),
            }),
            Event::End(_) => return Ok(out),
            Event::Eof => {
                return Err(ReplyError::Xml {
                    offset: reader.buffer_position(),
                    reason: "unexpected end of <error-info>".to_owned(),
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_are_typed() {
        let msg = br#"<?xml version="1.0"?>
<rpc-reply message-id="7" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
 <rpc-error>
  <error-type>protocol</error-type>
  <error-tag>lock-denied</error-tag>
  <error-severity>error</error-severity>
  <error-path>/nc:rpc/nc:lock</error-path>
  <error-message xml:lang="en">lock denied &amp; held</error-message>
  <error-info><session-id>4</session-id><bad-element>x</bad-element></error-info>
 </rpc-error>
 <rpc-error><error-type>application</error-type><error-tag>x-vendor</error-tag><error-severity>warning</error-severity></rpc-error>
</rpc-reply>"#;
        let r = parse_reply(msg).unwrap();
        assert_eq!(r.message_id.as_deref(), Some("7"));
        assert_eq!(r.errors.len(), 2);
        let e = &r.errors[0];
        assert_eq!(e.tag, ErrorTag::LockDenied);
        assert_eq!(e.error_type, ErrorType::Protocol);
        assert_eq!(e.message.as_deref(), Some("lock denied & held"));
        assert_eq!(e.path.as_deref(), Some("/nc:rpc/nc:lock"));
        assert_eq!(e.info("session-id"), Some("4"));
        assert_eq!(r.errors[1].tag, ErrorTag::Other("x-vendor".to_owned()));
        assert_eq!(r.fatal_errors().count(), 1);
    }

    #[test]
    fn data_is_kept_raw() {
        let r = parse_reply(b"<nc:rpc-reply xmlns:nc='urn:ietf:params:xml:ns:netconf:base:1.0' message-id='1'><nc:data><native xmlns='x'><a>1</a></native></nc:data></nc:rpc-reply>").unwrap();
        assert_eq!(
            r.data.as_deref(),
            Some("<native xmlns='x'><a>1</a></native>")
        );
        let r = parse_reply(b"<rpc-reply message-id='2'><ok/></rpc-reply>").unwrap();
        assert!(r.ok);
    }

    #[test]
    fn hostile_replies_fail_cleanly() {
        for (msg, needle) in [
            (&b"<rpc-reply><data><a></b></data></rpc-reply>"[..], "malformed"),
            (b"<rpc-reply><ok/>", "unexpected end"),
            (b"<hello/>", "expected <rpc-reply>"),
            (b"\xff\xfe", "not UTF-8"),
            (b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><rpc-reply><rpc-error><error-type>rpc</error-type><error-tag>&a;</error-tag><error-severity>error</error-severity></rpc-error></rpc-reply>", "unknown entity"),
            (b"<rpc-reply><rpc-error><error-tag>x</error-tag></rpc-error></rpc-reply>", "no <error-type>"),
            (b"<rpc-reply/><extra/>", "after </rpc-reply>"),
            (b"", "end of message"),
        ] {
            let err = parse_reply(msg).unwrap_err();
            assert!(err.to_string().contains(needle), "{:?}: {err}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn hello_needs_session_and_capabilities() {
        let h = parse_hello(b"<hello xmlns='urn:ietf:params:xml:ns:netconf:base:1.0'><capabilities><capability>urn:ietf:params:netconf:base:1.1</capability></capabilities><session-id>12</session-id></hello>").unwrap();
        assert_eq!(h.session_id, 12);
        assert_eq!(h.capabilities, ["urn:ietf:params:netconf:base:1.1"]);
        assert!(parse_hello(b"<hello><capabilities/></hello>").is_err());
        assert!(parse_hello(b"<hello><session-id>-1</session-id></hello>").is_err());
    }
}
