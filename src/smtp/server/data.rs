//! The DATA body as a server reads it (RFC 5321 4.1.1.4, 4.5.2): lines up to
//! the lone dot, with the dot the client added in front of each line that
//! began with one taken off. Only CRLF ends a line (RFC 5321 2.3.8): after a
//! bare LF the next piece continues the same line, so it is neither the end
//! of the data nor dot-stuffed.

/// What a piece of the body turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataLine<'a> {
    /// The terminating `.` line: the body is complete.
    End,
    /// Body bytes, unstuffed, line ending included.
    Content(&'a [u8]),
}

/// Reads a DATA body piece by piece, each piece ending at an LF (or being the
/// input's last bytes).
#[derive(Debug, Clone)]
pub struct Unstuffer {
    /// Whether the next piece starts a line (the previous one ended in CRLF).
    line_start: bool,
}

impl Default for Unstuffer {
    fn default() -> Self {
        Unstuffer { line_start: true }
    }
}

impl Unstuffer {
    /// A reader at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies the next piece: the end of the data, or its content.
    pub fn line<'a>(&mut self, piece: &'a [u8]) -> DataLine<'a> {
        if self.line_start && piece == b".\r\n" {
            return DataLine::End;
        }
        let content = match piece.strip_prefix(b".") {
            Some(rest) if self.line_start => rest,
            _ => piece,
        };
        self.line_start = piece.ends_with(b"\r\n");
        DataLine::Content(content)
    }

    /// A piece was dropped unread (a line too long to keep): what follows
    /// is taken to start a line.
    pub fn skip_line(&mut self) {
        self.line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split after every LF, as the servers read it; the body
    /// and whether the end was seen.
    fn read(input: &[u8]) -> (Vec<u8>, bool) {
        let mut u = Unstuffer::new();
        let mut body = Vec::new();
        for piece in input.split_inclusive(|&b| b == b'\n') {
            match u.line(piece) {
                DataLine::End => return (body, true),
                DataLine::Content(c) => body.extend_from_slice(c),
            }
        }
        (body, false)
    }

    #[test]
    fn the_lone_dot_ends_the_body() {
        assert_eq!(
            read(b"a\r\nb\r\n.\r\nQUIT\r\n"),
            (b"a\r\nb\r\n".to_vec(), true)
        );
        assert_eq!(read(b".\r\n"), (Vec::new(), true));
        assert_eq!(read(b"a\r\nb\r\n"), (b"a\r\nb\r\n".to_vec(), false));
    }

    #[test]
    fn a_leading_dot_is_unstuffed() {
        assert_eq!(
            read(b"..\r\n..x\r\n.y\r\nz.\r\n.\r\n"),
            (b".\r\n.x\r\ny\r\nz.\r\n".to_vec(), true)
        );
    }

    #[test]
    fn only_crlf_starts_a_line() {
        // After a bare LF the dot continues the line: not the end, not stuffed.
        assert_eq!(
            read(b"a\n.\r\n..b\r\n.\r\n"),
            (b"a\n.\r\n.b\r\n".to_vec(), true)
        );
        // A bare CR does not end a line either.
        assert_eq!(read(b"a\r.\r\n.\r\n"), (b"a\r.\r\n".to_vec(), true));
        // A dot at a line start is unstuffed even when a bare LF follows;
        // the dot line after that bare LF is content, not the end.
        assert_eq!(read(b".\n.\r\n"), (b"\n.\r\n".to_vec(), false));
    }

    #[test]
    fn a_skipped_line_leaves_the_next_at_a_line_start() {
        let mut u = Unstuffer::new();
        assert_eq!(u.line(b"a\n"), DataLine::Content(b"a\n"));
        u.skip_line();
        assert_eq!(u.line(b".\r\n"), DataLine::End);
    }
}
