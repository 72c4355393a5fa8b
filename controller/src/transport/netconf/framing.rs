//! NETCONF message framing over SSH (RFC 6242): end-of-message (`]]>]]>`,
//! base:1.0) and chunked (base:1.1).
//!
//! The decoder is a pure state machine fed with whatever bytes the channel
//! produced; it never blocks and never buffers more than the configured
//! message limit, so a hostile or broken peer gets a precise error instead of
//! exhausting memory or hanging the reader.

/// The end-of-message marker of base:1.0.
pub const EOM: &[u8] = b"]]>]]>";

/// Largest chunk size RFC 6242 allows.
const MAX_CHUNK: u64 = 4_294_967_295;

/// Which framing a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// base:1.0: messages end with `]]>]]>` (always used for `<hello>`).
    EndOfMessage,
    /// base:1.1: `\n#<size>\n<data>` chunks, ended by `\n##\n`.
    Chunked,
}

/// Why the byte stream is not valid framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A message exceeds the configured limit.
    #[error("message exceeds the {limit}-byte limit")]
    TooBig {
        /// The limit.
        limit: usize,
    },
    /// A chunk header is malformed.
    #[error("bad chunk header at byte {offset} of the message: {reason}")]
    BadChunkHeader {
        /// Offset in the current message's framed bytes.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting `\n#`, then digits or `#`.
    Header,
    /// Inside a chunk with this many bytes left.
    Data(u64),
}

/// Incremental frame decoder.
#[derive(Debug)]
pub struct FrameDecoder {
    framing: Framing,
    limit: usize,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
    /// End-of-message: where to resume searching for the marker.
    scan: usize,
    chunk: ChunkState,
    /// Chunked: the message assembled so far.
    msg: Vec<u8>,
    /// Framed bytes consumed for the current message (for error offsets).
    framed: usize,
}

impl FrameDecoder {
    /// A decoder for `framing` that refuses messages over `limit` bytes.
    #[must_use]
    pub fn new(framing: Framing, limit: usize) -> FrameDecoder {
        FrameDecoder {
            framing,
            limit,
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            chunk: ChunkState::Header,
            msg: Vec::new(),
            framed: 0,
        }
    }

    /// Switches framing (after the hello exchange); buffered bytes are kept.
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
        self.scan = self.pos;
        self.chunk = ChunkState::Header;
    }

    /// The framing in use.
    #[must_use]
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether part of a message has been received.
    #[must_use]
    pub fn has_partial(&self) -> bool {
        self.pos < self.buf.len() || !self.msg.is_empty() || self.chunk != ChunkState::Header
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.scan = 0;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if one is buffered.
    ///
    /// # Errors
    /// [`FramingError`] when the stream is malformed or a message is too big;
    /// the decoder should then be dropped with its session.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let out = match self.framing {
            Framing::EndOfMessage => self.next_eom()?,
            Framing::Chunked => self.next_chunked()?,
        };
        // Compact once the consumed prefix dominates the buffer.
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.scan -= self.pos.min(self.scan);
            self.pos = 0;
        }
        Ok(out)
    }

    fn next_eom(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let from = self.scan.max(self.pos);
        let hay = &self.buf[from..];
        if let Some(i) = find(hay, EOM) {
            let end = from + i;
            let msg = self.buf[self.pos..end].to_vec();
            self.pos = end + EOM.len();
            self.scan = self.pos;
            if msg.len() > self.limit {
                return Err(FramingError::TooBig { limit: self.limit });
            }
            return Ok(Some(msg));
        }
        // The marker may straddle the next read: rescan its length.
        self.scan = self.buf.len().saturating_sub(EOM.len() - 1).max(self.pos);
        if self.buf.len() - self.pos > self.limit + EOM.len() {
            return Err(FramingError::TooBig { limit: self.limit });
        }
        Ok(None)
    }

    fn next_chunked(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        loop {
            match self.chunk {
                ChunkState::Data(left) => {
                    let avail = self.buf.len() - self.pos;
                    if avail == 0 {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(avail);
                    self.msg
                        .extend_from_slice(&self.buf[self.pos..self.pos + take]);
                    self.pos += take;
                    self.framed += take;
                    let left = left - take as u64;
                    self.chunk = if left == 0 {
                        ChunkState::Header
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::Header => {
                    let rest = &self.buf[self.pos..];
                    let bad = |offset: usize, reason: &str| FramingError::BadChunkHeader {
                        offset,
                        reason: reason.to_owned(),
                    };
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    if rest[0] != b'\n' {
                        return Err(bad(
                            self.framed,
                            &format!("expected LF, found {}", show(rest[0])),
                        ));
                    }
                    if rest.len() < 2 {
                        return Ok(None);
                    }
                    if rest[1] != b'#' {
                        return Err(bad(
                            self.framed + 1,
                            &format!("expected '#', found {}", show(rest[1])),
                        ));
                    }
                    if rest.len() < 3 {
                        return Ok(None);
                    }
                    if rest[2] == b'#' {
                        // End of chunks: `\n##\n`.
                        if rest.len() < 4 {
                            return Ok(None);
                        }
                        if rest[3] != b'\n' {
                            return Err(bad(
                                self.framed + 3,
                                &format!("expected LF after '##', found {}", show(rest[3])),
                            ));
                        }
                        if self.msg.is_empty() {
                            return Err(bad(self.framed, "end-of-chunks marker before any chunk"));
                        }
                        self.pos += 4;
                        self.framed = 0;
                        return Ok(Some(std::mem::take(&mut self.msg)));
                    }
                    // `\n#<1-10 digits>\n`, no leading zero, 1..=4294967295.
                    let digits = &rest[2..];
                    let n = digits
                        .iter()
                        .take(11)
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    if n == 0 {
                        return Err(bad(
                            self.framed + 2,
                            &format!("expected chunk size, found {}", show(digits[0])),
                        ));
                    }
                    if n > 10 {
                        return Err(bad(self.framed + 2, "chunk size has more than 10 digits"));
                    }
                    if digits.len() == n {
                        return Ok(None);
                    }
                    if digits[n] != b'\n' {
                        return Err(bad(
                            self.framed + 2 + n,
                            &format!("expected LF after chunk size, found {}", show(digits[n])),
                        ));
                    }
                    if digits[0] == b'0' {
                        return Err(bad(self.framed + 2, "chunk size starts with 0"));
                    }
                    let size: u64 = std::str::from_utf8(&digits[..n])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad(self.framed + 2, "unparsable chunk size"))?;
                    if size > MAX_CHUNK {
                        return Err(bad(
                            self.framed + 2,
                            &format!("chunk size {size} exceeds {MAX_CHUNK}"),
                        ));
                    }
                    if self.msg.len() as u64 + size > self.limit as u64 {
                        return Err(FramingError::TooBig { limit: self.limit });
                    }
                    self.pos += 3 + n;
                    self.framed += 3 + n;
                    self.chunk = ChunkState::Data(size);
                }
            }
        }
    }
}

/// Frames `body` for sending.
#[must_use]
pub fn encode(framing: Framing, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    match framing {
        Framing::EndOfMessage => {
            out.extend_from_slice(body);
            out.extend_from_slice(EOM);
        }
        Framing::Chunked => {
            out.extend_from_slice(format!("\n#{}\n", body.len()).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\n##\n");
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn show(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut FrameDecoder) -> Result<Vec<Vec<u8>>, FramingError> {
        let mut out = Vec::new();
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn eom_messages_split_across_reads() {
        let mut d = FrameDecoder::new(Framing::EndOfMessage, 1024);
        let stream = b"<a/>]]>]]><b/>]]>]]>";
        let mut got = Vec::new();
        for byte in stream {
            d.push(&[*byte]);
            got.extend(drain(&mut d).unwrap());
        }
        assert_eq!(got, vec![b"<a/>".to_vec(), b"<b/>".to_vec()]);
        assert!(!d.has_partial());
    }

    #[test]
    fn chunked_round_trip_byte_by_byte() {
        let mut stream = encode(Framing::Chunked, b"<rpc-reply/>");
        stream.extend_from_slice(b"\n#3\nabc\n#2\nde\n##\n");
        let mut d = FrameDecoder::new(Framing::Chunked, 1024);
        let mut got = Vec::new();
        for byte in &stream {
            d.push(&[*byte]);
            got.extend(drain(&mut d).unwrap());
        }
        assert_eq!(got, vec![b"<rpc-reply/>".to_vec(), b"abcde".to_vec()]);
    }

    #[test]
    fn bad_chunk_headers_are_named() {
        for (input, needle) in [
            (&b"\n#0\nx\n##\n"[..], "starts with 0"),
            (b"\n#abc\n", "expected chunk size"),
            (b"x", "expected LF"),
            (b"\n#12345678901\n", "more than 10 digits"),
            (b"\n#9999999999\n", "exceeds"),
            (b"\n##\n", "before any chunk"),
            (b"\n#3x", "after chunk size"),
        ] {
            let mut d = FrameDecoder::new(Framing::Chunked, usize::MAX);
            d.push(input);
            let err = drain(&mut d).unwrap_err();
            assert!(err.to_string().contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn limits_hold_for_both_framings() {
        let mut d = FrameDecoder::new(Framing::Chunked, 8);
        d.push(b"\n#9\n");
        assert_eq!(drain(&mut d), Err(FramingError::TooBig { limit: 8 }));
        let mut d = FrameDecoder::new(Framing::EndOfMessage, 8);
        d.push(&[b'x'; 64]);
        assert_eq!(drain(&mut d), Err(FramingError::TooBig { limit: 8 }));
    }
}
