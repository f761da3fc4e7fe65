//! The IMAP session as a state machine without I/O, on imap-codec's
//! parser and encoder: IMAP4rev1 (RFC 3501) with STARTTLS (§6.2.1),
//! LOGIN (§6.2.3) and AUTHENTICATE (§6.2.2) with SASL-IR (RFC 4959), ID
//! (RFC 2971), UID MOVE (RFC 6851) and UID EXPUNGE (RFC 4315, UIDPLUS).
//!
//! A driver loops like the SMTP one: write [`Client::take_output`], handle
//! [`Client::poll_event`], and while [`Client::wants_read`] read with
//! [`Client::read_timeout`] and [`Client::feed`] the bytes. The session
//! reads the greeting, learns the capabilities, upgrades with STARTTLS when
//! the mode requires it (refusing to go on in plain text otherwise), logs
//! in, sends `ID` when the server offers it (NetEase refuses to SELECT for
//! clients that do not identify themselves) and says [`Event::Ready`].
//! Then each request is sent in turn, one command per round trip:
//! [`Client::select`], [`Client::search_after`], [`Client::fetch`],
//! [`Client::move_to`], [`Client::delete`], [`Client::logout`].
//!
//! Server messages are split by imap-codec's fragmentizer, which bounds
//! every message (a fetched mail included) by
//! [`SessionConfig::max_message`] and keeps literal bytes from ever being
//! read as protocol lines.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use imap_codec::decode::Decoder;
use imap_codec::encode::{Encoder, Fragment};
use imap_codec::fragmentizer::Fragmentizer;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{IString, LiteralMode, NString, Vec1};
use imap_codec::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::response::{
    Code, CommandContinuationRequest, Data, GreetingKind, Response, Status, StatusKind,
};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::{CommandCodec, GreetingCodec, ResponseCodec};

use super::mailbox_name;
use crate::smtp::auth::AuthMech;
use crate::smtp::auth::SaslClient;
use crate::smtp::client::{Credentials, TlsMode};
use crate::smtp::reply::escape;

/// Most UIDs fetched by one `UID FETCH` (the driver splits longer lists).
pub const FETCH_BATCH: usize = 50;

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// TLS mode: implicit (IMAPS, port 993), STARTTLS (required) or none.
    pub tls: TlsMode,
    /// Login credentials. `mechanism: None` uses AUTHENTICATE PLAIN when
    /// offered, else LOGIN; `Login` forces the LOGIN command; `Plain` and
    /// `XOAuth2` force AUTHENTICATE with that mechanism.
    pub credentials: Credentials,
    /// Allow credentials over a connection that is not TLS-protected.
    pub allow_plaintext_auth: bool,
    /// The fields sent with `ID` (RFC 2971 §3.3), e.g. `name`, `version`.
    pub id: Vec<(String, String)>,
    /// Largest server message (a fetched mail with its framing) accepted.
    pub max_message: u32,
    /// The longest wait for one whole response.
    pub timeout: Duration,
}

impl SessionConfig {
    /// Defaults: ID `name=mailshot` and the version, no plain-text login,
    /// 50 MB messages, 5 minute responses.
    pub fn new(tls: TlsMode, credentials: Credentials) -> Self {
        SessionConfig {
            tls,
            credentials,
            allow_plaintext_auth: false,
            id: vec![
                ("name".into(), "mailshot".into()),
                ("version".into(), env!("CARGO_PKG_VERSION").into()),
            ],
            max_message: 50 * 1024 * 1024,
            timeout: Duration::from_secs(300),
        }
    }
}

/// The selected folder's state (RFC 3501 §6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// UIDVALIDITY: UIDs remembered under another value mean nothing.
    pub uid_validity: Option<u32>,
    /// UIDNEXT, when the server says it.
    pub uid_next: Option<u32>,
    /// Messages in the folder.
    pub exists: u32,
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Run the TLS handshake on the transport now, then call
    /// [`Client::tls_started`].
    StartTls,
    /// Logged in (and identified); requests may be made.
    Ready,
    /// The answer to [`Client::select`].
    Selected(Selected),
    /// The answer to [`Client::search_after`]: UIDs above the one given,
    /// ascending.
    Uids(Vec<u32>),
    /// One message of a [`Client::fetch`].
    Message {
        /// Its UID.
        uid: u32,
        /// The raw RFC 5322 message.
        data: Vec<u8>,
    },
    /// A [`Client::fetch`] is complete.
    Fetched,
    /// A [`Client::move_to`] is complete.
    Moved(Vec<u32>),
    /// A [`Client::delete`] is complete.
    Deleted(Vec<u32>),
    /// A request was answered NO or BAD; the session goes on.
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
    /// LOGOUT was answered.
    Logout,
    /// The session could not go on.
    Error(SessionError),
}

/// A reason the session could not continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The greeting was BYE.
    #[error("the IMAP server refused the session: {0}")]
    Greeting(String),
    /// STARTTLS is required but not offered.
    #[error("the IMAP server does not offer STARTTLS, which this connection requires")]
    TlsRequired,
    /// STARTTLS was refused.
    #[error("the IMAP server refused STARTTLS: {0}")]
    StartTlsRefused(String),
    /// Bytes followed the STARTTLS reply before the handshake.
    #[error("the IMAP server sent data after its STARTTLS reply, before the TLS handshake (possible injection)")]
    StartTlsInjection,
    /// Credentials would go over a connection without TLS.
    #[error("refusing to send credentials over a connection without TLS")]
    AuthRequiresTls,
    /// No usable login: the forced mechanism is not offered, or LOGIN is
    /// disabled and AUTHENTICATE PLAIN not offered.
    #[error("the IMAP server offers no usable login ({0})")]
    AuthUnsupported(&'static str),
    /// The login was refused.
    #[error("IMAP authentication failed: {0}")]
    AuthFailed(String),
    /// The server said BYE outside LOGOUT.
    #[error("the IMAP server closed the session: {0}")]
    Bye(String),
    /// The server's bytes are not IMAP, or a message exceeds the limit.
    #[error("IMAP protocol error: {0}")]
    Protocol(String),
    /// The connection ended before LOGOUT was answered.
    #[error("the IMAP connection was lost")]
    ConnectionLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Capability,
    StartTls,
    TlsHandshake,
    Auth,
    PostAuthCapability,
    Id,
    Ready,
    Logout,
    Closed,
}

/// What the answer to a command means.
#[derive(Debug, Clone)]
enum Op {
    Capability,
    StartTls,
    Login,
    Authenticate {
        initial_sent: bool,
        initial: String,
    },
    Id,
    Select,
    Search {
        after: u32,
    },
    /// One batch of a fetch; the last one says [`Event::Fetched`].
    Fetch {
        last: bool,
    },
    /// One step of a move or delete; `last` carries the event for the end.
    Step {
        last: Option<Event>,
    },
    Logout,
}

/// A command waiting to go out.
#[derive(Debug, Clone)]
struct Queued {
    body: CommandBody<'static>,
    op: Op,
    /// Steps of one request share a group: a refused step drops the rest.
    group: u64,
}

/// The command whose completion is awaited.
#[derive(Debug)]
struct InFlight {
    tag: String,
    op: Op,
    group: u64,
    trace: String,
    /// Fragments held back until the server's `+` (synchronizing literals).
    held: VecDeque<Fragment>,
}

/// One IMAP session.
pub struct Client {
    config: SessionConfig,
    phase: Phase,
    frag: Fragmentizer,
    output: Vec<u8>,
    events: VecDeque<Event>,
    current: Option<InFlight>,
    queue: VecDeque<Queued>,
    next_tag: u64,
    next_group: u64,
    caps: Vec<String>,
    /// The capabilities were learnt since the login was sent.
    caps_fresh: bool,
    tls_active: bool,
    sasl: Option<SaslClient>,
    selected: Selected,
    search: Vec<u32>,
    server_id: Vec<(String, String)>,
    trace: Vec<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("phase", &self.phase)
            .field("current", &self.current.as_ref().map(|c| &c.trace))
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
            frag: Fragmentizer::new(config.max_message),
            config,
            phase: Phase::Greeting,
            output: Vec::new(),
            events: VecDeque::new(),
            current: None,
            queue: VecDeque::new(),
            next_tag: 1,
            next_group: 1,
            caps: Vec::new(),
            caps_fresh: false,
            tls_active,
            sasl: None,
            selected: Selected {
                uid_validity: None,
                uid_next: None,
                exists: 0,
            },
            search: Vec::new(),
            server_id: Vec::new(),
            trace: Vec::new(),
        }
    }

    /// Bytes received from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Closed | Phase::TlsHandshake) {
            return;
        }
        self.frag.enqueue_bytes(bytes);
        while !matches!(self.phase, Phase::Closed | Phase::TlsHandshake) {
            let Some(_) = self.frag.progress() else { break };
            if !self.frag.is_message_complete() {
                continue;
            }
            if self.frag.is_max_message_size_exceeded() {
                let e = format!(
                    "a server message is larger than {} octets",
                    self.config.max_message
                );
                return self.fail(SessionError::Protocol(e));
            }
            let message = self.frag.message_bytes().to_vec();
            self.handle_message(&message);
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

    /// The TLS handshake after STARTTLS succeeded: capabilities are asked
    /// anew (RFC 3501 §6.2.1: those learnt in plain text are discarded).
    pub fn tls_started(&mut self) {
        if self.phase != Phase::TlsHandshake {
            return;
        }
        self.tls_active = true;
        self.caps.clear();
        self.phase = Phase::Capability;
        self.send_now(CommandBody::Capability, Op::Capability);
    }

    /// The session waits for bytes from the server.
    pub fn wants_read(&self) -> bool {
        match self.phase {
            Phase::Closed | Phase::TlsHandshake => false,
            Phase::Greeting => true,
            _ => self.current.is_some(),
        }
    }

    /// How long to wait for the whole next response.
    pub fn read_timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The capabilities last learnt, upper case (`IMAP4REV1`, `AUTH=PLAIN`, `MOVE`...).
    pub fn capabilities(&self) -> &[String] {
        &self.caps
    }

    /// The capability is offered.
    pub fn has_capability(&self, name: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// What the server said about itself in its `ID` reply.
    pub fn server_id(&self) -> &[(String, String)] {
        &self.server_id
    }

    /// The conversation so far, `C:`/`S:` prefixed, secrets as `***`,
    /// literal contents left out.
    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// Selects a folder (read-write, so that moves and deletions work).
    /// The name is given as the user writes it.
    pub fn select(&mut self, folder: &str) {
        match CommandBody::select(mailbox_name::encode(folder)) {
            Ok(body) => self.request(vec![(body, Op::Select)]),
            Err(_) => self.refuse_locally("SELECT", folder),
        }
    }

    /// Asks for the UIDs above `after` (`UID SEARCH UID after+1:*`). The
    /// answer leaves out `after` and below, which a server returns for
    /// `n:*` when no UID reaches `n` (RFC 3501 §6.4.8, §9 seq-range).
    pub fn search_after(&mut self, after: u32) {
        let from = NonZeroU32::new(after.saturating_add(1)).unwrap_or(NonZeroU32::MIN);
        let set = SequenceSet::from(from..);
        let body = CommandBody::search(None, Vec1::from(SearchKey::Uid(set)), true);
        self.request(vec![(body, Op::Search { after })]);
    }

    /// Fetches whole messages by UID without setting `\Seen`
    /// (`UID FETCH set BODY.PEEK[]`), [`FETCH_BATCH`] UIDs per command;
    /// [`Event::Fetched`] follows the last batch.
    pub fn fetch(&mut self, uids: &[u32]) {
        let batches: Vec<&[u32]> = uids.chunks(FETCH_BATCH).collect();
        let mut steps = Vec::with_capacity(batches.len());
        for (i, batch) in batches.iter().enumerate() {
            let Some(set) = uid_set(batch) else {
                return self.refuse_locally("UID FETCH", "UID 0");
            };
            let items = vec![
                MessageDataItemName::Uid,
                MessageDataItemName::BodyExt {
                    section: None,
                    partial: None,
                    peek: true,
                },
            ];
            match CommandBody::fetch(set, items, true) {
                Ok(body) => steps.push((
                    body,
                    Op::Fetch {
                        last: i + 1 == batches.len(),
                    },
                )),
                Err(_) => return self.refuse_locally("UID FETCH", "bad UIDs"),
            }
        }
        if steps.is_empty() {
            return self.refuse_locally("UID FETCH", "no UIDs");
        }
        self.request(steps);
    }

    /// Moves messages to another folder (named as the user writes it):
    /// `UID MOVE` where offered
    /// (RFC 6851), else `UID COPY`, then flag `\Deleted` and expunge.
    pub fn move_to(&mut self, uids: &[u32], folder: &str) {
        let Some(set) = uid_set(uids) else {
            return self.refuse_locally("UID MOVE", "no UIDs");
        };
        let done = Event::Moved(uids.to_vec());
        let Ok(mailbox) =
            imap_codec::imap_types::mailbox::Mailbox::try_from(mailbox_name::encode(folder))
        else {
            return self.refuse_locally("UID MOVE", folder);
        };
        if self.has_capability("MOVE") {
            let body = CommandBody::Move {
                sequence_set: set,
                mailbox,
                uid: true,
            };
            return self.request(vec![(body, Op::Step { last: Some(done) })]);
        }
        let copy = CommandBody::Copy {
            sequence_set: set.clone(),
            mailbox,
            uid: true,
        };
        let mut steps = vec![(copy, Op::Step { last: None })];
        steps.extend(self.delete_steps(set, done));
        self.request(steps);
    }

    /// Deletes messages: flag `\Deleted`, then `UID EXPUNGE` with UIDPLUS
    /// (RFC 4315), else `EXPUNGE`.
    pub fn delete(&mut self, uids: &[u32]) {
        let Some(set) = uid_set(uids) else {
            return self.refuse_locally("UID STORE", "no UIDs");
        };
        let steps = self.delete_steps(set, Event::Deleted(uids.to_vec()));
        self.request(steps);
    }

    /// Ends the session after the requests already made.
    pub fn logout(&mut self) {
        match self.phase {
            Phase::Closed | Phase::Logout => {}
            Phase::Ready => self.request(vec![(CommandBody::Logout, Op::Logout)]),
            _ if self.queue.is_empty() && self.phase == Phase::Greeting => {
                self.close(CloseReason::Logout)
            }
            _ => self.queue.push_back(Queued {
                body: CommandBody::Logout,
                op: Op::Logout,
                group: 0,
            }),
        }
    }

    /// The transport ended.
    pub fn connection_lost(&mut self) {
        match self.phase {
            Phase::Closed => {}
            Phase::Logout => self.close(CloseReason::Logout),
            _ => self.fail(SessionError::ConnectionLost),
        }
    }

    fn delete_steps(&self, set: SequenceSet, done: Event) -> Vec<(CommandBody<'static>, Op)> {
        let store = CommandBody::Store {
            sequence_set: set.clone(),
            kind: StoreType::Add,
            response: StoreResponse::Silent,
            flags: vec![Flag::Deleted],
            uid: true,
        };
        let expunge = if self.has_capability("UIDPLUS") {
            CommandBody::ExpungeUid { sequence_set: set }
        } else {
            CommandBody::Expunge
        };
        vec![
            (store, Op::Step { last: None }),
            (expunge, Op::Step { last: Some(done) }),
        ]
    }

    fn refuse_locally(&mut self, command: &str, text: &str) {
        self.events.push_back(Event::Refused {
            command: command.to_string(),
            text: format!("cannot be sent: {text}"),
        });
    }

    fn request(&mut self, steps: Vec<(CommandBody<'static>, Op)>) {
        if matches!(self.phase, Phase::Closed | Phase::Logout) {
            return;
        }
        let group = self.next_group;
        self.next_group += 1;
        for (body, op) in steps {
            self.queue.push_back(Queued { body, op, group });
        }
        self.send_next();
    }

    fn send_next(&mut self) {
        if self.phase != Phase::Ready || self.current.is_some() {
            return;
        }
        if let Some(q) = self.queue.pop_front() {
            match q.op {
                Op::Logout => self.phase = Phase::Logout,
                // What a previous SELECT said does not describe the next.
                Op::Select => {
                    self.selected = Selected {
                        uid_validity: None,
                        uid_next: None,
                        exists: 0,
                    }
                }
                _ => {}
            }
            self.send(q.body, q.op, q.group);
        }
    }

    fn send_now(&mut self, body: CommandBody<'static>, op: Op) {
        self.send(body, op, 0);
    }

    fn send(&mut self, body: CommandBody<'static>, op: Op, group: u64) {
        let tag = format!("A{}", self.next_tag);
        self.next_tag += 1;
        let secret = matches!(body, CommandBody::Login { .. })
            || matches!(
                body,
                CommandBody::Authenticate {
                    initial_response: Some(_),
                    ..
                }
            );
        let name = body.name();
        let Ok(command) = Command::new(tag.as_str(), body) else {
            return self.fail(SessionError::Protocol(format!("bad tag {tag}")));
        };
        let mut held: VecDeque<Fragment> = CommandCodec::default().encode(&command).collect();
        let trace = if secret {
            match &command.body {
                CommandBody::Authenticate { mechanism, .. } => {
                    format!("{tag} AUTHENTICATE {mechanism} ***")
                }
                _ => format!("{tag} {name} ***"),
            }
        } else {
            let dump: Vec<u8> = held
                .iter()
                .flat_map(|f| match f {
                    Fragment::Line { data } | Fragment::Literal { data, .. } => data.clone(),
                })
                .collect();
            escape(trim_crlf(&dump))
        };
        self.trace.push(format!("C: {trace}"));
        self.write_until_sync_literal(&mut held);
        self.current = Some(InFlight {
            tag,
            op,
            group,
            trace,
            held,
        });
    }

    /// Writes fragments up to (not including) a synchronizing literal,
    /// which must wait for the server's `+` (RFC 3501 §7.5); a
    /// non-synchronizing one (RFC 7888) goes out at once.
    fn write_until_sync_literal(&mut self, held: &mut VecDeque<Fragment>) {
        while let Some(f) = held.pop_front() {
            match f {
                Fragment::Line { data } => self.output.extend_from_slice(&data),
                Fragment::Literal { data, mode } => {
                    if mode == LiteralMode::Sync {
                        held.push_front(Fragment::Literal { data, mode });
                        return;
                    }
                    self.output.extend_from_slice(&data);
                }
            }
        }
    }

    fn trace_server(&mut self, message: &[u8]) {
        let first = message.split(|&b| b == b'\n').next().unwrap_or_default();
        self.trace.push(format!("S: {}", escape(trim_crlf(first))));
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

    fn handle_message(&mut self, message: &[u8]) {
        self.trace_server(message);
        if self.phase == Phase::Greeting {
            return self.handle_greeting(message);
        }
        let response = match ResponseCodec::default().decode(message) {
            Ok((b"", r)) => r,
            _ => {
                // An untagged message imap-codec cannot read is skipped: the
                // fragmentizer has already framed it, literals included.
                if message.starts_with(b"* ") {
                    return;
                }
                let e = format!(
                    "cannot parse \"{}\"",
                    escape(trim_crlf(&message[..message.len().min(60)]))
                );
                return self.fail(SessionError::Protocol(e));
            }
        };
        match response {
            Response::CommandContinuationRequest(req) => self.handle_continue(req),
            Response::Data(data) => self.handle_data(data),
            Response::Status(status) => self.handle_status(status),
        }
    }

    fn handle_greeting(&mut self, message: &[u8]) {
        let greeting = match GreetingCodec::default().decode(message) {
            Ok((_, g)) => g,
            Err(_) => {
                let e = format!(
                    "not an IMAP greeting: \"{}\"",
                    escape(trim_crlf(&message[..message.len().min(60)]))
                );
                return self.fail(SessionError::Protocol(e));
            }
        };
        if let Some(Code::Capability(caps)) = &greeting.code {
            self.set_caps(caps.as_ref());
        }
        match greeting.kind {
            GreetingKind::Bye => self.fail(SessionError::Greeting(greeting.text.to_string())),
            GreetingKind::PreAuth => {
                if self.config.tls == TlsMode::StartTls && !self.tls_active {
                    // RFC 3501 §6.2.1: STARTTLS is not possible after PREAUTH.
                    return self.fail(SessionError::TlsRequired);
                }
                self.after_login();
            }
            GreetingKind::Ok => {
                self.phase = Phase::Capability;
                if self.caps.is_empty() {
                    self.send_now(CommandBody::Capability, Op::Capability);
                } else {
                    self.capabilities_known();
                }
            }
        }
    }

    fn handle_continue(&mut self, req: CommandContinuationRequest) {
        let Some(current) = self.current.as_mut() else {
            return self.fail(SessionError::Protocol("unexpected continuation".into()));
        };
        if !current.held.is_empty() {
            let mut held = std::mem::take(&mut current.held);
            // The literal the server now accepts, then what follows it.
            if let Some(Fragment::Literal { data, .. }) = held.pop_front() {
                self.output.extend_from_slice(&data);
            }
            self.write_until_sync_literal(&mut held);
            if let Some(c) = self.current.as_mut() {
                c.held = held;
            }
            return;
        }
        let first = match &mut current.op {
            Op::Authenticate {
                initial_sent,
                initial,
            } => {
                let first = (!*initial_sent).then(|| initial.clone());
                *initial_sent = true;
                first
            }
            _ => return self.fail(SessionError::Protocol("unexpected continuation".into())),
        };
        let line = match first {
            Some(line) => line,
            None => {
                let challenge = match &req {
                    CommandContinuationRequest::Base64(b) => B64.encode(b),
                    CommandContinuationRequest::Basic(b) => b.text().to_string(),
                };
                match self.sasl.as_mut() {
                    Some(s) => s.respond(&challenge),
                    None => "*".to_string(),
                }
            }
        };
        self.trace.push("C: ***".into());
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn handle_data(&mut self, data: Data) {
        match data {
            Data::Capability(caps) => self.set_caps(caps.as_ref()),
            Data::Exists(n) => self.selected.exists = n,
            Data::Search(uids, ..) => {
                if matches!(
                    self.current.as_ref().map(|c| &c.op),
                    Some(Op::Search { .. })
                ) {
                    self.search.extend(uids.iter().map(|u| u.get()));
                }
            }
            Data::Fetch { items, .. } => {
                let mut uid = None;
                let mut body = None;
                for item in items.into_iter() {
                    match item {
                        MessageDataItem::Uid(u) => uid = Some(u.get()),
                        MessageDataItem::BodyExt {
                            section: None,
                            origin: None,
                            data: NString(Some(s)),
                        } => body = Some(istring_bytes(&s)),
                        _ => {}
                    }
                }
                // A FETCH of flags alone (an unsolicited update) has no body.
                if let (Some(uid), Some(data)) = (uid, body) {
                    if matches!(self.current.as_ref().map(|c| &c.op), Some(Op::Fetch { .. })) {
                        self.events.push_back(Event::Message { uid, data });
                    }
                }
            }
            Data::Id { parameters } => {
                self.server_id = parameters
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| {
                        let k = String::from_utf8_lossy(&istring_bytes(&k)).into_owned();
                        let v =
                            v.0.map(|v| String::from_utf8_lossy(&istring_bytes(&v)).into_owned())
                                .unwrap_or_default();
                        (k, v)
                    })
                    .collect();
            }
            _ => {}
        }
    }

    fn handle_status(&mut self, status: Status) {
        match status {
            Status::Untagged(body) => match body.code {
                Some(Code::UidValidity(v)) => self.selected.uid_validity = Some(v.get()),
                Some(Code::UidNext(v)) => self.selected.uid_next = Some(v.get()),
                Some(Code::Capability(caps)) => self.set_caps(caps.as_ref()),
                _ => {}
            },
            Status::Bye(bye) => {
                if self.phase != Phase::Logout {
                    self.fail(SessionError::Bye(bye.text.to_string()));
                }
            }
            Status::Tagged(tagged) => {
                let Some(current) = self.current.take() else {
                    return self.fail(SessionError::Protocol(format!(
                        "a reply to {} that was never sent",
                        escape(tagged.tag.inner().as_bytes())
                    )));
                };
                if tagged.tag.inner() != current.tag {
                    return self.fail(SessionError::Protocol(format!(
                        "a reply to {} while waiting for {}",
                        escape(tagged.tag.inner().as_bytes()),
                        current.tag
                    )));
                }
                if let Some(Code::Capability(caps)) = &tagged.body.code {
                    self.set_caps(caps.as_ref());
                }
                let ok = tagged.body.kind == StatusKind::Ok;
                let text = tagged.body.text.to_string();
                self.complete(current, ok, text);
            }
        }
    }

    fn complete(&mut self, cmd: InFlight, ok: bool, text: String) {
        match cmd.op {
            Op::Capability => match self.phase {
                Phase::PostAuthCapability => self.identify(),
                _ => self.capabilities_known(),
            },
            Op::StartTls if ok => {
                // Bytes already here came before the handshake: injected.
                let extra = self.frag.progress().is_some() || !self.frag.message_bytes().is_empty();
                if extra {
                    return self.fail(SessionError::StartTlsInjection);
                }
                self.phase = Phase::TlsHandshake;
                self.events.push_back(Event::StartTls);
            }
            Op::StartTls => self.fail(SessionError::StartTlsRefused(text)),
            Op::Login | Op::Authenticate { .. } if ok => {
                self.sasl = None;
                self.after_login();
            }
            Op::Login | Op::Authenticate { .. } => self.fail(SessionError::AuthFailed(text)),
            // An ID refusal is not fatal: the server may still serve us.
            Op::Id => self.ready(),
            Op::Select if ok => {
                self.events.push_back(Event::Selected(self.selected));
            }
            Op::Search { after } if ok => {
                let mut uids = std::mem::take(&mut self.search);
                uids.retain(|&u| u > after);
                uids.sort_unstable();
                uids.dedup();
                self.events.push_back(Event::Uids(uids));
            }
            Op::Fetch { last } if ok => {
                if last {
                    self.events.push_back(Event::Fetched);
                }
            }
            Op::Step { last } if ok => {
                if let Some(e) = last {
                    self.events.push_back(e);
                }
            }
            Op::Logout => return self.close(CloseReason::Logout),
            Op::Select | Op::Search { .. } | Op::Fetch { .. } | Op::Step { .. } => {
                self.search.clear();
                self.queue.retain(|q| q.group != cmd.group);
                self.events.push_back(Event::Refused {
                    command: cmd.trace,
                    text,
                });
            }
        }
        if cmd.group != 0 || matches!(self.phase, Phase::Ready) {
            self.send_next();
        }
    }

    /// After CAPABILITY: STARTTLS if required, else log in.
    fn capabilities_known(&mut self) {
        if self.config.tls == TlsMode::StartTls && !self.tls_active {
            if self.has_capability("STARTTLS") {
                self.phase = Phase::StartTls;
                return self.send_now(CommandBody::StartTLS, Op::StartTls);
            }
            return self.fail(SessionError::TlsRequired);
        }
        self.login();
    }

    fn login(&mut self) {
        if !self.tls_active && !self.config.allow_plaintext_auth {
            return self.fail(SessionError::AuthRequiresTls);
        }
        let creds = self.config.credentials.clone();
        let plain_offered = self.has_capability("AUTH=PLAIN");
        let login_disabled = self.has_capability("LOGINDISABLED");
        let mech = match creds.mechanism {
            Some(AuthMech::Login) if login_disabled => {
                return self.fail(SessionError::AuthUnsupported("LOGIN is disabled"))
            }
            Some(AuthMech::Login) => None,
            Some(AuthMech::Plain) if !plain_offered => {
                return self.fail(SessionError::AuthUnsupported("AUTH=PLAIN is not offered"))
            }
            Some(AuthMech::XOAuth2) if !self.has_capability("AUTH=XOAUTH2") => {
                return self.fail(SessionError::AuthUnsupported("AUTH=XOAUTH2 is not offered"))
            }
            Some(m) => Some(m),
            None if plain_offered => Some(AuthMech::Plain),
            None if login_disabled => {
                return self.fail(SessionError::AuthUnsupported(
                    "LOGIN is disabled and AUTH=PLAIN is not offered",
                ))
            }
            None => None,
        };
        self.phase = Phase::Auth;
        self.caps_fresh = false;
        let Some(mech) = mech else {
            return match CommandBody::login(creds.username.clone(), creds.secret.clone()) {
                Ok(body) => self.send_now(body, Op::Login),
                Err(_) => self.fail(SessionError::AuthUnsupported(
                    "the user name or password cannot be sent with LOGIN",
                )),
            };
        };
        let sasl = SaslClient::new(mech, &creds.username, &creds.secret);
        let initial = sasl.initial_response().unwrap_or_default();
        self.sasl = Some(sasl);
        let mechanism = match mech {
            AuthMech::XOAuth2 => AuthMechanism::XOAuth2,
            _ => AuthMechanism::Plain,
        };
        if self.has_capability("SASL-IR") {
            let raw = B64.decode(&initial).unwrap_or_default();
            let body = CommandBody::authenticate_with_ir(mechanism, raw);
            self.send_now(
                body,
                Op::Authenticate {
                    initial_sent: true,
                    initial,
                },
            );
        } else {
            let body = CommandBody::authenticate(mechanism);
            self.send_now(
                body,
                Op::Authenticate {
                    initial_sent: false,
                    initial,
                },
            );
        }
    }

    /// Logged in: learn the capabilities, which may have changed (RFC 3501
    /// §6.2.3), unless the server sent them since the login went out.
    fn after_login(&mut self) {
        self.phase = Phase::PostAuthCapability;
        if self.caps_fresh {
            return self.identify();
        }
        self.send_now(CommandBody::Capability, Op::Capability);
    }

    fn set_caps(&mut self, caps: &[imap_codec::imap_types::response::Capability]) {
        self.caps = caps.iter().map(cap_name).collect();
        self.caps_fresh = true;
    }

    fn identify(&mut self) {
        if !self.has_capability("ID") {
            return self.ready();
        }
        self.phase = Phase::Id;
        let parameters: Option<Vec<(IString<'static>, NString<'static>)>> = self
            .config
            .id
            .iter()
            .map(|(k, v)| {
                let k = IString::try_from(k.clone()).ok()?;
                let v = IString::try_from(v.clone()).ok()?;
                Some((k, NString(Some(v))))
            })
            .collect();
        self.send_now(CommandBody::Id { parameters }, Op::Id);
    }

    fn ready(&mut self) {
        self.phase = Phase::Ready;
        self.events.push_back(Event::Ready);
        self.send_next();
    }
}

/// The name of a capability as the server wrote it, upper case.
fn cap_name(c: &imap_codec::imap_types::response::Capability) -> String {
    c.to_string().to_ascii_uppercase()
}

/// The bytes of a string or literal.
fn istring_bytes(s: &IString) -> Vec<u8> {
    s.as_ref().to_vec()
}

/// A UID set from a list, `None` if it is empty or holds 0.
fn uid_set(uids: &[u32]) -> Option<SequenceSet> {
    let v: Option<Vec<NonZeroU32>> = uids.iter().map(|&u| NonZeroU32::new(u)).collect();
    SequenceSet::try_from(v?).ok()
}

fn trim_crlf(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
