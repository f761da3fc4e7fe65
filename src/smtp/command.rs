//! SMTP commands as values whose `Display` is the exact wire line (RFC 5321
//! §4.1, with the MAIL parameters of RFC 1870 SIZE, RFC 6152 8BITMIME and
//! RFC 6531 SMTPUTF8, BDAT from RFC 3030 and AUTH from RFC 4954).
//!
//! Exchange tests compare these strings; [`Command::trace`] is the same line
//! with SASL secrets replaced by `***`.

use std::fmt;

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO name`.
    Ehlo(String),
    /// `HELO name` (fallback when EHLO is refused).
    Helo(String),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mech [initial-response]` (RFC 4954); the response is base64.
    Auth {
        /// Mechanism name, upper case.
        mechanism: String,
        /// Base64 initial response, if the mechanism sends one.
        initial: Option<String>,
    },
    /// A base64 line answering a 334 challenge.
    AuthResponse(String),
    /// `MAIL FROM:<addr>` with optional parameters.
    MailFrom {
        /// Reverse path; empty for the null sender `<>`.
        addr: String,
        /// `SIZE=` (RFC 1870) when the server offers SIZE.
        size: Option<usize>,
        /// `BODY=8BITMIME` (RFC 6152).
        eight_bit: bool,
        /// `SMTPUTF8` (RFC 6531).
        smtputf8: bool,
        /// Delivery status notifications (RFC 3461) when the server offers
        /// them: `RET=HDRS` (a bounce returns only the headers) and, when
        /// not empty, `ENVID=` with this envelope id.
        dsn: Option<String>,
    },
    /// `RCPT TO:<addr>`.
    RcptTo(String),
    /// `RCPT TO:<addr> ORCPT=rfc822;addr` (RFC 3461 §4.2): the bounce names
    /// the address as it was sent, whatever forwarding did to it.
    RcptToOrcpt(String),
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030); the chunk follows on the wire.
    Bdat {
        /// Octets in the chunk that follows.
        size: usize,
        /// This is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(name) => write!(f, "EHLO {name}"),
            Command::Helo(name) => write!(f, "HELO {name}"),
            Command::StartTls => f.write_str("STARTTLS"),
            Command::Auth { mechanism, initial } => {
                write!(f, "AUTH {mechanism}")?;
                if let Some(ir) = initial {
                    // RFC 4954 §4: an empty initial response is sent as "=".
                    let ir = if ir.is_empty() { "=" } else { ir };
                    write!(f, " {ir}")?;
                }
                Ok(())
            }
            Command::AuthResponse(line) => f.write_str(line),
            Command::MailFrom {
                addr,
                size,
                eight_bit,
                smtputf8,
                dsn,
            } => {
                write!(f, "MAIL FROM:<{addr}>")?;
                if let Some(n) = size {
                    write!(f, " SIZE={n}")?;
                }
                if *eight_bit {
                    f.write_str(" BODY=8BITMIME")?;
                }
                if *smtputf8 {
                    f.write_str(" SMTPUTF8")?;
                }
                if let Some(envid) = dsn {
                    f.write_str(" RET=HDRS")?;
                    if !envid.is_empty() {
                        write!(f, " ENVID={}", xtext(envid))?;
                    }
                }
                Ok(())
            }
            Command::RcptTo(addr) => write!(f, "RCPT TO:<{addr}>"),
            Command::RcptToOrcpt(addr) => {
                write!(f, "RCPT TO:<{addr}> ORCPT=rfc822;{}", xtext(addr))
            }
            Command::Data => f.write_str("DATA"),
            Command::Bdat { size, last } => {
                write!(f, "BDAT {size}")?;
                if *last {
                    f.write_str(" LAST")?;
                }
                Ok(())
            }
            Command::Rset => f.write_str("RSET"),
            Command::Noop => f.write_str("NOOP"),
            Command::Quit => f.write_str("QUIT"),
        }
    }
}

impl Command {
    /// The wire bytes, line plus CRLF.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut line = self.to_string().into_bytes();
        line.extend_from_slice(b"\r\n");
        line
    }

    /// The line for a protocol trace: SASL initial responses and every
    /// challenge answer are shown as `***`, since base64 is not secrecy.
    pub fn trace(&self) -> String {
        match self {
            Command::Auth {
                mechanism,
                initial: Some(_),
            } => format!("AUTH {mechanism} ***"),
            Command::AuthResponse(_) => "***".to_string(),
            other => other.to_string(),
        }
    }
}

/// RFC 3461 §4 xtext: `+`, `=` and octets outside `!`..`~` as `+XX`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(addr: &str, size: Option<usize>, eight_bit: bool, smtputf8: bool) -> Command {
        Command::MailFrom {
            addr: addr.into(),
            size,
            eight_bit,
            smtputf8,
            dsn: None,
        }
    }

    #[test]
    fn dsn_parameters_are_xtext() {
        let m = Command::MailFrom {
            addr: "bounces+7@example.com".into(),
            size: None,
            eight_bit: false,
            smtputf8: false,
            dsn: Some("r1.7=x@example.com".into()),
        };
        assert_eq!(
            m.to_string(),
            "MAIL FROM:<bounces+7@example.com> RET=HDRS ENVID=r1.7+3Dx@example.com"
        );
        assert_eq!(
            Command::RcptToOrcpt("a+b@example.com".into()).to_string(),
            "RCPT TO:<a+b@example.com> ORCPT=rfc822;a+2Bb@example.com"
        );
        assert_eq!(xtext("a b\u{e9}"), "a+20b+C3+A9");
    }

    #[test]
    fn wire_lines() {
        let cases: Vec<(Command, &str)> = vec![
            (
                Command::Ehlo("client.example".into()),
                "EHLO client.example",
            ),
            (
                Command::Helo("client.example".into()),
                "HELO client.example",
            ),
            (Command::StartTls, "STARTTLS"),
            (
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some("dGVzdA==".into()),
                },
                "AUTH PLAIN dGVzdA==",
            ),
            (
                Command::Auth {
                    mechanism: "LOGIN".into(),
                    initial: None,
                },
                "AUTH LOGIN",
            ),
            (
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some(String::new()),
                },
                "AUTH PLAIN =",
            ),
            (Command::AuthResponse("dXNlcg==".into()), "dXNlcg=="),
            (mail("a@b", None, false, false), "MAIL FROM:<a@b>"),
            (mail("", None, false, false), "MAIL FROM:<>"),
            (
                mail("a@b", Some(123), true, true),
                "MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME SMTPUTF8",
            ),
            (mail("a@b", None, false, true), "MAIL FROM:<a@b> SMTPUTF8"),
            (Command::RcptTo("x@y".into()), "RCPT TO:<x@y>"),
            (Command::Data, "DATA"),
            (
                Command::Bdat {
                    size: 1234,
                    last: true,
                },
                "BDAT 1234 LAST",
            ),
            (
                Command::Bdat {
                    size: 0,
                    last: false,
                },
                "BDAT 0",
            ),
            (Command::Rset, "RSET"),
            (Command::Noop, "NOOP"),
            (Command::Quit, "QUIT"),
        ];
        for (cmd, line) in cases {
            assert_eq!(cmd.to_string(), line);
            assert_eq!(cmd.to_wire(), format!("{line}\r\n").into_bytes());
        }
    }

    #[test]
    fn trace_redacts_sasl() {
        let auth = Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some("AHVzZXIAc2VjcmV0".into()),
        };
        assert_eq!(auth.trace(), "AUTH PLAIN ***");
        let login = Command::Auth {
            mechanism: "LOGIN".into(),
            initial: None,
        };
        assert_eq!(login.trace(), "AUTH LOGIN");
        assert_eq!(Command::AuthResponse("c2VjcmV0".into()).trace(), "***");
        assert_eq!(
            Command::RcptTo("x@y".into()).trace(),
            "RCPT TO:<x@y>",
            "non-secret commands are traced verbatim"
        );
    }
}
