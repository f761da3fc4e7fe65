//! POP3 server responses (RFC 1939 §3) and a resumable, bounded parser.
//!
//! A response is a status line, `+OK text` or `-ERR text`; after some
//! commands a positive status line is followed by a multi-line body ending
//! in a line of a single `.`, where lines beginning with `.` are
//! byte-stuffed (RFC 1939 §3). During SASL (RFC 5034 §4) the server may
//! also send a continuation, `+ base64`. POP3 responses do not say which
//! shape they have: the client names the [`Expect`]ed shape, which is why
//! [`ResponseParser::next_response`] takes it.
//!
//! The parser does no I/O: [`ResponseParser::feed`] appends bytes in any
//! chunking, `next_response` returns a whole response or "need more".
//! Status lines are bounded by [`MAX_STATUS_LINE`], body lines by
//! [`MAX_BODY_LINE`], bodies by the limit given to [`ResponseParser::new`].

use std::fmt;

/// Longest status line accepted, without its line end. RFC 2449 §4 allows
/// 512 octets including CRLF; be lenient but bounded.
pub const MAX_STATUS_LINE: usize = 2048;

/// Longest body line accepted, without its line end. RFC 5322 §2.1.1 caps
/// message lines at 998 octets; real mail exceeds that, so allow far more.
pub const MAX_BODY_LINE: usize = 64 * 1024;

/// The shape of response the client waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A status line only (greeting, USER, PASS, STAT, DELE, QUIT, ...).
    Single,
    /// A status line, then a dot-terminated body when it is `+OK`
    /// (CAPA, LIST, UIDL, TOP, RETR without argument).
    Multi,
    /// During SASL: a `+ ` continuation or a final status line.
    Sasl,
}

/// One complete server response.
#[derive(Clone, PartialEq, Eq)]
pub enum Response {
    /// `+OK text`, with the unstuffed body (CRLF line ends) of a multi-line
    /// response.
    Ok {
        /// The text after `+OK `.
        text: String,
        /// The body, for [`Expect::Multi`].
        body: Option<Vec<u8>>,
    },
    /// `-ERR text`.
    Err(String),
    /// `+ data`: a SASL challenge (RFC 5034 §4), its base64 text.
    Continue(String),
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Ok { text, body } => f
                .debug_struct("Ok")
                .field("text", text)
                .field("body", &body.as_ref().map(|b| String::from_utf8_lossy(b)))
                .finish(),
            Response::Err(t) => f.debug_tuple("Err").field(t).finish(),
            Response::Continue(t) => f.debug_tuple("Continue").field(t).finish(),
        }
    }
}

/// The server's bytes are not a POP3 response, or exceed a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn with_excerpt(what: &str, bytes: &[u8]) -> Self {
        const EXCERPT: usize = 40;
        let cut = &bytes[..bytes.len().min(EXCERPT)];
        let more = if bytes.len() > EXCERPT { "..." } else { "" };
        ProtocolError(format!(
            "malformed POP3 response: {what}: \"{}{more}\"",
            crate::smtp::reply::escape(cut)
        ))
    }
}

/// A resumable response parser: feed bytes in any chunking, take responses out.
#[derive(Debug)]
pub struct ResponseParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
    /// The status line of a multi-line response whose body is being read.
    status: Option<String>,
    /// The body read so far, unstuffed.
    body: Vec<u8>,
    /// Most body octets accepted in one response.
    max_body: usize,
    /// Once the stream is malformed it stays so: the session must end.
    failed: Option<ProtocolError>,
}

impl ResponseParser {
    /// An empty parser accepting multi-line bodies up to `max_body` octets.
    pub fn new(max_body: usize) -> Self {
        ResponseParser {
            buf: Vec::new(),
            pos: 0,
            status: None,
            body: Vec::new(),
            max_body,
            failed: None,
        }
    }

    /// Appends bytes received from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 8192) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as part of a response (what the
    /// STLS injection check inspects).
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete response of the `expect`ed shape, `Ok(None)` if
    /// more bytes are needed. Call with the same `expect` until it answers.
    pub fn next_response(&mut self, expect: Expect) -> Result<Option<Response>, ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.parse(expect) {
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    /// The next whole line (without CR LF) as a range into `buf`, or `None`.
    fn line(&mut self, max: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
        let rest = &self.buf[self.pos..];
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            // +1: the CR of a CRLF may already be here.
            if rest.len() > max + 1 {
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
        if end - begin > max {
            return Err(ProtocolError::with_excerpt(
                "line too long",
                &self.buf[begin..end],
            ));
        }
        Ok(Some((begin, end)))
    }

    fn parse(&mut self, expect: Expect) -> Result<Option<Response>, ProtocolError> {
        if self.status.is_none() {
            let Some((a, b)) = self.line(MAX_STATUS_LINE)? else {
                return Ok(None);
            };
            let line = &self.buf[a..b];
            let text = |skip: usize| {
                let t = line.get(skip..).unwrap_or_default();
                let t = t.strip_prefix(b" ").unwrap_or(t);
                String::from_utf8_lossy(t).into_owned()
            };
            if line.starts_with(b"-ERR") && matches!(line.get(4), None | Some(b' ')) {
                return Ok(Some(Response::Err(text(4))));
            }
            if expect == Expect::Sasl && (line == b"+" || line.starts_with(b"+ ")) {
                return Ok(Some(Response::Continue(text(1))));
            }
            if !(line.starts_with(b"+OK") && matches!(line.get(3), None | Some(b' '))) {
                return Err(ProtocolError::with_excerpt("expected +OK or -ERR", line));
            }
            let status = text(3);
            if expect != Expect::Multi {
                return Ok(Some(Response::Ok {
                    text: status,
                    body: None,
                }));
            }
            self.status = Some(status);
            self.body.clear();
        }
        loop {
            let Some((a, b)) = self.line(MAX_BODY_LINE)? else {
                return Ok(None);
            };
            let line = &self.buf[a..b];
            if line == b"." {
                let text = self.status.take().unwrap_or_default();
                let body = std::mem::take(&mut self.body);
                return Ok(Some(Response::Ok {
                    text,
                    body: Some(body),
                }));
            }
            // RFC 1939 §3: a line starting with the termination octet is
            // stuffed with one more; remove it.
            let line = line.strip_prefix(b".").unwrap_or(line);
            if self.body.len() + line.len() + 2 > self.max_body {
                return Err(ProtocolError(format!(
                    "POP3 response body larger than {} octets",
                    self.max_body
                )));
            }
            self.body.extend_from_slice(line);
            self.body.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str, body: Option<&[u8]>) -> Response {
        Response::Ok {
            text: text.into(),
            body: body.map(<[u8]>::to_vec),
        }
    }

    /// Parses `bytes` as the `expects`, fed `chunk` bytes at a time.
    fn parse_all(
        bytes: &[u8],
        chunk: usize,
        expects: &[Expect],
    ) -> Result<Vec<Response>, ProtocolError> {
        let mut p = ResponseParser::new(1 << 20);
        let mut out = Vec::new();
        let mut i = 0;
        for c in bytes.chunks(chunk.max(1)) {
            p.feed(c);
            while i < expects.len() {
                match p.next_response(expects[i])? {
                    Some(r) => {
                        out.push(r);
                        i += 1;
                    }
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// A session's worth of responses, in the shapes RFC 1939 §§5-6 and
    /// RFC 2449 §5 show, with a stuffed body line and bare-LF line ends.
    const SESSION: &[u8] = b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n\
        +OK Capability list follows\r\nTOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nUIDL\r\n.\r\n\
        + \r\n\
        -ERR [AUTH] Authentication failed.\r\n\
        +OK 2 320\r\n\
        +OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n\
        +OK\r\nSubject: x\r\n\r\n..leading dot\r\n...\r\nend\r\n.\r\n\
        -ERR no such message\r\n\
        +OK unique-id listing follows\n1 whqtswO00WBw418f9t5JxYwZ\n.\n\
        +OK dewey POP3 server signing off\r\n";

    const EXPECTS: &[Expect] = &[
        Expect::Single,
        Expect::Multi,
        Expect::Sasl,
        Expect::Sasl,
        Expect::Single,
        Expect::Multi,
        Expect::Multi,
        Expect::Multi,
        Expect::Multi,
        Expect::Single,
    ];

    fn session_responses() -> Vec<Response> {
        vec![
            ok("POP3 server ready <1896.697170952@dbc.mtview.ca.us>", None),
            ok(
                "Capability list follows",
                Some(b"TOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nUIDL\r\n"),
            ),
            Response::Continue(String::new()),
            Response::Err("[AUTH] Authentication failed.".into()),
            ok("2 320", None),
            ok("2 messages (320 octets)", Some(b"1 120\r\n2 200\r\n")),
            ok("", Some(b"Subject: x\r\n\r\n.leading dot\r\n..\r\nend\r\n")),
            Response::Err("no such message".into()),
            ok(
                "unique-id listing follows",
                Some(b"1 whqtswO00WBw418f9t5JxYwZ\r\n"),
            ),
            ok("dewey POP3 server signing off", None),
        ]
    }

    #[test]
    fn whole_session_under_every_chunking() {
        let want = session_responses();
        for chunk in [1, 2, 3, 5, 7, 10, 16, 64, SESSION.len()] {
            let got = parse_all(SESSION, chunk, EXPECTS).unwrap();
            assert_eq!(got, want, "chunk size {chunk}");
        }
    }

    #[test]
    fn a_response_needs_its_line_end_and_a_body_its_dot() {
        let mut p = ResponseParser::new(1024);
        p.feed(b"+OK 1 2");
        assert_eq!(p.next_response(Expect::Single).unwrap(), None);
        p.feed(b"\r\n+OK\r\nline\r\n");
        assert_eq!(
            p.next_response(Expect::Single).unwrap(),
            Some(ok("1 2", None))
        );
        assert_eq!(p.next_response(Expect::Multi).unwrap(), None);
        // ".x" is a stuffed line, not the end.
        p.feed(b".x\r\n.");
        assert_eq!(p.next_response(Expect::Multi).unwrap(), None);
        p.feed(b"\r\n");
        assert_eq!(
            p.next_response(Expect::Multi).unwrap(),
            Some(ok("", Some(b"line\r\nx\r\n")))
        );
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn err_to_a_multi_line_command_has_no_body() {
        let got = parse_all(
            b"-ERR no\r\n+OK bye\r\n",
            1,
            &[Expect::Multi, Expect::Single],
        );
        assert_eq!(
            got.unwrap(),
            vec![Response::Err("no".into()), ok("bye", None)]
        );
    }

    #[test]
    fn status_words_must_stand_alone() {
        for bad in [
            &b"+OKAY\r\n"[..],
            b"-ERROR\r\n",
            b"OK\r\n",
            b"* OK IMAP\r\n",
            b"220 smtp\r\n",
            b"\r\n",
        ] {
            let err = parse_all(bad, 1, &[Expect::Single]).unwrap_err();
            assert!(err.0.contains("expected +OK or -ERR"), "{err}");
        }
        // Bare status words are fine (RFC 1939 §3: text is optional).
        assert_eq!(
            parse_all(b"+OK\r\n-ERR\r\n", 1, &[Expect::Single, Expect::Single]).unwrap(),
            vec![ok("", None), Response::Err(String::new())]
        );
    }

    #[test]
    fn continuation_only_during_sasl() {
        assert_eq!(
            parse_all(b"+ VXNlcm5hbWU6\r\n", 1, &[Expect::Sasl]).unwrap(),
            vec![Response::Continue("VXNlcm5hbWU6".into())]
        );
        assert_eq!(
            parse_all(b"+\r\n", 1, &[Expect::Sasl]).unwrap(),
            vec![Response::Continue(String::new())]
        );
        assert!(parse_all(b"+ x\r\n", 1, &[Expect::Single]).is_err());
        assert_eq!(
            parse_all(b"+OK Logged in.\r\n", 1, &[Expect::Sasl]).unwrap(),
            vec![ok("Logged in.", None)]
        );
    }

    #[test]
    fn status_line_length_is_bounded() {
        let mut long = b"+OK ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_STATUS_LINE));
        // Refused before any line end arrives: a server cannot make us buffer forever.
        let mut p = ResponseParser::new(1024);
        p.feed(&long);
        let err = p.next_response(Expect::Single).unwrap_err();
        assert!(err.0.contains("line too long"), "{err}");
        // And the parser stays failed.
        p.feed(b"\r\n+OK\r\n");
        assert!(p.next_response(Expect::Single).is_err());
        // Exactly at the bound is accepted.
        let mut at = b"+OK ".to_vec();
        at.extend(std::iter::repeat_n(b'a', MAX_STATUS_LINE - 4));
        at.extend_from_slice(b"\r\n");
        assert!(parse_all(&at, 7, &[Expect::Single]).is_ok());
    }

    #[test]
    fn body_line_length_is_bounded() {
        let mut bytes = b"+OK\r\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_BODY_LINE + 2));
        let err = parse_all(&bytes, 4096, &[Expect::Multi]).unwrap_err();
        assert!(err.0.contains("line too long"), "{err}");
    }

    #[test]
    fn body_size_is_bounded() {
        // 10 lines of 8 octets + CRLF = 100 octets unstuffed.
        let mut bytes = b"+OK\r\n".to_vec();
        for _ in 0..10 {
            bytes.extend_from_slice(b"12345678\r\n");
        }
        bytes.extend_from_slice(b".\r\n");
        let parse = |max: usize| {
            let mut p = ResponseParser::new(max);
            p.feed(&bytes);
            p.next_response(Expect::Multi)
        };
        assert!(matches!(parse(100), Ok(Some(Response::Ok { .. }))));
        let err = parse(99).unwrap_err();
        assert!(err.0.contains("larger than 99 octets"), "{err}");
    }

    #[test]
    fn errors_show_an_escaped_excerpt() {
        let err = parse_all(b"\x1b[31mHELLO\r\n", 1, &[Expect::Single]).unwrap_err();
        assert!(err.0.contains("\\x1b[31mHELLO"), "{err}");
        assert!(!err.0.contains('\x1b'));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..40,
            shapes in proptest::collection::vec(0u8..3, 1..8),
        ) {
            let expects: Vec<Expect> = shapes
                .iter()
                .map(|s| [Expect::Single, Expect::Multi, Expect::Sasl][*s as usize])
                .collect();
            let _ = parse_all(&bytes, chunk, &expects);
        }

        #[test]
        fn stuffed_bodies_round_trip(
            lines in proptest::collection::vec("[.a-z ]{0,12}", 0..12),
            chunk in 1usize..20,
        ) {
            let mut wire = b"+OK\r\n".to_vec();
            let mut want = Vec::new();
            for l in &lines {
                if l.starts_with('.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(l.as_bytes());
                wire.extend_from_slice(b"\r\n");
                want.extend_from_slice(l.as_bytes());
                want.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b".\r\n");
            let got = parse_all(&wire, chunk, &[Expect::Multi]).unwrap();
            prop_assert_eq!(got, vec![Response::Ok { text: String::new(), body: Some(want) }]);
        }
    }
}
