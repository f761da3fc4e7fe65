//! Command lines as a server reads them (RFC 5321 4.1.1): the verb, matched
//! case-insensitively, and the rest of the line as its argument; and which
//! verbs end a pipelined group (RFC 2920 3.1).

/// A command verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `EHLO` (RFC 5321 4.1.1.1).
    Ehlo,
    /// `HELO`.
    Helo,
    /// `MAIL FROM:`.
    Mail,
    /// `RCPT TO:`.
    Rcpt,
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH` (RFC 4954).
    Auth,
    /// `VRFY`.
    Vrfy,
    /// `EXPN`.
    Expn,
    /// `HELP`.
    Help,
    /// An empty line.
    Empty,
    /// Any other verb.
    Unknown,
}

impl Verb {
    /// The verb a command word names, ignoring case.
    pub fn from_word(word: &str) -> Verb {
        match word.to_ascii_uppercase().as_str() {
            "EHLO" => Verb::Ehlo,
            "HELO" => Verb::Helo,
            "MAIL" => Verb::Mail,
            "RCPT" => Verb::Rcpt,
            "DATA" => Verb::Data,
            "BDAT" => Verb::Bdat,
            "RSET" => Verb::Rset,
            "NOOP" => Verb::Noop,
            "QUIT" => Verb::Quit,
            "STARTTLS" => Verb::StartTls,
            "AUTH" => Verb::Auth,
            "VRFY" => Verb::Vrfy,
            "EXPN" => Verb::Expn,
            "HELP" => Verb::Help,
            "" => Verb::Empty,
            _ => Verb::Unknown,
        }
    }

    /// Whether a pipelining client must wait for this command's reply before
    /// sending more (RFC 2920 3.1).
    pub fn ends_group(self) -> bool {
        matches!(
            self,
            Verb::Ehlo
                | Verb::Helo
                | Verb::Data
                | Verb::Quit
                | Verb::Noop
                | Verb::Auth
                | Verb::StartTls
                | Verb::Vrfy
                | Verb::Expn
        )
    }
}

/// One command line: its verb and its argument, trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The verb.
    pub verb: Verb,
    /// Everything after the first space, without surrounding white space.
    pub arg: &'a str,
}

impl<'a> Request<'a> {
    /// Splits a command line (already without its line ending) at the first space.
    pub fn parse(line: &'a str) -> Request<'a> {
        let (word, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        Request {
            verb: Verb::from_word(word),
            arg,
        }
    }
}

/// The line without its LF or CRLF ending.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_match_without_case_and_keep_the_argument() {
        let r = Request::parse("mail FROM:<a@b.c>  SIZE=10 ");
        assert_eq!(r.verb, Verb::Mail);
        assert_eq!(r.arg, "FROM:<a@b.c>  SIZE=10");
        assert_eq!(Request::parse("StartTLS").verb, Verb::StartTls);
        assert_eq!(Request::parse("DATA").arg, "");
        assert_eq!(Request::parse("").verb, Verb::Empty);
        assert_eq!(Request::parse("XYZZY now").verb, Verb::Unknown);
        // A leading space leaves an empty verb, not a command.
        assert_eq!(Request::parse(" QUIT").verb, Verb::Empty);
    }

    #[test]
    fn only_commands_that_need_their_reply_end_a_group() {
        for verb in [
            "EHLO", "HELO", "DATA", "QUIT", "NOOP", "AUTH", "STARTTLS", "VRFY", "EXPN",
        ] {
            assert!(Verb::from_word(verb).ends_group(), "{verb}");
        }
        for verb in ["MAIL", "RCPT", "RSET", "BDAT"] {
            assert!(!Verb::from_word(verb).ends_group(), "{verb}");
        }
    }

    #[test]
    fn line_endings_come_off() {
        assert_eq!(trim_eol(b"QUIT\r\n"), b"QUIT");
        assert_eq!(trim_eol(b"QUIT\n"), b"QUIT");
        assert_eq!(trim_eol(b"QUIT\r"), b"QUIT");
        assert_eq!(trim_eol(b"QUIT\n\r\n"), b"QUIT\n");
        assert_eq!(trim_eol(b""), b"");
    }
}
