//! POP3 commands as values whose `Display` is the exact wire line: RFC 1939
//! §§4-7 (USER, PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, TOP, UIDL),
//! CAPA (RFC 2449 §5), STLS (RFC 2595 §4) and AUTH (RFC 5034 §4).
//!
//! [`Command::trace`] is the same line with secrets replaced by `***`.

use std::fmt;

use super::response::Expect;

/// One client command.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `USER name`.
    User(String),
    /// `PASS secret`.
    Pass(String),
    /// `AUTH mech [initial-response]` (RFC 5034 §4); the response is base64.
    Auth {
        /// Mechanism name, upper case.
        mechanism: String,
        /// Base64 initial response, if the mechanism sends one.
        initial: Option<String>,
    },
    /// A base64 line answering a `+` challenge, or `*` to cancel.
    AuthResponse(String),
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
    /// `TOP msg n`: the headers and the first `n` body lines.
    Top {
        /// Message number.
        msg: u32,
        /// Body lines wanted.
        lines: u32,
    },
    /// `RETR msg`.
    Retr(u32),
    /// `DELE msg`.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Capa => f.write_str("CAPA"),
            Command::Stls => f.write_str("STLS"),
            Command::User(name) => write!(f, "USER {name}"),
            Command::Pass(secret) => write!(f, "PASS {secret}"),
            Command::Auth { mechanism, initial } => {
                write!(f, "AUTH {mechanism}")?;
                if let Some(ir) = initial {
                    // RFC 5034 §4: an empty initial response is sent as "=".
                    let ir = if ir.is_empty() { "=" } else { ir };
                    write!(f, " {ir}")?;
                }
                Ok(())
            }
            Command::AuthResponse(line) => f.write_str(line),
            Command::Stat => f.write_str("STAT"),
            Command::List(None) => f.write_str("LIST"),
            Command::List(Some(n)) => write!(f, "LIST {n}"),
            Command::Uidl(None) => f.write_str("UIDL"),
            Command::Uidl(Some(n)) => write!(f, "UIDL {n}"),
            Command::Top { msg, lines } => write!(f, "TOP {msg} {lines}"),
            Command::Retr(n) => write!(f, "RETR {n}"),
            Command::Dele(n) => write!(f, "DELE {n}"),
            Command::Noop => f.write_str("NOOP"),
            Command::Rset => f.write_str("RSET"),
            Command::Quit => f.write_str("QUIT"),
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({})", self.trace())
    }
}

impl Command {
    /// The wire bytes, line plus CRLF.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut line = self.to_string().into_bytes();
        line.extend_from_slice(b"\r\n");
        line
    }

    /// The line for a protocol trace: the password, SASL initial responses
    /// and challenge answers are shown as `***`.
    pub fn trace(&self) -> String {
        match self {
            Command::Pass(_) => "PASS ***".to_string(),
            Command::Auth {
                mechanism,
                initial: Some(_),
            } => format!("AUTH {mechanism} ***"),
            Command::AuthResponse(_) => "***".to_string(),
            other => other.to_string(),
        }
    }

    /// The shape of the response this command gets (RFC 1939: LIST and
    /// UIDL without argument, RETR and TOP are multi-line; so is CAPA).
    pub fn expect(&self) -> Expect {
        match self {
            Command::Capa
            | Command::List(None)
            | Command::Uidl(None)
            | Command::Top { .. }
            | Command::Retr(_) => Expect::Multi,
            Command::Auth { .. } | Command::AuthResponse(_) => Expect::Sasl,
            _ => Expect::Single,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_lines_and_shapes() {
        let cases: Vec<(Command, &str, Expect)> = vec![
            (Command::Capa, "CAPA", Expect::Multi),
            (Command::Stls, "STLS", Expect::Single),
            (Command::User("mrose".into()), "USER mrose", Expect::Single),
            (
                Command::Pass("secret".into()),
                "PASS secret",
                Expect::Single,
            ),
            (
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some("dGVzdA==".into()),
                },
                "AUTH PLAIN dGVzdA==",
                Expect::Sasl,
            ),
            (
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some(String::new()),
                },
                "AUTH PLAIN =",
                Expect::Sasl,
            ),
            (
                Command::Auth {
                    mechanism: "LOGIN".into(),
                    initial: None,
                },
                "AUTH LOGIN",
                Expect::Sasl,
            ),
            (Command::AuthResponse("*".into()), "*", Expect::Sasl),
            (Command::Stat, "STAT", Expect::Single),
            (Command::List(None), "LIST", Expect::Multi),
            (Command::List(Some(2)), "LIST 2", Expect::Single),
            (Command::Uidl(None), "UIDL", Expect::Multi),
            (Command::Uidl(Some(2)), "UIDL 2", Expect::Single),
            (
                Command::Top { msg: 1, lines: 10 },
                "TOP 1 10",
                Expect::Multi,
            ),
            (Command::Retr(1), "RETR 1", Expect::Multi),
            (Command::Dele(1), "DELE 1", Expect::Single),
            (Command::Noop, "NOOP", Expect::Single),
            (Command::Rset, "RSET", Expect::Single),
            (Command::Quit, "QUIT", Expect::Single),
        ];
        for (cmd, line, expect) in cases {
            assert_eq!(cmd.to_string(), line);
            assert_eq!(cmd.to_wire(), format!("{line}\r\n").into_bytes());
            assert_eq!(cmd.expect(), expect, "{line}");
        }
    }

    #[test]
    fn trace_and_debug_hide_secrets() {
        assert_eq!(Command::Pass("hunter2".into()).trace(), "PASS ***");
        assert_eq!(
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AHUAaHVudGVyMg==".into())
            }
            .trace(),
            "AUTH PLAIN ***"
        );
        assert_eq!(Command::AuthResponse("aHVudGVyMg==".into()).trace(), "***");
        assert_eq!(Command::User("me".into()).trace(), "USER me");
        let dbg = format!("{:?}", Command::Pass("hunter2".into()));
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
