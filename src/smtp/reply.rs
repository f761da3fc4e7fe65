//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463), and a
//! resumable parser that takes bytes as they arrive and yields whole replies.
//!
//! The parser does no I/O: [`ReplyParser::feed`] appends bytes,
//! [`ReplyParser::next_reply`] returns a reply or "need more". Bytes after a
//! complete reply stay buffered for the next call, which is what pipelining
//! (RFC 2920) needs and what the STARTTLS injection check inspects.

use std::fmt;

/// Longest reply line accepted, without its line end. RFC 5321 §4.5.3.1.5
/// allows 512 octets; real servers exceed that a little, so be lenient but
/// bounded.
pub const MAX_LINE: usize = 2048;

/// Most lines accepted in one multi-line reply (an EHLO reply has ~20).
pub const MAX_LINES: usize = 1000;

/// Most bytes accepted in one reply, all its lines together. A hostile
/// server sending an endless multi-line reply is cut off here, so the
/// memory one reply can take stays small.
pub const MAX_REPLY: usize = 64 * 1024;

/// An RFC 3463 enhanced status code such as `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient) or 5 (permanent).
    pub class: u8,
    /// The subject (1 = addressing, 7 = security, ...).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete server reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code of the first line that carries one.
    pub enhanced: Option<EnhancedCode>,
    /// Text of each line after the `250-`/`250 ` prefix, with a leading
    /// enhanced code stripped where present; non-UTF-8 replaced lossily.
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply, mainly for tests and synthesized outcomes.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server waits for more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: a transient failure; trying again later may work.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: a permanent failure; do not retry unchanged.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The lines' texts joined by one space; empty lines (a bare `250-`)
    /// add nothing, so the text never starts or ends with a space.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in self.lines.iter().map(|l| l.trim()) {
            if line.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(line);
        }
        out
    }
}

impl fmt::Display for Reply {
    /// One line, `550 5.1.1 text...`, with control characters escaped so a
    /// hostile server cannot write to the user's terminal or break a report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {}", escape(text.as_bytes()))?;
        }
        Ok(())
    }
}

/// The server sent something that is not an SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn with_excerpt(what: &str, bytes: &[u8]) -> Self {
        const EXCERPT: usize = 40;
        let cut = &bytes[..bytes.len().min(EXCERPT)];
        let more = if bytes.len() > EXCERPT { "..." } else { "" };
        ProtocolError(format!(
            "malformed SMTP reply: {what}: \"{}{more}\"",
            escape(cut)
        ))
    }
}

/// Makes server bytes safe to show on a terminal: printable text stays,
/// ASCII control bytes and invalid UTF-8 become `\xNN`, Unicode control and
/// bidirectional-override characters become `\u{NNNN}`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii_control() {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else if c.is_control() || is_bidi_or_invisible(c) {
                out.push_str(&format!("\\u{{{:04x}}}", c as u32));
            } else if c == '\\' {
                // Escape the escape so `\x0a` in the text cannot pose as a byte.
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Characters that can reorder or hide terminal text (Trojan Source class).
fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A resumable reply parser: feed bytes in any chunking, take replies out.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Start of the reply being assembled; everything before it is consumed.
    start: usize,
    /// Start of the next line not yet examined.
    pos: usize,
    /// Lines (ranges into `buf`, without line end) of the reply being assembled.
    pending: Vec<(usize, usize)>,
    /// Once the stream is malformed it stays so: the session must end.
    failed: Option<ProtocolError>,
}

/// What a reply line starts with.
struct LineHead {
    code: u16,
    last: bool,
    /// Offset of the text within the line.
    text_at: usize,
}

impl ReplyParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && (self.start == self.buf.len() || self.start >= 8192) {
            // Compact so a long session does not grow the buffer forever.
            let shift = self.start;
            self.buf.drain(..shift);
            self.pos -= shift;
            self.start = 0;
            for r in &mut self.pending {
                r.0 -= shift;
                r.1 -= shift;
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as part of a reply.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ProtocolError> {
        self.next_inner(false).map(|o| o.map(|(r, _)| r))
    }

    /// Like [`next_reply`](Self::next_reply), also returning each raw line
    /// (code included) escaped with [`escape`], for a protocol trace.
    pub fn next_reply_traced(&mut self) -> Result<Option<(Reply, Vec<String>)>, ProtocolError> {
        self.next_inner(true)
    }

    fn next_inner(&mut self, raw: bool) -> Result<Option<(Reply, Vec<String>)>, ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.parse() {
            Ok(Some(())) => {
                let reply = self.build();
                let raw_lines = if raw {
                    self.pending
                        .iter()
                        .map(|&(a, b)| escape(&self.buf[a..b]))
                        .collect()
                } else {
                    Vec::new()
                };
                self.pending.clear();
                self.start = self.pos;
                Ok(Some((reply, raw_lines)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Advances over complete lines; `Some` when `pending` holds a whole reply.
    fn parse(&mut self) -> Result<Option<()>, ProtocolError> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                // +1: the CR of a CRLF may already be here.
                if rest.len() > MAX_LINE + 1 {
                    return Err(ProtocolError::with_excerpt("line too long", rest));
                }
                return Ok(None);
            };
            let begin = self.pos;
            let mut end = begin + nl;
            self.pos = end + 1;
            if end > begin && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            let line = &self.buf[begin..end];
            if line.len() > MAX_LINE {
                return Err(ProtocolError::with_excerpt("line too long", line));
            }
            let head = parse_head(line)
                .ok_or_else(|| ProtocolError::with_excerpt("expected a 3-digit code", line))?;
            if let Some(&(a, _)) = self.pending.first() {
                if parse_head(&self.buf[a..a + 3]).map(|h| h.code) != Some(head.code) {
                    return Err(ProtocolError::with_excerpt(
                        "reply code changed inside a multi-line reply",
                        line,
                    ));
                }
            }
            self.pending.push((begin, end));
            let size = self.pos - self.pending[0].0;
            if size > MAX_REPLY {
                return Err(ProtocolError(format!(
                    "malformed SMTP reply: longer than {} KiB",
                    MAX_REPLY / 1024
                )));
            }
            if self.pending.len() > MAX_LINES {
                return Err(ProtocolError(format!(
                    "malformed SMTP reply: more than {MAX_LINES} lines"
                )));
            }
            if head.last {
                return Ok(Some(()));
            }
        }
    }

    fn build(&self) -> Reply {
        let mut code = 0;
        let mut enhanced = None;
        let mut lines = Vec::with_capacity(self.pending.len());
        for &(a, b) in &self.pending {
            let line = &self.buf[a..b];
            let Some(head) = parse_head(line) else {
                continue; // unreachable: every pending line was checked
            };
            code = head.code;
            let mut text = &line[head.text_at..];
            if let Some((e, len)) = parse_enhanced(text, code) {
                enhanced.get_or_insert(e);
                text = &text[len..];
            }
            lines.push(String::from_utf8_lossy(text).into_owned());
        }
        Reply {
            code,
            enhanced,
            lines,
        }
    }
}

/// `ddd` followed by space, `-` or the end of the line.
fn parse_head(line: &[u8]) -> Option<LineHead> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = line[..3]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some(LineHead {
            code,
            last: true,
            text_at: 3,
        }),
        Some(b' ') => Some(LineHead {
            code,
            last: true,
            text_at: 4,
        }),
        Some(b'-') => Some(LineHead {
            code,
            last: false,
            text_at: 4,
        }),
        Some(_) => None,
    }
}

/// A leading `c.sss.ddd` whose class matches the reply code's (RFC 3463 §2,
/// RFC 2034 §4), and the length to strip including following spaces.
fn parse_enhanced(text: &[u8], code: u16) -> Option<(EnhancedCode, usize)> {
    let class = *text.first()?;
    if !matches!(class, b'2' | b'4' | b'5') || u16::from(class - b'0') != code / 100 {
        return None;
    }
    if text.get(1) != Some(&b'.') {
        return None;
    }
    let (subject, n1) = digits(&text[2..])?;
    let at = 2 + n1;
    if text.get(at) != Some(&b'.') {
        return None;
    }
    let (detail, n2) = digits(&text[at + 1..])?;
    let mut end = at + 1 + n2;
    match text.get(end) {
        None | Some(b' ') | Some(b'\t') => {}
        Some(_) => return None,
    }
    while matches!(text.get(end), Some(b' ') | Some(b'\t')) {
        end += 1;
    }
    Some((
        EnhancedCode {
            class: class - b'0',
            subject,
            detail,
        },
        end,
    ))
}

/// 1 to 3 ASCII digits.
fn digits(s: &[u8]) -> Option<(u16, usize)> {
    let n = s.iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 3 {
        return None;
    }
    let v = s[..n]
        .iter()
        .fold(0u16, |v, &d| v * 10 + u16::from(d - b'0'));
    Some((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8], chunk: usize) -> Result<Vec<Reply>, ProtocolError> {
        let mut p = ReplyParser::new();
        let mut out = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            p.feed(c);
            while let Some(r) = p.next_reply()? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn one(bytes: &[u8]) -> Reply {
        let v = parse_all(bytes, bytes.len()).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().unwrap()
    }

    const CONVERSATION: &[u8] = b"220 mx.example.com ESMTP ready\r\n\
        250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n\
        250 2.1.0 Ok\r\n\
        550 5.1.1 <nobody@example.com>: Recipient address rejected\r\n\
        452-4.5.3 Too many\n452 4.5.3 recipients\n\
        354 End data with <CR><LF>.<CR><LF>\r\n\
        250\r\n\
        221 2.0.0 Bye\r\n";

    fn expected_conversation() -> Vec<Reply> {
        let e = |class, subject, detail| {
            Some(EnhancedCode {
                class,
                subject,
                detail,
            })
        };
        vec![
            Reply {
                code: 220,
                enhanced: None,
                lines: vec!["mx.example.com ESMTP ready".into()],
            },
            Reply {
                code: 250,
                enhanced: None,
                lines: vec![
                    "mx.example.com Hello".into(),
                    "PIPELINING".into(),
                    "SIZE 10240000".into(),
                    "CHUNKING".into(),
                ],
            },
            Reply {
                code: 250,
                enhanced: e(2, 1, 0),
                lines: vec!["Ok".into()],
            },
            Reply {
                code: 550,
                enhanced: e(5, 1, 1),
                lines: vec!["<nobody@example.com>: Recipient address rejected".into()],
            },
            Reply {
                code: 452,
                enhanced: e(4, 5, 3),
                lines: vec!["Too many".into(), "recipients".into()],
            },
            Reply {
                code: 354,
                enhanced: None,
                lines: vec!["End data with <CR><LF>.<CR><LF>".into()],
            },
            Reply {
                code: 250,
                enhanced: None,
                lines: vec!["".into()],
            },
            Reply {
                code: 221,
                enhanced: e(2, 0, 0),
                lines: vec!["Bye".into()],
            },
        ]
    }

    #[test]
    fn conversation_in_one_feed() {
        assert_eq!(
            parse_all(CONVERSATION, CONVERSATION.len()).unwrap(),
            expected_conversation()
        );
    }

    #[test]
    fn conversation_in_every_small_chunking() {
        for chunk in [1, 2, 3, 5, 7, 10, 13, 64] {
            assert_eq!(
                parse_all(CONVERSATION, chunk).unwrap(),
                expected_conversation(),
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn need_more_until_the_last_line_ends() {
        let mut p = ReplyParser::new();
        p.feed(b"250-first\r\n250 sec");
        assert_eq!(p.next_reply().unwrap(), None);
        assert_eq!(p.buffered_len(), 18);
        p.feed(b"ond\r");
        assert_eq!(p.next_reply().unwrap(), None);
        p.feed(b"\n354 go\r\n");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!(r.lines, vec!["first", "second"]);
        assert_eq!(p.buffered_len(), 8, "the 354 stays buffered");
        assert_eq!(p.next_reply().unwrap().unwrap().code, 354);
        assert_eq!(p.buffered_len(), 0);
        assert_eq!(p.next_reply().unwrap(), None);
    }

    #[test]
    fn classes_text_and_display() {
        let r = one(b"550-5.1.1 no such\r\n550 5.1.1 user\r\n");
        assert!(r.is_permanent() && !r.is_transient() && !r.is_positive());
        assert_eq!(r.text(), "no such user");
        assert_eq!(r.to_string(), "550 5.1.1 no such user");
        assert!(one(b"451 try later\r\n").is_transient());
        assert!(one(b"354 go\r\n").is_intermediate());
        assert!(one(b"235 ok\r\n").is_positive());
        assert_eq!(one(b"250\r\n").to_string(), "250");
        assert_eq!(
            EnhancedCode {
                class: 4,
                subject: 7,
                detail: 12
            }
            .to_string(),
            "4.7.12"
        );
    }

    #[test]
    fn enhanced_code_needs_matching_class_and_shape() {
        // Class differs from the reply code: left as text.
        let r = one(b"250 5.1.1 odd\r\n");
        assert_eq!((r.enhanced, r.text().as_str()), (None, "5.1.1 odd"));
        // Version-like text is not an enhanced code.
        let r = one(b"220 2.0.0.1 server\r\n");
        assert_eq!((r.enhanced, r.text().as_str()), (None, "2.0.0.1 server"));
        let r = one(b"250 2.1234.0 x\r\n");
        assert_eq!(r.enhanced, None);
        let r = one(b"250 2.0.0\r\n");
        assert_eq!(r.enhanced.unwrap().to_string(), "2.0.0");
        assert_eq!(r.text(), "");
    }

    #[test]
    fn display_escapes_control_characters() {
        let r = one(b"550 bad\x1b[31m red\x07 \xff end\r\n");
        assert_eq!(r.to_string(), "550 bad\\x1b[31m red\\x07 \u{fffd} end");
    }

    #[test]
    fn escape_covers_controls_invalid_utf8_and_bidi() {
        assert_eq!(escape(b"a\tb\x00c\x7f"), "a\\x09b\\x00c\\x7f");
        assert_eq!(escape(b"\xc3\x28"), "\\xc3(");
        assert_eq!(
            escape("x\u{202e}y\u{85}".as_bytes()),
            "x\\u{202e}y\\u{0085}"
        );
        assert_eq!(escape("中文 ok".as_bytes()), "中文 ok");
        assert_eq!(escape(b"a\\x41"), "a\\\\x41");
    }

    #[test]
    fn traced_lines_are_raw_and_escaped() {
        let mut p = ReplyParser::new();
        p.feed(b"250-2.0.0 a\x01\r\n250 2.0.0 b\r\n");
        let (r, raw) = p.next_reply_traced().unwrap().unwrap();
        assert_eq!(r.lines, vec!["a\x01", "b"]);
        assert_eq!(raw, vec!["250-2.0.0 a\\x01", "250 2.0.0 b"]);
    }

    #[test]
    fn non_utf8_is_replaced_not_an_error() {
        let r = one(b"550 \xb2\xbb\xb4\xe6\xd4\xda\r\n");
        assert_eq!(r.text(), "\u{fffd}".repeat(6));
    }

    fn err_of(bytes: &[u8]) -> String {
        let mut p = ReplyParser::new();
        p.feed(bytes);
        loop {
            match p.next_reply() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error for {bytes:?}"),
                Err(e) => return e.to_string(),
            }
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(err_of(b"25 short\r\n").contains("3-digit"));
        assert!(err_of(b"abc hello\r\n").contains("\"abc hello\""));
        assert!(err_of(b"250xtext\r\n").contains("3-digit"));
        assert!(err_of(b"\r\n").contains("3-digit"));
        assert!(err_of(b"250-a\r\n550 b\r\n").contains("code changed"));
        // Errors are sticky: the stream cannot be trusted after one.
        let mut p = ReplyParser::new();
        p.feed(b"xyz\r\n250 ok\r\n");
        assert!(p.next_reply().is_err());
        assert!(p.next_reply().is_err());
    }

    #[test]
    fn excerpt_is_escaped_and_short() {
        let mut bad = b"\x1b]0;pwned\x07".to_vec();
        bad.extend(std::iter::repeat_n(b'z', 100));
        bad.extend(b"\r\n");
        let e = err_of(&bad);
        assert!(e.contains("\\x1b]0;pwned\\x07zzz"), "{e}");
        assert!(e.ends_with("...\""), "{e}");
        assert!(e.len() < 150, "{e}");
    }

    #[test]
    fn over_long_line_is_an_error_with_or_without_line_end() {
        let mut line = b"250 ".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_LINE));
        let mut p = ReplyParser::new();
        p.feed(&line);
        assert!(p.next_reply().unwrap_err().to_string().contains("too long"));
        line.extend(b"\r\n");
        assert!(err_of(&line).contains("too long"));
        // Exactly the limit is fine.
        let mut ok = b"250 ".to_vec();
        ok.extend(std::iter::repeat_n(b'a', MAX_LINE - 4));
        ok.extend(b"\r\n");
        assert_eq!(one(&ok).lines[0].len(), MAX_LINE - 4);
    }

    #[test]
    fn multi_line_text_has_no_leading_or_doubled_space() {
        let r = one(b"550-\r\n550-5.1.1 no such user\r\n550 5.1.1 try again\r\n");
        assert_eq!(r.text(), "no such user try again");
        assert_eq!(r.to_string(), "550 5.1.1 no such user try again");
        let r = one(b"451-4.3.0 \r\n451 4.3.0 later\r\n");
        assert_eq!(r.to_string(), "451 4.3.0 later");
    }

    #[test]
    fn a_reply_larger_than_the_limit_is_an_error_in_bounded_memory() {
        // Lines within MAX_LINE, fewer than MAX_LINES, but too many bytes in all.
        let line = format!("250-{}\r\n", "y".repeat(1000));
        let mut p = ReplyParser::new();
        let mut fed = 0;
        let err = loop {
            p.feed(line.as_bytes());
            fed += line.len();
            match p.next_reply() {
                Ok(None) => assert!(fed < 2 * MAX_REPLY, "no error after {fed} bytes"),
                Ok(Some(r)) => panic!("a reply came out: {}", r.code),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("longer than"), "{err}");
        assert!(fed <= MAX_REPLY + line.len());
    }

    #[test]
    fn too_many_lines_is_an_error() {
        let mut many = b"250-x\r\n".repeat(MAX_LINES);
        many.extend(b"250 last\r\n");
        assert!(err_of(&many).contains("more than 1000 lines"));
        let mut fine = b"250-x\r\n".repeat(MAX_LINES - 1);
        fine.extend(b"250 last\r\n");
        assert_eq!(one(&fine).lines.len(), MAX_LINES);
    }

    #[test]
    fn buffer_is_compacted_but_nothing_lost() {
        let mut p = ReplyParser::new();
        let mut n = 0;
        for i in 0..5000 {
            p.feed(format!("250-line {i}\r\n250 end {i}\r\n").as_bytes());
            while let Some(r) = p.next_reply().unwrap() {
                assert_eq!(r.lines, vec![format!("line {n}"), format!("end {n}")]);
                n += 1;
            }
        }
        assert_eq!(n, 5000);
        assert!(p.buf.len() < 20_000, "buffer kept {} bytes", p.buf.len());
    }

    fn reply_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            200u16..600,
            proptest::collection::vec("[ -~]{0,30}", 1..4),
            any::<bool>(),
        )
            .prop_map(|(code, lines, lf)| {
                let end = if lf { "\n" } else { "\r\n" };
                let n = lines.len();
                let mut s = String::new();
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i + 1 == n { ' ' } else { '-' };
                    s.push_str(&format!("{code}{sep}{l}{end}"));
                }
                s.into_bytes()
            })
    }

    proptest! {
        #[test]
        fn any_split_gives_identical_replies(
            replies in proptest::collection::vec(reply_strategy(), 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let all: Vec<u8> = replies.concat();
            let whole = parse_all(&all, all.len()).unwrap();
            prop_assert_eq!(whole.len(), replies.len());
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(all.len() + 1)).collect();
            points.sort_unstable();
            let mut p = ReplyParser::new();
            let mut got = Vec::new();
            let mut prev = 0;
            for at in points.into_iter().chain([all.len()]) {
                p.feed(&all[prev..at]);
                prev = at;
                while let Some(r) = p.next_reply().unwrap() {
                    got.push(r);
                }
            }
            prop_assert_eq!(got, whole);
            prop_assert_eq!(p.buffered_len(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            chunk in 1usize..50,
        ) {
            let mut p = ReplyParser::new();
            for c in data.chunks(chunk) {
                p.feed(c);
                while let Ok(Some(r)) = p.next_reply() {
                    prop_assert!(!r.to_string().contains('\n'));
                }
            }
        }

        #[test]
        fn arbitrary_reply_like_lines_never_panic(
            lines in proptest::collection::vec("[0-9]{3}[ -]?[0-9. a-z\\x00-\\x1f]{0,12}", 0..20),
        ) {
            let joined = lines.join("\r\n");
            let _ = parse_all(joined.as_bytes(), 3);
        }
    }
}
