//! The POP3 session as a state machine without I/O: RFC 1939, CAPA
//! (RFC 2449), STLS (RFC 2595 §4), SASL AUTH (RFC 5034) with the SMTP
//! core's PLAIN, LOGIN and XOAUTH2 encoders, and the extended response
//! codes of RFC 2449 §8 and RFC 3206.
//!
//! A driver loops like the SMTP one: write [`Client::take_output`], handle
//! [`Client::poll_event`], and while [`Client::wants_read`] read with
//! [`Client::read_timeout`] and [`Client::feed`] the bytes. The session
//! greets, asks CAPA, upgrades with STLS when the mode requires it (and
//! refuses to go on in plain text otherwise), asks CAPA again, logs in and
//! says [`Event::Ready`]. Then each request ([`Client::stat`],
//! [`Client::uidl`], [`Client::retr`], ...) is sent in turn, one command
//! per round trip, and answered by one event.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use super::command::Command;
use super::response::{Expect, ProtocolError, Response, ResponseParser};
use crate::smtp::auth::{self, SaslClient};
use crate::smtp::client::{Credentials, TlsMode};
use crate::smtp::reply::escape;

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// TLS mode: implicit (POP3S, port 995), STLS (required) or none.
    pub tls: TlsMode,
    /// Login credentials; `mechanism: None` uses SASL PLAIN or LOGIN when
    /// CAPA offers them, else USER/PASS.
    pub credentials: Credentials,
    /// Allow credentials over a connection that is not TLS-protected.
    pub allow_plaintext_auth: bool,
    /// Log in with USER/PASS even when SASL is offered.
    pub user_pass: bool,
    /// Largest multi-line response (a message, a listing) accepted.
    pub max_message: usize,
    /// The longest wait for one whole response.
    pub timeout: Duration,
}

impl SessionConfig {
    /// Defaults: no plain-text login, 50 MB messages, 5 minute responses.
    pub fn new(tls: TlsMode, credentials: Credentials) -> Self {
        SessionConfig {
            tls,
            credentials,
            allow_plaintext_auth: false,
            user_pass: false,
            max_message: 50 * 1024 * 1024,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Run the TLS handshake on the transport now, then call
    /// [`Client::tls_started`].
    StartTls,
    /// Logged in; requests may be made.
    Ready,
    /// The answer to [`Client::stat`].
    Stat {
        /// Messages in the maildrop.
        count: u32,
        /// Their total size in octets.
        size: u64,
    },
    /// The answer to [`Client::list`]: message number and size.
    List(Vec<(u32, u64)>),
    /// The answer to [`Client::uidl`]: message number and unique id.
    Uidl(Vec<(u32, String)>),
    /// The answer to [`Client::retr`]: the whole message, CRLF line ends.
    Message {
        /// Message number.
        msg: u32,
        /// The raw RFC 5322 message, unstuffed.
        data: Vec<u8>,
    },
    /// The answer to [`Client::top`]: the headers and the first lines.
    Top {
        /// Message number.
        msg: u32,
        /// The headers, the blank line and the lines asked for.
        data: Vec<u8>,
    },
    /// The answer to [`Client::dele`]: marked for deletion at QUIT.
    Deleted(u32),
    /// A request was answered `-ERR`; the session goes on.
    Refused {
        /// The request, as traced.
        command: String,
        /// The server's text.
        text: String,
    },
    /// The session is over. Write any pending output, then close.
    Closed(CloseReason),
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// QUIT was answered: deletions are committed (RFC 1939 §6).
    Quit,
    /// The session could not go on.
    Error(SessionError),
}

/// A reason the session could not continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The greeting was `-ERR`.
    #[error("the POP3 server refused the session: {0}")]
    Greeting(String),
    /// STLS is required but not offered.
    #[error("the POP3 server does not offer STLS, which this connection requires")]
    TlsRequired,
    /// STLS was answered `-ERR`.
    #[error("the POP3 server refused STLS: {0}")]
    StlsRefused(String),
    /// Bytes followed the `+OK` to STLS before the handshake.
    #[error("the POP3 server sent data after its STLS reply, before the TLS handshake (possible injection)")]
    StlsInjection,
    /// Credentials would go over a connection without TLS.
    #[error("refusing to send credentials over a connection without TLS")]
    AuthRequiresTls,
    /// The forced mechanism is not offered.
    #[error("the POP3 server does not offer the {0} mechanism")]
    AuthUnsupported(&'static str),
    /// The login was refused.
    #[error("POP3 authentication failed: {0}")]
    AuthFailed(String),
    /// The server's bytes are not POP3.
    #[error("{0}")]
    Protocol(ProtocolError),
    /// QUIT was answered `-ERR`: messages marked for deletion may remain
    /// (RFC 1939 §6).
    #[error("the POP3 server could not remove the deleted messages: {0}")]
    UpdateFailed(String),
    /// The connection ended before QUIT was answered (deletions are void).
    #[error("the POP3 connection was lost")]
    ConnectionLost,
}

impl SessionError {
    /// The failure is the server's passing state, not a wrong password:
    /// the maildrop is locked by another session (`[IN-USE]`, RFC 2449
    /// §8.1.1) or the server has a temporary problem (`[SYS/TEMP]`,
    /// RFC 3206 §4). Trying again later may work.
    pub fn is_temporary(&self) -> bool {
        match self {
            SessionError::AuthFailed(text) | SessionError::Greeting(text) => {
                let t = text.to_ascii_uppercase();
                t.starts_with("[IN-USE]") || t.starts_with("[SYS/TEMP]")
            }
            SessionError::ConnectionLost => true,
            _ => false,
        }
    }
}

/// The capabilities from CAPA (RFC 2449 §6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Each capability line's first word, upper case.
    pub names: Vec<String>,
    /// The mechanisms of the `SASL` line, upper case.
    pub sasl: Vec<String>,
}

impl Capabilities {
    /// Parses a CAPA body.
    pub fn parse(body: &[u8]) -> Self {
        let mut caps = Capabilities::default();
        for line in String::from_utf8_lossy(body).lines() {
            let mut words = line.split_ascii_whitespace();
            let Some(name) = words.next() else { continue };
            let name = name.to_ascii_uppercase();
            if name == "SASL" {
                caps.sasl = words.map(str::to_ascii_uppercase).collect();
            }
            caps.names.push(name);
        }
        caps
    }

    /// The capability is listed.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Capa,
    Stls,
    TlsHandshake,
    Auth,
    User,
    Pass,
    Ready,
    Quit,
    Closed,
}

/// One POP3 session.
pub struct Client {
    config: SessionConfig,
    phase: Phase,
    parser: ResponseParser,
    output: Vec<u8>,
    events: VecDeque<Event>,
    /// The command whose response is awaited.
    current: Option<Command>,
    /// Requests waiting for the current one to be answered.
    queue: VecDeque<Command>,
    caps: Option<Capabilities>,
    tls_active: bool,
    sasl: Option<SaslClient>,
    trace: Vec<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("phase", &self.phase)
            .field("current", &self.current)
            .field("queued", &self.queue.len())
            .field("tls_active", &self.tls_active)
            .finish()
    }
}

impl Client {
    /// A session waiting for the server's greeting.
    pub fn new(config: SessionConfig) -> Self {
        let tls_active = config.tls == TlsMode::Implicit;
        Client {
            parser: ResponseParser::new(config.max_message),
            config,
            phase: Phase::Greeting,
            output: Vec::new(),
            events: VecDeque::new(),
            current: None,
            queue: VecDeque::new(),
            caps: None,
            tls_active,
            sasl: None,
            trace: Vec::new(),
        }
    }

    /// Bytes received from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.parser.feed(bytes);
        while self.phase != Phase::Closed && self.phase != Phase::TlsHandshake {
            let Some(expect) = self.awaiting() else { break };
            match self.parser.next_response(expect) {
                Ok(Some(resp)) => {
                    self.trace_response(&resp);
                    self.handle(resp);
                }
                Ok(None) => break,
                Err(e) => self.close(CloseReason::Error(SessionError::Protocol(e))),
            }
        }
    }

    /// Bytes to write to the server now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The TLS handshake after STLS succeeded: capabilities are asked anew
    /// (RFC 2595 §4: what was learnt in plain text is discarded).
    pub fn tls_started(&mut self) {
        if self.phase != Phase::TlsHandshake {
            return;
        }
        self.tls_active = true;
        self.caps = None;
        self.phase = Phase::Capa;
        self.send(Command::Capa);
    }

    /// The session waits for bytes from the server.
    pub fn wants_read(&self) -> bool {
        !matches!(self.phase, Phase::Closed | Phase::TlsHandshake) && self.awaiting().is_some()
    }

    /// How long to wait for the whole next response.
    pub fn read_timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The capabilities last learnt, if CAPA was answered.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    /// The conversation so far, `C:`/`S:` prefixed, secrets as `***`.
    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// Asks for the message count and total size.
    pub fn stat(&mut self) {
        self.request(Command::Stat);
    }

    /// Asks for every message's size.
    pub fn list(&mut self) {
        self.request(Command::List(None));
    }

    /// Asks for every message's unique id (RFC 1939 §7).
    pub fn uidl(&mut self) {
        self.request(Command::Uidl(None));
    }

    /// Asks for a message's headers and first `lines` body lines.
    pub fn top(&mut self, msg: u32, lines: u32) {
        self.request(Command::Top { msg, lines });
    }

    /// Asks for a whole message.
    pub fn retr(&mut self, msg: u32) {
        self.request(Command::Retr(msg));
    }

    /// Marks a message for deletion when the session QUITs.
    pub fn dele(&mut self, msg: u32) {
        self.request(Command::Dele(msg));
    }

    /// Ends the session after the requests already made; deletions are
    /// committed when the server answers (RFC 1939 §6).
    pub fn quit(&mut self) {
        match self.phase {
            Phase::Closed | Phase::Quit => {}
            Phase::Ready => self.request(Command::Quit),
            // Not logged in and nothing asked: nothing to commit, go at once.
            _ if self.queue.is_empty() => self.close(CloseReason::Quit),
            // Requests made before the login wait for it, and so does QUIT.
            _ => self.queue.push_back(Command::Quit),
        }
    }

    /// The transport ended. A session that was not answered QUIT committed
    /// nothing.
    pub fn connection_lost(&mut self) {
        match self.phase {
            Phase::Closed => {}
            Phase::Quit => self.close(CloseReason::Quit),
            _ => self.close(CloseReason::Error(SessionError::ConnectionLost)),
        }
    }

    fn awaiting(&self) -> Option<Expect> {
        match self.phase {
            Phase::Greeting => Some(Expect::Single),
            _ => self.current.as_ref().map(Command::expect),
        }
    }

    fn request(&mut self, cmd: Command) {
        if matches!(self.phase, Phase::Closed | Phase::Quit) {
            return;
        }
        self.queue.push_back(cmd);
        self.send_next();
    }

    fn send_next(&mut self) {
        if self.phase != Phase::Ready || self.current.is_some() {
            return;
        }
        if let Some(cmd) = self.queue.pop_front() {
            if cmd == Command::Quit {
                self.phase = Phase::Quit;
            }
            self.send(cmd);
        }
    }

    fn send(&mut self, cmd: Command) {
        self.trace.push(format!("C: {}", cmd.trace()));
        self.output.extend_from_slice(&cmd.to_wire());
        self.current = Some(cmd);
    }

    fn trace_response(&mut self, resp: &Response) {
        let line = match resp {
            Response::Ok { text, .. } => format!("S: +OK {text}"),
            Response::Err(text) => format!("S: -ERR {text}"),
            Response::Continue(text) => format!("S: + {text}"),
        };
        self.trace.push(escape(line.trim_end().as_bytes()));
    }

    fn close(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.current = None;
        self.queue.clear();
        self.events.push_back(Event::Closed(reason));
    }

    fn fail(&mut self, e: SessionError) {
        self.close(CloseReason::Error(e));
    }

    fn handle(&mut self, resp: Response) {
        let cmd = self.current.take();
        match self.phase {
            Phase::Greeting => match resp {
                Response::Ok { .. } => {
                    self.phase = Phase::Capa;
                    self.send(Command::Capa);
                }
                Response::Err(t) | Response::Continue(t) => self.fail(SessionError::Greeting(t)),
            },
            Phase::Capa => {
                // A server without CAPA says -ERR: it offers nothing known.
                let caps = match resp {
                    Response::Ok { body, .. } => Capabilities::parse(&body.unwrap_or_default()),
                    _ => Capabilities::default(),
                };
                let stls = caps.has("STLS");
                self.caps = Some(caps);
                if self.config.tls == TlsMode::StartTls && !self.tls_active {
                    if stls {
                        self.phase = Phase::Stls;
                        self.send(Command::Stls);
                    } else {
                        self.fail(SessionError::TlsRequired);
                    }
                } else {
                    self.begin_auth();
                }
            }
            Phase::Stls => match resp {
                Response::Ok { .. } if self.parser.buffered_len() > 0 => {
                    self.fail(SessionError::StlsInjection)
                }
                Response::Ok { .. } => {
                    self.phase = Phase::TlsHandshake;
                    self.events.push_back(Event::StartTls);
                }
                Response::Err(t) | Response::Continue(t) => self.fail(SessionError::StlsRefused(t)),
            },
            Phase::Auth => match resp {
                Response::Continue(challenge) => {
                    let answer = match self.sasl.as_mut() {
                        Some(s) => s.respond(&challenge),
                        None => "*".to_string(),
                    };
                    self.send(Command::AuthResponse(answer));
                }
                Response::Ok { .. } => self.logged_in(),
                Response::Err(t) => self.fail(SessionError::AuthFailed(t)),
            },
            Phase::User => match resp {
                Response::Ok { .. } => {
                    self.phase = Phase::Pass;
                    let secret = self.config.credentials.secret.clone();
                    self.send(Command::Pass(secret));
                }
                Response::Err(t) | Response::Continue(t) => self.fail(SessionError::AuthFailed(t)),
            },
            Phase::Pass => match resp {
                Response::Ok { .. } => self.logged_in(),
                Response::Err(t) | Response::Continue(t) => self.fail(SessionError::AuthFailed(t)),
            },
            Phase::Ready => {
                if let Some(cmd) = cmd {
                    self.answer(cmd, resp);
                }
                self.send_next();
            }
            Phase::Quit => match resp {
                Response::Err(t) => self.fail(SessionError::UpdateFailed(t)),
                _ => self.close(CloseReason::Quit),
            },
            Phase::TlsHandshake | Phase::Closed => {}
        }
    }

    fn begin_auth(&mut self) {
        if !self.tls_active && !self.config.allow_plaintext_auth {
            return self.fail(SessionError::AuthRequiresTls);
        }
        let offered = self
            .caps
            .as_ref()
            .map(|c| c.sasl.clone())
            .unwrap_or_default();
        let creds = self.config.credentials.clone();
        let mech = match creds.mechanism {
            _ if self.config.user_pass => None,
            Some(m) => match auth::choose(&offered, Some(m)) {
                Some(m) => Some(m),
                None => return self.fail(SessionError::AuthUnsupported(auth::mechanism_name(m))),
            },
            None => auth::choose(&offered, None),
        };
        match mech {
            Some(m) => {
                let sasl = SaslClient::new(m, &creds.username, &creds.secret);
                let initial = sasl.initial_response();
                self.sasl = Some(sasl);
                self.phase = Phase::Auth;
                self.send(Command::Auth {
                    mechanism: auth::mechanism_name(m).to_string(),
                    initial,
                });
            }
            None => {
                self.phase = Phase::User;
                self.send(Command::User(creds.username));
            }
        }
    }

    fn logged_in(&mut self) {
        self.sasl = None;
        self.phase = Phase::Ready;
        self.events.push_back(Event::Ready);
        self.send_next();
    }

    /// Turns the response to a request into its event.
    fn answer(&mut self, cmd: Command, resp: Response) {
        let (text, body) = match resp {
            Response::Ok { text, body } => (text, body.unwrap_or_default()),
            Response::Err(text) | Response::Continue(text) => {
                self.events.push_back(Event::Refused {
                    command: cmd.trace(),
                    text,
                });
                return;
            }
        };
        let event = match cmd {
            Command::Stat => match parse_pair(&text) {
                Some((count, size)) => Event::Stat { count, size },
                None => return self.malformed("STAT", &text),
            },
            Command::List(_) => match parse_lines(&body, parse_size) {
                Some(v) => Event::List(v),
                None => return self.malformed("LIST", &String::from_utf8_lossy(&body)),
            },
            Command::Uidl(_) => match parse_lines(&body, parse_uid) {
                Some(v) => Event::Uidl(v),
                None => return self.malformed("UIDL", &String::from_utf8_lossy(&body)),
            },
            Command::Retr(msg) => Event::Message { msg, data: body },
            Command::Top { msg, .. } => Event::Top { msg, data: body },
            Command::Dele(msg) => Event::Deleted(msg),
            _ => return,
        };
        self.events.push_back(event);
    }

    fn malformed(&mut self, what: &str, text: &str) {
        let e = ProtocolError(format!(
            "malformed POP3 {what} response: \"{}\"",
            escape(&text.as_bytes()[..text.len().min(40)])
        ));
        self.fail(SessionError::Protocol(e));
    }
}

/// `nn mm ...` of a STAT reply (RFC 1939 §5: the rest is free text).
fn parse_pair(text: &str) -> Option<(u32, u64)> {
    let mut w = text.split_ascii_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// A UID: 1 to 70 characters from 0x21 to 0x7E (RFC 1939 §7).
fn parse_uid(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= 70 && s.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .then(|| s.to_string())
}

/// The size of a scan listing; "more advanced implementations may include
/// other information" after it (RFC 1939 §5).
fn parse_size(s: &str) -> Option<u64> {
    s.split_ascii_whitespace().next()?.parse().ok()
}

/// The lines of a LIST or UIDL body: `msg rest`, rest parsed by `f`.
fn parse_lines<T>(body: &[u8], f: impl Fn(&str) -> Option<T>) -> Option<Vec<(u32, T)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.lines()
        .map(|line| {
            let (msg, rest) = line.trim_end().split_once(' ')?;
            Some((msg.parse().ok()?, f(rest.trim_start())?))
        })
        .collect()
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
