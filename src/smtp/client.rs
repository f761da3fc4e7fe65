//! The SMTP session as a state machine without I/O (RFC 5321), with
//! PIPELINING (RFC 2920), CHUNKING/BDAT (RFC 3030), STARTTLS (RFC 3207),
//! AUTH (RFC 4954) and the MAIL parameters SIZE (RFC 1870), 8BITMIME
//! (RFC 6152) and SMTPUTF8 (RFC 6531).
//!
//! The driver (`connection.rs`) loops: write [`Client::take_output`], handle
//! [`Client::poll_event`], and while [`Client::wants_read`] read with
//! [`Client::read_timeout`] and [`Client::feed`] the bytes. Everything here
//! is bytes in, bytes and events out, so each rule is tested byte by byte.
//!
//! Transactions go out in one of three shapes, chosen from the EHLO reply:
//! pipelined `BDAT … LAST` (no waiting at all, up to `window` messages in
//! flight), pipelined DATA (MAIL/RCPT/DATA in one write; the body plus the
//! next message's commands after the 354: one round trip a message), or
//! lock-step, one command per round trip. Replies are matched to commands
//! strictly in order, which is what RFC 2920 guarantees.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::auth::{self, SaslClient};
use super::capabilities::Capabilities;
use super::command::Command;
use super::data;
use super::redact::Redactor;
use super::reply::{ProtocolError, Reply, ReplyParser};
use crate::smtp::auth::AuthMech;

/// Never more unanswered commands than this. The socket driver drains
/// replies as they arrive (see `duplex.rs`), so no socket buffer bounds the
/// depth (RFC 2920 §3.1's deadlock cannot happen); this keeps the memory for
/// one session's queued replies and the work a server has to take back
/// after an error bounded. A transaction is started only below the limit
/// and then written whole.
pub const MAX_UNANSWERED: usize = 3200;

/// How the transport is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// The transport is already TLS (port 465).
    Implicit,
    /// Upgrade with STARTTLS; refuse to continue in plain text.
    StartTls,
    /// Plain text.
    None,
}

/// AUTH credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// SASL user name.
    pub username: String,
    /// Password, or the OAuth token for XOAUTH2.
    pub secret: String,
    /// Forced mechanism; `None` picks the best offered.
    pub mechanism: Option<AuthMech>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"***")
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name sent in EHLO/HELO.
    pub helo_name: String,
    /// TLS mode.
    pub tls: TlsMode,
    /// AUTH credentials, if any.
    pub credentials: Option<Credentials>,
    /// Allow AUTH over a connection that is not TLS-protected.
    pub allow_plaintext_auth: bool,
    /// Most transactions in flight at once.
    pub window: usize,
    /// Use PIPELINING when offered.
    pub use_pipelining: bool,
    /// Use CHUNKING (BDAT) when offered.
    pub use_chunking: bool,
    /// Reply timeout for commands (RFC 5321 §4.5.3.2: 5 minutes).
    pub command_timeout: Duration,
    /// Reply timeout after the end of data (RFC 5321 §4.5.3.2: 10 minutes).
    pub data_timeout: Duration,
    /// The server refuses commands pipelined after the end of data (it
    /// answered them `503 … pipelined …`): wait for each end-of-data reply
    /// before writing on. Learnt by one session, shared by every session
    /// cloned from the same configuration for the rest of the run.
    pub no_pipelining_after_dot: Arc<AtomicBool>,
}

impl ClientConfig {
    /// Defaults: no credentials, window 16, pipelining and chunking on,
    /// 5 min / 10 min timeouts.
    pub fn new(helo_name: impl Into<String>, tls: TlsMode) -> Self {
        ClientConfig {
            helo_name: helo_name.into(),
            tls,
            credentials: None,
            allow_plaintext_auth: false,
            window: 16,
            use_pipelining: true,
            use_chunking: true,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            no_pipelining_after_dot: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One message to send.
#[derive(Clone)]
pub struct Transaction {
    /// The caller's id, returned in the outcome.
    pub id: u64,
    /// Reverse path; empty for `<>`.
    pub mail_from: String,
    /// Forward paths.
    pub rcpt_to: Vec<String>,
    /// The message, CRLF line ends, not dot-stuffed.
    pub data: Arc<Vec<u8>>,
    /// Needs `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// Needs `SMTPUTF8`.
    pub smtputf8: bool,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id)
            .field("mail_from", &self.mail_from)
            .field("rcpt_to", &self.rcpt_to)
            .field("data_len", &self.data.len())
            .field("eight_bit", &self.eight_bit)
            .field("smtputf8", &self.smtputf8)
            .finish()
    }
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Run the TLS handshake on the transport now, then call
    /// [`Client::tls_started`].
    StartTls,
    /// The session is set up; transactions may be submitted.
    Ready,
    /// A submitted transaction is finished.
    Outcome(TxOutcome),
    /// The session is over. Write any pending output, then close.
    Closed(CloseReason),
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// QUIT was answered (or the server closed after it).
    Quit,
    /// The server said 421 and closes.
    ServiceClosing(Reply),
    /// The session could not go on.
    Error(SessionError),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Quit => f.write_str("the session ended"),
            CloseReason::ServiceClosing(r) => write!(f, "the server is closing the session: {r}"),
            CloseReason::Error(e) => write!(f, "{e}"),
        }
    }
}

/// A reason the session could not continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The greeting was not 220.
    #[error("the server refused the session: {0}")]
    Greeting(Reply),
    /// EHLO and HELO were refused.
    #[error("the server refused EHLO/HELO: {0}")]
    Helo(Reply),
    /// STARTTLS is required but not offered.
    #[error("the server does not offer STARTTLS, which this connection requires")]
    TlsRequired,
    /// STARTTLS was answered with something other than 220.
    #[error("the server refused STARTTLS: {0}")]
    StartTlsRefused(Reply),
    /// Bytes followed the 220 to STARTTLS before the handshake: they could
    /// be injected commands or replies (CVE-2011-0411 class).
    #[error("the server sent data after its STARTTLS reply, before the TLS handshake (possible injection)")]
    StartTlsInjection,
    /// Credentials would go over a connection without TLS.
    #[error(
        "refusing to send credentials over a connection without TLS (allow_plaintext_auth is off)"
    )]
    AuthRequiresTls,
    /// No usable SASL mechanism is offered.
    #[error("the server offers no usable authentication mechanism")]
    AuthUnsupported,
    /// AUTH was refused.
    #[error("authentication failed: {0}")]
    AuthFailed(Reply),
    /// The server's bytes are not SMTP, or the connection broke.
    #[error("{0}")]
    Protocol(ProtocolError),
    /// A reply arrived when none was expected.
    #[error("unexpected reply from the server: {0}")]
    Unexpected(Reply),
    /// A reply cannot be the answer to the command it is paired with: the
    /// server sent an extra reply or left one out, so no reply of the
    /// pipelined group can be trusted.
    #[error("the server's replies are out of step with the commands sent: {command} was answered {reply}")]
    OutOfStep {
        /// The command the reply was paired with.
        command: &'static str,
        /// The reply.
        reply: Reply,
    },
}

/// The outcome of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// [`Transaction::id`].
    pub id: u64,
    /// The MAIL reply, if one arrived.
    pub mail: Option<Reply>,
    /// Each recipient with its RCPT reply (`None`: not sent or not answered).
    pub rcpts: Vec<(String, Option<Reply>)>,
    /// What happened to the message.
    pub result: TxResult,
}

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxResult {
    /// The final reply after the data was 2xx; the recipients with a 2xx
    /// RCPT reply have it.
    Accepted(Reply),
    /// MAIL, DATA/BDAT or the end of data was answered 4xx/5xx.
    Failed(Reply),
    /// Every RCPT was refused (replies in `rcpts`); the transaction was reset.
    NoValidRecipients,
    /// Bigger than the server's SIZE limit: not sent.
    TooLarge {
        /// The message size in octets.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
    /// Needs an extension the server lacks (or has an unusable address): not sent.
    Unsupported(String),
    /// The connection was lost after the end of data left, before its reply.
    Uncertain,
    /// The session ended before the data was sent; safe to retry.
    NotSent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    Auth,
    Ready,
    Closed,
}

/// What the next reply answers; keys are internal sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth,
    Mail(u64),
    Rcpt(u64, usize),
    Data(u64),
    DataEnd(u64),
    Bdat(u64),
    Rset,
    Quit,
}

impl Expect {
    /// The command this reply answers, for messages.
    fn command(self) -> &'static str {
        match self {
            Expect::Greeting => "the greeting",
            Expect::Ehlo => "EHLO",
            Expect::Helo => "HELO",
            Expect::StartTls => "STARTTLS",
            Expect::Auth => "AUTH",
            Expect::Mail(_) => "MAIL",
            Expect::Rcpt(..) => "RCPT",
            Expect::Data(_) => "DATA",
            Expect::DataEnd(_) => "the end of data",
            Expect::Bdat(_) => "BDAT",
            Expect::Rset => "RSET",
            Expect::Quit => "QUIT",
        }
    }

    /// Whether `reply` can answer this command at all (RFC 5321 §4.3.2,
    /// RFC 3030 §2). Only 354 answers DATA, nothing else gets a 3xx, and an
    /// end-of-data success never carries an address status (`2.1.x`, the
    /// code of a MAIL or RCPT reply). A reply that fails this shows that
    /// replies and commands have slipped apart.
    fn admits(self, reply: &Reply) -> bool {
        let intermediate = reply.is_intermediate();
        match self {
            Expect::Greeting | Expect::Quit | Expect::Auth => true,
            Expect::StartTls => !intermediate,
            Expect::Data(_) => reply.code == 354 || reply.code >= 400,
            Expect::DataEnd(_) | Expect::Bdat(_) => {
                let address_status = reply.enhanced.is_some_and(|e| e.subject == 1);
                let looks_like_rcpt = reply.is_positive() && address_status;
                !(intermediate || looks_like_rcpt)
            }
            Expect::Ehlo | Expect::Helo | Expect::Mail(_) | Expect::Rcpt(..) | Expect::Rset => {
                !intermediate
            }
        }
    }
}

/// The next thing to write for a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Mail,
    Rcpt(usize),
    Final,
    Done,
}

#[derive(Debug)]
struct Tx {
    tx: Transaction,
    /// CRLF-normalised message; the BDAT size and the SIZE parameter.
    wire: Vec<u8>,
    mail: Option<Reply>,
    rcpts: Vec<Option<Reply>>,
    /// The reply that decides the outcome once MAIL and a RCPT succeeded:
    /// a non-354 DATA reply, the end-of-data reply or the BDAT reply.
    last: Option<Reply>,
    next: Step,
    /// Replies still owed for this transaction.
    outstanding: usize,
    /// The end of data has been handed to the driver by `take_output`.
    final_handed_out: bool,
    /// Its MAIL was written behind an end of data whose reply was still
    /// outstanding (pipelined past the dot).
    behind_dot: bool,
}

impl Tx {
    fn any_rcpt_ok(&self) -> bool {
        self.rcpts.iter().flatten().any(Reply::is_positive)
    }

    fn all_rcpts_answered(&self) -> bool {
        self.rcpts.iter().all(Option::is_some)
    }

    /// The outcome once all replies are in. MAIL and RCPT failures come
    /// first because after them the data is meaningless to the server.
    fn decide(&self) -> TxResult {
        match &self.mail {
            None => return TxResult::NotSent,
            // 503 here means the server was still in an earlier, failed
            // transaction: this one never started.
            Some(m) if m.code == 503 => return TxResult::NotSent,
            Some(m) if !m.is_positive() => return TxResult::Failed(m.clone()),
            Some(_) => {}
        }
        // 503 to RCPT after an accepted MAIL: the server lost the
        // transaction it had acknowledged. Bad sequence, not a verdict on
        // the recipient: the message was not sent.
        if self.rcpts.iter().flatten().any(|r| r.code == 503) {
            return TxResult::NotSent;
        }
        if !self.any_rcpt_ok() {
            return TxResult::NoValidRecipients;
        }
        match &self.last {
            Some(r) if r.is_positive() => TxResult::Accepted(r.clone()),
            // The same for DATA/BDAT after an accepted recipient.
            Some(r) if r.code == 503 => TxResult::NotSent,
            Some(r) => TxResult::Failed(r.clone()),
            None => TxResult::NotSent,
        }
    }

    /// The outcome when the replies cannot be trusted (they slipped out of
    /// step with the commands): only whether the end of data left counts.
    fn decide_untrusted(&self) -> TxResult {
        if self.final_handed_out {
            TxResult::Uncertain
        } else {
            TxResult::NotSent
        }
    }

    /// The outcome when the connection ends before all replies are in.
    fn decide_lost(&self) -> TxResult {
        if let Some(m) = &self.mail {
            if m.code == 503 {
                return TxResult::NotSent;
            }
            if !m.is_positive() {
                return TxResult::Failed(m.clone());
            }
            if self.all_rcpts_answered() && !self.any_rcpt_ok() {
                return TxResult::NoValidRecipients;
            }
        }
        if self.final_handed_out {
            TxResult::Uncertain
        } else {
            TxResult::NotSent
        }
    }

    fn outcome(self, result: TxResult) -> TxOutcome {
        TxOutcome {
            id: self.tx.id,
            mail: self.mail,
            rcpts: self.tx.rcpt_to.into_iter().zip(self.rcpts).collect(),
            result,
        }
    }
}

/// The session state machine. See the module documentation.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    parser: ReplyParser,
    phase: Phase,
    expects: VecDeque<Expect>,
    out: Vec<u8>,
    events: VecDeque<Event>,
    trace: Vec<String>,
    tracing: bool,
    caps: Option<Capabilities>,
    tls: bool,
    sasl: Option<SaslClient>,
    /// Unfinished transactions by sequence number (submission order).
    txs: BTreeMap<u64, Tx>,
    /// Transactions with steps still to write, in order.
    unwritten: VecDeque<u64>,
    next_seq: u64,
    /// DATA is out and its reply not handled: nothing may follow it yet.
    blocked: bool,
    /// The server refuses commands pipelined after the end of data: nothing
    /// may follow this transaction's end of data before its reply.
    awaiting_end: Option<u64>,
    rset_pending: bool,
    quitting: bool,
    quit_sent: bool,
    pipelining: bool,
    chunking: bool,
    /// Transactions whose end of data is in `out`, not yet handed out, with
    /// the offset in `out` just past their final dot (or last BDAT chunk).
    finals_in_out: Vec<(u64, usize)>,
    /// The same for the output most recently taken, until the next take: a
    /// write that fails part way takes back the ends it never wrote.
    finals_taken: Vec<(u64, usize)>,
    commands_sent: u64,
    replies_received: u64,
    /// Every reply is scrubbed of the credentials' forms before use.
    redactor: Redactor,
}

impl Client {
    /// A session about to read the server's greeting.
    pub fn new(config: ClientConfig) -> Self {
        let tls = config.tls == TlsMode::Implicit;
        let redactor = config
            .credentials
            .as_ref()
            .map(|c| Redactor::new(&c.username, &c.secret))
            .unwrap_or_default();
        Client {
            config,
            parser: ReplyParser::new(),
            phase: Phase::Greeting,
            expects: VecDeque::from([Expect::Greeting]),
            out: Vec::new(),
            events: VecDeque::new(),
            trace: Vec::new(),
            tracing: true,
            caps: None,
            tls,
            sasl: None,
            txs: BTreeMap::new(),
            unwritten: VecDeque::new(),
            next_seq: 0,
            blocked: false,
            awaiting_end: None,
            rset_pending: false,
            quitting: false,
            quit_sent: false,
            pipelining: false,
            chunking: false,
            finals_in_out: Vec::new(),
            finals_taken: Vec::new(),
            commands_sent: 0,
            replies_received: 0,
            redactor,
        }
    }

    /// Turns trace collection on (the default) or off; when on, call
    /// [`take_trace`](Self::take_trace) regularly or the lines accumulate.
    pub fn set_trace(&mut self, on: bool) {
        self.tracing = on;
        if !on {
            self.trace.clear();
        }
    }

    /// Bytes received from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        match self.phase {
            Phase::Closed => return,
            Phase::TlsHandshake => {
                if !bytes.is_empty() {
                    self.abort(SessionError::StartTlsInjection);
                }
                return;
            }
            _ => {}
        }
        self.parser.feed(bytes);
        while !matches!(self.phase, Phase::Closed | Phase::TlsHandshake) {
            let next = if self.tracing {
                self.parser.next_reply_traced()
            } else {
                self.parser.next_reply().map(|o| o.map(|r| (r, Vec::new())))
            };
            match next {
                Ok(Some((mut reply, mut raw))) => {
                    self.replies_received += 1;
                    if !self.redactor.is_empty() {
                        for line in reply.lines.iter_mut().chain(raw.iter_mut()) {
                            *line = self.redactor.scrub(line);
                        }
                    }
                    self.trace
                        .extend(raw.into_iter().map(|l| format!("S: {l}")));
                    self.on_reply(reply);
                }
                Ok(None) => break,
                Err(e) => self.abort(SessionError::Protocol(e)),
            }
        }
        self.pump();
    }

    /// Bytes to write now (drained); may be empty.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.take_output_with_finals().0
    }

    /// Like [`Client::take_output`], also naming (by [`Transaction::id`]) the
    /// transactions whose end of data — final dot or `BDAT LAST` chunk — is in
    /// these bytes: once written, their outcome is uncertain until answered.
    pub fn take_output_with_finals(&mut self) -> (Vec<u8>, Vec<u64>) {
        let mut ids = Vec::new();
        self.finals_taken = std::mem::take(&mut self.finals_in_out);
        for (seq, _) in &self.finals_taken {
            if let Some(tx) = self.txs.get_mut(seq) {
                tx.final_handed_out = true;
                ids.push(tx.tx.id);
            }
        }
        (std::mem::take(&mut self.out), ids)
    }

    /// Only the first `written` bytes of the last [`take_output`](Self::take_output)
    /// reached the socket (the write failed): a message whose end never left
    /// was not sent, so losing the connection now makes it `NotSent`, not
    /// `Uncertain`, and it can be retried without risk of a duplicate.
    pub fn output_partly_written(&mut self, written: usize) {
        for (seq, end) in self.finals_taken.drain(..) {
            if end > written {
                if let Some(tx) = self.txs.get_mut(&seq) {
                    tx.final_handed_out = false;
                }
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The transport finished the TLS handshake after [`Event::StartTls`].
    pub fn tls_started(&mut self) {
        if self.phase != Phase::TlsHandshake {
            return;
        }
        self.tls = true;
        // RFC 3207 §4.2: forget everything learnt in plain text.
        self.caps = None;
        self.parser = ReplyParser::new();
        self.push_trace("-- TLS started".to_string());
        self.send(
            Command::Ehlo(self.config.helo_name.clone()),
            Some(Expect::Ehlo),
        );
        self.phase = Phase::Ehlo;
    }

    /// Ready, not quitting, and the window has room.
    pub fn can_submit(&self) -> bool {
        self.phase == Phase::Ready && !self.quitting && self.txs.len() < self.config.window.max(1)
    }

    /// Queues a transaction. One that cannot be sent on this server gets its
    /// outcome at once (`TooLarge`, `Unsupported`, ...) without any bytes.
    pub fn submit(&mut self, tx: Transaction) {
        let refusal = match (&self.caps, self.phase) {
            (Some(caps), Phase::Ready) if !self.quitting => precheck(caps, &tx),
            _ => Some(TxResult::NotSent),
        };
        if let Some(result) = refusal {
            let rcpts = tx.rcpt_to.iter().map(|r| (r.clone(), None)).collect();
            self.events.push_back(Event::Outcome(TxOutcome {
                id: tx.id,
                mail: None,
                rcpts,
                result,
            }));
            return;
        }
        let mut wire = Vec::new();
        data::normalize_crlf(&tx.data, &mut wire);
        let seq = self.next_seq;
        self.next_seq += 1;
        let n = tx.rcpt_to.len();
        self.txs.insert(
            seq,
            Tx {
                tx,
                wire,
                mail: None,
                rcpts: vec![None; n],
                last: None,
                next: Step::Mail,
                outstanding: 0,
                final_handed_out: false,
                behind_dot: false,
            },
        );
        self.unwritten.push_back(seq);
        self.pump();
    }

    /// Sends QUIT once every submitted transaction has its outcome.
    pub fn quit(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        self.quitting = true;
        self.pump();
    }

    /// EOF, reset or timeout: the outcome of every unfinished transaction
    /// (`Uncertain` if its end of data was handed out, else `NotSent`,
    /// unless its replies already decided it). Also queues `Closed`.
    pub fn connection_lost(&mut self) -> Vec<TxOutcome> {
        if self.phase == Phase::Closed {
            return Vec::new();
        }
        // Bytes not yet taken will never be written.
        self.take_output_discard();
        let outcomes = self.drain_txs(|tx| tx.decide_lost());
        let reason = if self.quit_sent {
            CloseReason::Quit
        } else {
            CloseReason::Error(SessionError::Protocol(ProtocolError(
                "the connection was lost".to_string(),
            )))
        };
        self.close(reason);
        outcomes
    }

    /// Take back every transaction none of whose commands has been written
    /// yet (the run is stopping, so nothing new starts); each is reported
    /// `NotSent`. Transactions already under way are left to finish.
    pub fn withdraw_unstarted(&mut self) -> Vec<TxOutcome> {
        let unstarted: Vec<u64> = self
            .unwritten
            .iter()
            .copied()
            .filter(|seq| {
                self.txs
                    .get(seq)
                    .is_some_and(|t| t.next == Step::Mail && t.outstanding == 0)
            })
            .collect();
        self.unwritten.retain(|seq| !unstarted.contains(seq));
        let outcomes = unstarted
            .iter()
            .filter_map(|seq| self.txs.remove(seq))
            .map(|tx| tx.outcome(TxResult::NotSent))
            .collect();
        self.pump();
        outcomes
    }

    /// Submitted transactions without an outcome yet.
    pub fn in_flight(&self) -> usize {
        self.txs.len()
    }

    /// Waiting for at least one reply.
    pub fn wants_read(&self) -> bool {
        !matches!(self.phase, Phase::Closed | Phase::TlsHandshake) && !self.expects.is_empty()
    }

    /// How long to wait for the next reply: the data timeout for an
    /// end-of-data reply, the command timeout otherwise.
    pub fn read_timeout(&self) -> Duration {
        match self.expects.front() {
            Some(Expect::DataEnd(_)) | Some(Expect::Bdat(_)) => self.config.data_timeout,
            _ => self.config.command_timeout,
        }
    }

    /// The current EHLO capabilities (none before EHLO and right after STARTTLS).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    /// The transport is TLS-protected (implicit or after STARTTLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Trace lines since the last call: `C: ...`, `S: ...`, `-- TLS started`.
    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// Commands written so far (not counting message data).
    pub fn commands_sent(&self) -> u64 {
        self.commands_sent
    }

    /// Complete replies parsed so far; the driver starts a new reply
    /// deadline whenever this changes.
    pub fn replies_received(&self) -> u64 {
        self.replies_received
    }

    fn push_trace(&mut self, line: String) {
        if self.tracing {
            self.trace.push(line);
        }
    }

    fn send(&mut self, cmd: Command, expect: Option<Expect>) {
        self.out.extend_from_slice(&cmd.to_wire());
        self.commands_sent += 1;
        if self.tracing {
            self.trace.push(format!("C: {}", cmd.trace()));
        }
        if let Some(e) = expect {
            self.expects.push_back(e);
        }
    }

    fn send_data(&mut self, seq: u64, bytes: &[u8], octets: usize) {
        self.out.extend_from_slice(bytes);
        self.finals_in_out.push((seq, self.out.len()));
        self.push_trace(format!("C: <message data, {octets} octets>"));
    }

    fn take_output_discard(&mut self) {
        self.out.clear();
        self.finals_in_out.clear();
    }

    fn on_reply(&mut self, reply: Reply) {
        let Some(expect) = self.expects.pop_front() else {
            if reply.code == 421 {
                self.service_closing(reply, None);
            } else {
                self.abort(SessionError::Unexpected(reply));
            }
            return;
        };
        if reply.code == 421 && !matches!(expect, Expect::Greeting | Expect::Quit) {
            self.service_closing(reply, Some(expect));
            return;
        }
        if !expect.admits(&reply) {
            self.out_of_step(expect, reply);
            return;
        }
        if reply.code == 503
            && self.refuses_after_dot(expect, &reply)
            && !self
                .config
                .no_pipelining_after_dot
                .swap(true, Ordering::SeqCst)
        {
            self.push_trace(
                "-- the server refuses commands pipelined after the end of data: \
                 each end-of-data reply is awaited from now on"
                    .to_string(),
            );
        }
        match expect {
            Expect::Greeting => {
                if reply.code == 220 {
                    self.send(
                        Command::Ehlo(self.config.helo_name.clone()),
                        Some(Expect::Ehlo),
                    );
                    self.phase = Phase::Ehlo;
                } else {
                    self.fail_with_quit(SessionError::Greeting(reply));
                }
            }
            Expect::Ehlo => {
                if reply.is_positive() {
                    self.caps = Some(Capabilities::from_ehlo(&reply));
                    self.after_hello();
                } else if reply.is_permanent() {
                    // RFC 5321 §3.2: an old server may know only HELO.
                    self.send(
                        Command::Helo(self.config.helo_name.clone()),
                        Some(Expect::Helo),
                    );
                    self.phase = Phase::Helo;
                } else {
                    self.fail_with_quit(SessionError::Helo(reply));
                }
            }
            Expect::Helo => {
                if reply.is_positive() {
                    self.caps = Some(Capabilities {
                        greeting: reply.lines.first().cloned().unwrap_or_default(),
                        ..Default::default()
                    });
                    self.after_hello();
                } else {
                    self.fail_with_quit(SessionError::Helo(reply));
                }
            }
            Expect::StartTls => {
                if reply.code != 220 {
                    self.fail_with_quit(SessionError::StartTlsRefused(reply));
                } else if self.parser.buffered_len() > 0 {
                    self.abort(SessionError::StartTlsInjection);
                } else {
                    self.phase = Phase::TlsHandshake;
                    self.events.push_back(Event::StartTls);
                }
            }
            Expect::Auth => self.on_auth_reply(reply),
            Expect::Mail(seq) => {
                let lockstep = !self.pipelining;
                if let Some(tx) = self.txs.get_mut(&seq) {
                    tx.outstanding -= 1;
                    let ok = reply.is_positive();
                    tx.mail = Some(reply);
                    if lockstep && !ok {
                        self.skip_rest(seq);
                    }
                }
                self.check_done(seq);
            }
            Expect::Rcpt(seq, i) => {
                let lockstep = !self.pipelining;
                if let Some(tx) = self.txs.get_mut(&seq) {
                    tx.outstanding -= 1;
                    tx.rcpts[i] = Some(reply);
                    if lockstep && i + 1 == tx.rcpts.len() && !tx.any_rcpt_ok() {
                        self.skip_rest(seq);
                    }
                }
                self.check_done(seq);
            }
            Expect::Data(seq) => {
                self.blocked = false;
                let Some(tx) = self.txs.get_mut(&seq) else {
                    return;
                };
                tx.outstanding -= 1;
                if reply.code != 354 {
                    tx.last = Some(reply);
                    self.check_done(seq);
                    return;
                }
                if !(tx.mail.as_ref().is_some_and(Reply::is_positive) && tx.any_rcpt_ok()) {
                    // 354 although MAIL or every RCPT was refused: the server
                    // has a transaction this client does not know of. Even an
                    // empty body would deliver a message, so end the session.
                    self.out_of_step(expect, reply);
                    return;
                }
                tx.outstanding += 1;
                self.expects.push_back(Expect::DataEnd(seq));
                let mut bytes = Vec::with_capacity(tx.wire.len() + 16);
                data::dot_stuff(&tx.wire, &mut bytes);
                tx.wire = Vec::new();
                let n = bytes.len();
                self.send_data(seq, &bytes, n);
                if self.dot_barrier() {
                    self.awaiting_end = Some(seq);
                }
            }
            Expect::DataEnd(seq) | Expect::Bdat(seq) => {
                if self.awaiting_end == Some(seq) {
                    self.awaiting_end = None;
                }
                if let Some(tx) = self.txs.get_mut(&seq) {
                    tx.outstanding -= 1;
                    tx.last = Some(reply);
                }
                self.check_done(seq);
            }
            Expect::Rset => {}
            Expect::Quit => self.close(CloseReason::Quit),
        }
    }

    /// Only 235 is a login (RFC 4954 §6). A 334 beyond the mechanism's
    /// steps, or any other 2xx/3xx, fails the AUTH rather than looping or
    /// going on unauthenticated.
    fn on_auth_reply(&mut self, reply: Reply) {
        let wants = self
            .sasl
            .as_ref()
            .is_some_and(SaslClient::expects_challenge);
        if reply.code == 334 && wants {
            let challenge = reply.lines.first().cloned().unwrap_or_default();
            let line = match self.sasl.as_mut() {
                Some(s) => s.respond(&challenge),
                None => "*".to_string(),
            };
            self.send(Command::AuthResponse(line), Some(Expect::Auth));
        } else if reply.code == 235 {
            self.sasl = None;
            self.become_ready();
        } else {
            self.sasl = None;
            self.fail_with_quit(SessionError::AuthFailed(reply));
        }
    }

    /// After EHLO/HELO: STARTTLS if required, then AUTH, then ready.
    fn after_hello(&mut self) {
        let Some(caps) = self.caps.clone() else {
            return;
        };
        if self.config.tls == TlsMode::StartTls && !self.tls {
            if !caps.starttls {
                self.fail_with_quit(SessionError::TlsRequired);
            } else {
                self.send(Command::StartTls, Some(Expect::StartTls));
                self.phase = Phase::StartTls;
            }
            return;
        }
        let Some(cred) = self.config.credentials.clone() else {
            self.become_ready();
            return;
        };
        // Checked before any secret is encoded, let alone written.
        if !self.tls && !self.config.allow_plaintext_auth {
            self.fail_with_quit(SessionError::AuthRequiresTls);
            return;
        }
        let Some(mech) = auth::choose(&caps.auth, cred.mechanism) else {
            self.fail_with_quit(SessionError::AuthUnsupported);
            return;
        };
        let sasl = SaslClient::new(mech, &cred.username, &cred.secret);
        let cmd = Command::Auth {
            mechanism: auth::mechanism_name(mech).to_string(),
            initial: sasl.initial_response(),
        };
        self.sasl = Some(sasl);
        self.send(cmd, Some(Expect::Auth));
        self.phase = Phase::Auth;
    }

    fn become_ready(&mut self) {
        let caps = self.caps.clone().unwrap_or_default();
        self.pipelining = caps.pipelining && self.config.use_pipelining;
        self.chunking = caps.chunking && self.config.use_chunking;
        self.phase = Phase::Ready;
        self.events.push_back(Event::Ready);
    }

    /// Writes whatever may be written now: a pending RSET, then transaction
    /// steps (whole transactions when pipelining, one command in lock-step),
    /// then QUIT once everything is finished.
    fn pump(&mut self) {
        if self.phase != Phase::Ready {
            return;
        }
        loop {
            if self.blocked
                || self.awaiting_end.is_some()
                || (!self.pipelining && !self.expects.is_empty())
            {
                break;
            }
            if self.rset_pending {
                self.rset_pending = false;
                if !(self.quitting && self.txs.is_empty()) {
                    self.send(Command::Rset, Some(Expect::Rset));
                }
                continue;
            }
            let Some(&seq) = self.unwritten.front() else {
                break;
            };
            if self.pipelining {
                if self.expects.len() >= MAX_UNANSWERED {
                    break;
                }
                while self.write_step(seq) {}
            } else {
                self.write_step(seq);
            }
        }
        if self.quitting
            && !self.quit_sent
            && self.txs.is_empty()
            && !self.blocked
            && self.awaiting_end.is_none()
            && (self.pipelining || self.expects.is_empty())
        {
            self.quit_sent = true;
            self.send(Command::Quit, Some(Expect::Quit));
        }
    }

    /// Writes the next step of `seq`; false when nothing more may follow now.
    fn write_step(&mut self, seq: u64) -> bool {
        let size_offered = self.caps.as_ref().is_some_and(|c| c.size_offered);
        let chunking = self.chunking;
        let Some(tx) = self.txs.get_mut(&seq) else {
            self.unwritten.retain(|&s| s != seq);
            return false;
        };
        let n = tx.tx.rcpt_to.len();
        let step = tx.next;
        tx.next = match step {
            Step::Mail if n > 0 => Step::Rcpt(0),
            Step::Rcpt(i) if i + 1 < n => Step::Rcpt(i + 1),
            Step::Mail | Step::Rcpt(_) => Step::Final,
            Step::Final | Step::Done => Step::Done,
        };
        if step != Step::Done {
            tx.outstanding += 1;
        }
        match step {
            Step::Mail => {
                tx.behind_dot = self
                    .expects
                    .iter()
                    .any(|e| matches!(e, Expect::DataEnd(_) | Expect::Bdat(_)));
                let cmd = Command::MailFrom {
                    addr: tx.tx.mail_from.clone(),
                    size: size_offered.then_some(tx.wire.len()),
                    eight_bit: tx.tx.eight_bit,
                    smtputf8: tx.tx.smtputf8,
                };
                self.send(cmd, Some(Expect::Mail(seq)));
                true
            }
            Step::Rcpt(i) => {
                let cmd = Command::RcptTo(tx.tx.rcpt_to[i].clone());
                self.send(cmd, Some(Expect::Rcpt(seq, i)));
                true
            }
            Step::Final if chunking => {
                // The chunk follows its BDAT command at once: RFC 3030 needs
                // no 354, which is what makes BDAT round-trip free.
                let wire = std::mem::take(&mut tx.wire);
                self.unwritten.retain(|&s| s != seq);
                let size = wire.len();
                self.send(Command::Bdat { size, last: true }, Some(Expect::Bdat(seq)));
                self.send_data(seq, &wire, size);
                if self.dot_barrier() {
                    self.awaiting_end = Some(seq);
                }
                false
            }
            Step::Final => {
                self.unwritten.retain(|&s| s != seq);
                self.send(Command::Data, Some(Expect::Data(seq)));
                self.blocked = true;
                false
            }
            Step::Done => {
                self.unwritten.retain(|&s| s != seq);
                false
            }
        }
    }

    /// Lock-step only: the reply already decided the transaction, so its
    /// remaining commands are not sent.
    fn skip_rest(&mut self, seq: u64) {
        if let Some(tx) = self.txs.get_mut(&seq) {
            tx.next = Step::Done;
        }
        self.unwritten.retain(|&s| s != seq);
    }

    /// Emits the outcome once every reply for `seq` is in.
    fn check_done(&mut self, seq: u64) {
        let done = self
            .txs
            .get(&seq)
            .is_some_and(|tx| tx.outstanding == 0 && tx.next == Step::Done);
        if !done {
            return;
        }
        let Some(tx) = self.txs.remove(&seq) else {
            return;
        };
        let result = tx.decide();
        if !matches!(result, TxResult::Accepted(_)) {
            // Leave no half transaction behind for the next MAIL.
            self.rset_pending = true;
        }
        self.events.push_back(Event::Outcome(tx.outcome(result)));
    }

    fn drain_txs(&mut self, decide: impl Fn(&Tx) -> TxResult) -> Vec<TxOutcome> {
        self.unwritten.clear();
        std::mem::take(&mut self.txs)
            .into_values()
            .map(|tx| {
                let r = decide(&tx);
                tx.outcome(r)
            })
            .collect()
    }

    fn close(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.expects.clear();
        self.blocked = false;
        self.awaiting_end = None;
        self.sasl = None;
        self.events.push_back(Event::Closed(reason));
    }

    /// Setup failed: say QUIT politely and close.
    fn fail_with_quit(&mut self, err: SessionError) {
        self.quit_sent = true;
        self.send(Command::Quit, None);
        let outcomes = self.drain_txs(|_| TxResult::NotSent);
        self.events.extend(outcomes.into_iter().map(Event::Outcome));
        self.close(CloseReason::Error(err));
    }

    /// Whether a 503 shows that the server refuses commands pipelined after
    /// the final dot: it says so (`… pipelined …`), or it accepted a MAIL
    /// written behind a dot and then lost the transaction (Haraka answers
    /// the RCPT and DATA that follow with 503).
    fn refuses_after_dot(&self, expect: Expect, reply: &Reply) -> bool {
        let says_so = reply.text().to_ascii_lowercase().contains("pipelin");
        match expect {
            Expect::Mail(_) | Expect::Rset => says_so,
            Expect::Rcpt(seq, _) | Expect::Data(seq) => {
                says_so
                    || self.txs.get(&seq).is_some_and(|tx| {
                        tx.behind_dot && tx.mail.as_ref().is_some_and(Reply::is_positive)
                    })
            }
            _ => false,
        }
    }

    /// Wait for the reply to each end of data before writing on.
    fn dot_barrier(&self) -> bool {
        self.pipelining && self.config.no_pipelining_after_dot.load(Ordering::SeqCst)
    }

    /// A reply that cannot answer its command: replies and commands slipped
    /// apart, so none of the replies to unfinished transactions is trusted.
    /// Each is `Uncertain` if its end of data left, else not sent.
    fn out_of_step(&mut self, expect: Expect, reply: Reply) {
        self.take_output_discard();
        let outcomes = self.drain_txs(Tx::decide_untrusted);
        self.events.extend(outcomes.into_iter().map(Event::Outcome));
        self.close(CloseReason::Error(SessionError::OutOfStep {
            command: expect.command(),
            reply,
        }));
    }

    /// The stream cannot be trusted: write nothing more and close.
    fn abort(&mut self, err: SessionError) {
        self.take_output_discard();
        let outcomes = self.drain_txs(|tx| tx.decide_lost());
        self.events.extend(outcomes.into_iter().map(Event::Outcome));
        self.close(CloseReason::Error(err));
    }

    /// 421: the server is closing. The transaction whose end of data it
    /// answers failed (transiently); every other one was not sent.
    fn service_closing(&mut self, reply: Reply, expect: Option<Expect>) {
        self.take_output_discard();
        let at_end = match expect {
            Some(Expect::DataEnd(seq)) | Some(Expect::Bdat(seq)) => Some(seq),
            _ => None,
        };
        if let Some(tx) = at_end.and_then(|seq| self.txs.get_mut(&seq)) {
            tx.last = Some(reply.clone());
        }
        let mut outcomes = Vec::new();
        for (seq, tx) in std::mem::take(&mut self.txs) {
            let result = if Some(seq) == at_end {
                tx.decide()
            } else {
                TxResult::NotSent
            };
            outcomes.push(tx.outcome(result));
        }
        self.unwritten.clear();
        self.events.extend(outcomes.into_iter().map(Event::Outcome));
        self.close(CloseReason::ServiceClosing(reply));
    }
}

/// Reasons not to send a transaction at all on this server.
fn precheck(caps: &Capabilities, tx: &Transaction) -> Option<TxResult> {
    // CR, LF or angle brackets in a path would let an address inject
    // commands; validated input never has them, so refuse outright.
    let bad = |a: &str| a.chars().any(|c| c.is_control() || c == '<' || c == '>');
    if bad(&tx.mail_from) || tx.rcpt_to.iter().any(|r| bad(r) || r.is_empty()) {
        return Some(TxResult::Unsupported(
            "an envelope address contains control characters or angle brackets".into(),
        ));
    }
    if tx.rcpt_to.is_empty() {
        return Some(TxResult::NoValidRecipients);
    }
    if tx.eight_bit && !caps.eight_bit_mime {
        return Some(TxResult::Unsupported(
            "the message has 8-bit content but the server does not offer 8BITMIME".into(),
        ));
    }
    if tx.smtputf8 && !caps.smtputf8 {
        return Some(TxResult::Unsupported(
            "the message needs SMTPUTF8, which the server does not offer".into(),
        ));
    }
    if let Some(limit) = caps.size {
        let size = data::normalized_len(&tx.data) as u64;
        if size > limit {
            return Some(TxResult::TooLarge { size, limit });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EHLO_FULL: &str = "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n";
    const EHLO_PIPE: &str = "250-mx.test\r\n250-PIPELINING\r\n250 SIZE\r\n";
    const EHLO_PLAIN: &str = "250 mx.test\r\n";

    fn config(tls: TlsMode) -> ClientConfig {
        ClientConfig::new("client.test", tls)
    }

    fn out(c: &mut Client) -> String {
        String::from_utf8(c.take_output()).unwrap()
    }

    fn feed(c: &mut Client, server: &str) -> String {
        c.feed(server.as_bytes());
        out(c)
    }

    fn events(c: &mut Client) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn outcomes(c: &mut Client) -> Vec<TxOutcome> {
        events(c)
            .into_iter()
            .filter_map(|e| match e {
                Event::Outcome(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    fn tx(id: u64, rcpts: &[&str], body: &str) -> Transaction {
        Transaction {
            id,
            mail_from: "from@a.test".into(),
            rcpt_to: rcpts.iter().map(|s| s.to_string()).collect(),
            data: Arc::new(body.as_bytes().to_vec()),
            eight_bit: false,
            smtputf8: false,
        }
    }

    fn r(code: u16, text: &str) -> Reply {
        Reply::new(code, text)
    }

    /// A client past greeting and EHLO, with its events drained.
    fn ready_with(cfg: ClientConfig, ehlo: &str) -> Client {
        let mut c = Client::new(cfg);
        assert_eq!(
            feed(&mut c, "220 mx.test ESMTP\r\n"),
            "EHLO client.test\r\n"
        );
        assert_eq!(feed(&mut c, ehlo), "");
        assert_eq!(events(&mut c), vec![Event::Ready]);
        c
    }

    fn ready(ehlo: &str) -> Client {
        ready_with(config(TlsMode::None), ehlo)
    }

    fn closed_error(c: &mut Client) -> SessionError {
        match events(&mut c.clone_events()).pop() {
            Some(Event::Closed(CloseReason::Error(e))) => e,
            other => panic!("expected Closed(Error), got {other:?}"),
        }
    }

    impl Client {
        /// Test helper: a throwaway client holding this one's events.
        fn clone_events(&mut self) -> Client {
            let mut c = Client::new(self.config.clone());
            c.events = std::mem::take(&mut self.events);
            c
        }
    }

    #[test]
    fn greeting_ehlo_ready_with_multiline_greeting() {
        let mut c = Client::new(config(TlsMode::None));
        assert!(c.wants_read());
        assert_eq!(out(&mut c), "");
        assert_eq!(feed(&mut c, "220-mx.test ESMTP\r\n220-"), "");
        assert_eq!(
            feed(&mut c, "no UCE\r\n220 hello\r\n"),
            "EHLO client.test\r\n"
        );
        assert_eq!(feed(&mut c, EHLO_FULL), "");
        assert_eq!(events(&mut c), vec![Event::Ready]);
        let caps = c.capabilities().unwrap();
        assert!(caps.pipelining && caps.chunking && caps.smtputf8);
        assert!(c.can_submit());
        assert!(!c.wants_read());
        assert!(!c.is_tls());
    }

    #[test]
    fn greeting_554_quits_with_greeting_error() {
        let mut c = Client::new(config(TlsMode::None));
        assert_eq!(feed(&mut c, "554 5.7.1 go away\r\n"), "QUIT\r\n");
        assert_eq!(
            closed_error(&mut c),
            SessionError::Greeting(Reply {
                code: 554,
                enhanced: Some(crate::smtp::reply::EnhancedCode {
                    class: 5,
                    subject: 7,
                    detail: 1
                }),
                lines: vec!["go away".into()]
            })
        );
        assert!(!c.wants_read());
        assert_eq!(feed(&mut c, "250 ignored\r\n"), "");
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn ehlo_5xx_falls_back_to_helo_and_lock_step() {
        let mut c = Client::new(config(TlsMode::None));
        feed(&mut c, "220 old\r\n");
        assert_eq!(
            feed(&mut c, "502 unknown command\r\n"),
            "HELO client.test\r\n"
        );
        assert_eq!(feed(&mut c, "250 old.test\r\n"), "");
        assert_eq!(events(&mut c), vec![Event::Ready]);
        assert_eq!(c.capabilities().unwrap().greeting, "old.test");
        c.submit(tx(7, &["b@b.test"], "Subject: x\r\n\r\n.hi\r\n"));
        // No PIPELINING: one command per write; no SIZE parameter.
        assert_eq!(out(&mut c), "MAIL FROM:<from@a.test>\r\n");
        assert_eq!(feed(&mut c, "250 ok\r\n"), "RCPT TO:<b@b.test>\r\n");
        assert_eq!(feed(&mut c, "250 ok\r\n"), "DATA\r\n");
        assert_eq!(c.read_timeout(), Duration::from_secs(300));
        assert_eq!(
            feed(&mut c, "354 go\r\n"),
            "Subject: x\r\n\r\n..hi\r\n.\r\n"
        );
        assert_eq!(c.read_timeout(), Duration::from_secs(600));
        assert_eq!(feed(&mut c, "250 queued as X\r\n"), "");
        let o = outcomes(&mut c);
        assert_eq!(
            o,
            vec![TxOutcome {
                id: 7,
                mail: Some(r(250, "ok")),
                rcpts: vec![("b@b.test".into(), Some(r(250, "ok")))],
                result: TxResult::Accepted(r(250, "queued as X")),
            }]
        );
        c.quit();
        assert_eq!(out(&mut c), "QUIT\r\n");
        assert_eq!(feed(&mut c, "221 bye\r\n"), "");
        assert_eq!(events(&mut c), vec![Event::Closed(CloseReason::Quit)]);
        assert!(!c.wants_read());
    }

    #[test]
    fn ehlo_4xx_is_a_helo_error() {
        let mut c = Client::new(config(TlsMode::None));
        feed(&mut c, "220 mx\r\n");
        assert_eq!(feed(&mut c, "450 busy\r\n"), "QUIT\r\n");
        assert_eq!(closed_error(&mut c), SessionError::Helo(r(450, "busy")));
    }

    #[test]
    fn starttls_required_but_not_offered() {
        let mut c = Client::new(config(TlsMode::StartTls));
        feed(&mut c, "220 mx\r\n");
        assert_eq!(feed(&mut c, EHLO_PIPE), "QUIT\r\n");
        assert_eq!(closed_error(&mut c), SessionError::TlsRequired);
    }

    #[test]
    fn starttls_upgrade_forgets_capabilities_and_says_ehlo_again() {
        let mut c = Client::new(config(TlsMode::StartTls));
        feed(&mut c, "220 mx\r\n");
        assert_eq!(
            feed(&mut c, "250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"),
            "STARTTLS\r\n"
        );
        assert_eq!(feed(&mut c, "220 2.0.0 ready\r\n"), "");
        assert_eq!(events(&mut c), vec![Event::StartTls]);
        assert!(!c.wants_read(), "the driver runs the handshake now");
        assert!(!c.is_tls());
        c.tls_started();
        assert!(c.is_tls());
        assert!(c.capabilities().is_none());
        assert_eq!(out(&mut c), "EHLO client.test\r\n");
        assert_eq!(feed(&mut c, EHLO_PIPE), "");
        assert_eq!(events(&mut c), vec![Event::Ready]);
        assert!(c.capabilities().unwrap().pipelining);
        let trace = c.take_trace();
        assert_eq!(
            trace,
            vec![
                "S: 220 mx",
                "C: EHLO client.test",
                "S: 250-mx",
                "S: 250-STARTTLS",
                "S: 250 AUTH PLAIN",
                "C: STARTTLS",
                "S: 220 2.0.0 ready",
                "-- TLS started",
                "C: EHLO client.test",
                "S: 250-mx.test",
                "S: 250-PIPELINING",
                "S: 250 SIZE",
            ]
        );
    }

    #[test]
    fn starttls_injection_is_refused_in_same_or_later_read() {
        let ehlo = "250-mx\r\n250 STARTTLS\r\n";
        let mut c = Client::new(config(TlsMode::StartTls));
        feed(&mut c, "220 mx\r\n");
        feed(&mut c, ehlo);
        assert_eq!(feed(&mut c, "220 go ahead\r\n250-injected\r\n"), "");
        assert_eq!(closed_error(&mut c), SessionError::StartTlsInjection);
        c.tls_started();
        assert_eq!(out(&mut c), "", "no EHLO after an injection");

        let mut c = Client::new(config(TlsMode::StartTls));
        feed(&mut c, "220 mx\r\n");
        feed(&mut c, ehlo);
        feed(&mut c, "220 go ahead\r\n");
        assert_eq!(events(&mut c), vec![Event::StartTls]);
        c.feed(b"2");
        assert_eq!(closed_error(&mut c), SessionError::StartTlsInjection);
    }

    #[test]
    fn starttls_refused() {
        let mut c = Client::new(config(TlsMode::StartTls));
        feed(&mut c, "220 mx\r\n");
        feed(&mut c, "250-mx\r\n250 STARTTLS\r\n");
        assert_eq!(feed(&mut c, "454 4.7.0 TLS not available\r\n"), "QUIT\r\n");
        assert!(matches!(
            closed_error(&mut c),
            SessionError::StartTlsRefused(Reply { code: 454, .. })
        ));
    }

    fn creds(mech: Option<AuthMech>) -> Credentials {
        Credentials {
            username: "me@163.com".into(),
            secret: "s3cret!".into(),
            mechanism: mech,
        }
    }

    #[test]
    fn auth_over_plain_text_is_refused_before_anything_secret() {
        let mut cfg = config(TlsMode::None);
        cfg.credentials = Some(creds(None));
        let mut c = Client::new(cfg);
        feed(&mut c, "220 mx\r\n");
        assert_eq!(
            feed(&mut c, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n"),
            "QUIT\r\n"
        );
        assert_eq!(closed_error(&mut c), SessionError::AuthRequiresTls);
    }

    #[test]
    fn auth_plain_over_implicit_tls_is_redacted_in_the_trace() {
        let mut cfg = config(TlsMode::Implicit);
        cfg.credentials = Some(creds(None));
        let mut c = Client::new(cfg);
        assert!(c.is_tls());
        feed(&mut c, "220 mx\r\n");
        let plain = auth::plain_initial("me@163.com", "s3cret!");
        assert_eq!(
            feed(&mut c, "250-mx\r\n250 AUTH LOGIN PLAIN\r\n"),
            format!("AUTH PLAIN {plain}\r\n")
        );
        assert!(events(&mut c).is_empty(), "not ready before 235");
        assert_eq!(feed(&mut c, "235 2.7.0 ok\r\n"), "");
        assert_eq!(events(&mut c), vec![Event::Ready]);
        let trace = c.take_trace().join("\n");
        assert!(trace.contains("C: AUTH PLAIN ***"), "{trace}");
        assert!(
            !trace.contains(&plain) && !trace.contains("s3cret"),
            "{trace}"
        );
    }

    #[test]
    fn auth_login_answers_prompts_and_hides_them() {
        let mut cfg = config(TlsMode::None);
        cfg.credentials = Some(creds(Some(AuthMech::Login)));
        cfg.allow_plaintext_auth = true;
        let mut c = Client::new(cfg);
        feed(&mut c, "220 mx\r\n");
        assert_eq!(
            feed(&mut c, "250-mx\r\n250 AUTH=LOGIN PLAIN\r\n"),
            "AUTH LOGIN\r\n"
        );
        assert_eq!(feed(&mut c, "334 VXNlcm5hbWU6\r\n"), "bWVAMTYzLmNvbQ==\r\n");
        assert_eq!(feed(&mut c, "334 UGFzc3dvcmQ6\r\n"), "czNjcmV0IQ==\r\n");
        assert_eq!(feed(&mut c, "235 ok\r\n"), "");
        assert_eq!(events(&mut c), vec![Event::Ready]);
        let trace = c.take_trace();
        assert_eq!(
            trace[trace.len() - 6..],
            [
                "C: AUTH LOGIN",
                "S: 334 VXNlcm5hbWU6",
                "C: ***",
                "S: 334 UGFzc3dvcmQ6",
                "C: ***",
                "S: 235 ok",
            ]
        );
    }

    #[test]
    fn auth_failure_and_unsupported() {
        let mut cfg = config(TlsMode::Implicit);
        cfg.credentials = Some(creds(None));
        let mut c = Client::new(cfg.clone());
        feed(&mut c, "220 mx\r\n");
        feed(&mut c, "250-mx\r\n250 AUTH PLAIN\r\n");
        assert_eq!(
            feed(&mut c, "535 5.7.8 Authentication credentials invalid\r\n"),
            "QUIT\r\n"
        );
        assert!(matches!(
            closed_error(&mut c),
            SessionError::AuthFailed(Reply { code: 535, .. })
        ));

        let mut c = Client::new(cfg.clone());
        feed(&mut c, "220 mx\r\n");
        assert_eq!(feed(&mut c, "250-mx\r\n250 AUTH CRAM-MD5\r\n"), "QUIT\r\n");
        assert_eq!(closed_error(&mut c), SessionError::AuthUnsupported);

        // A forced mechanism that is not offered is unsupported too.
        cfg.credentials = Some(creds(Some(AuthMech::XOAuth2)));
        let mut c = Client::new(cfg);
        feed(&mut c, "220 mx\r\n");
        assert_eq!(feed(&mut c, "250-mx\r\n250 AUTH PLAIN\r\n"), "QUIT\r\n");
        assert_eq!(closed_error(&mut c), SessionError::AuthUnsupported);
    }

    #[test]
    fn xoauth2_error_challenge_gets_an_empty_line() {
        let mut cfg = config(TlsMode::Implicit);
        cfg.credentials = Some(creds(Some(AuthMech::XOAuth2)));
        let mut c = Client::new(cfg);
        feed(&mut c, "220 mx\r\n");
        let ir = auth::xoauth2_initial("me@163.com", "s3cret!");
        assert_eq!(
            feed(&mut c, "250-mx\r\n250 AUTH XOAUTH2\r\n"),
            format!("AUTH XOAUTH2 {ir}\r\n")
        );
        assert_eq!(feed(&mut c, "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"), "\r\n");
        assert_eq!(feed(&mut c, "535 5.7.8 bad token\r\n"), "QUIT\r\n");
        assert!(matches!(closed_error(&mut c), SessionError::AuthFailed(_)));
    }

    #[test]
    fn withdraw_takes_back_only_transactions_not_yet_started() {
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test"], "one\r\n"));
        c.submit(tx(2, &["c@c.test"], "two\r\n"));
        c.submit(tx(3, &["d@d.test"], "three\r\n"));
        // Only the first is on the wire: the rest wait for its 354.
        assert_eq!(out(&mut c).matches("MAIL FROM").count(), 1);
        let back = c.withdraw_unstarted();
        let ids: Vec<u64> = back.iter().map(|o| o.id).collect();
        assert_eq!(ids, [2, 3]);
        assert!(back.iter().all(|o| o.result == TxResult::NotSent));
        // The first finishes, and nothing else follows its dot.
        assert_eq!(
            feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
            "one\r\n.\r\n"
        );
        assert_eq!(feed(&mut c, "250 queued\r\n"), "");
        let o = outcomes(&mut c);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].result, TxResult::Accepted(r(250, "queued")));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn a_250_to_data_is_out_of_step_and_the_message_is_not_sent() {
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test"], "one\r\n"));
        out(&mut c);
        // The body never left: no 354 came.
        assert_eq!(feed(&mut c, "250 ok\r\n250 ok\r\n250 2.0.0 ok\r\n"), "");
        let ev = events(&mut c);
        assert!(
            ev.iter().any(
                |e| matches!(e, Event::Outcome(o) if o.id == 1 && o.result == TxResult::NotSent)
            ),
            "{ev:?}"
        );
        assert!(
            matches!(
                ev.last(),
                Some(Event::Closed(CloseReason::Error(SessionError::OutOfStep {
                    command: "DATA",
                    ..
                })))
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn an_extra_reply_in_a_pipelined_data_group_shifts_no_outcome() {
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test", "c@c.test"], "one\r\n"));
        out(&mut c);
        // One 250 too many after MAIL: the 550 of b@ lands on c@'s RCPT and
        // c@'s 250 on DATA, which only 354 can answer.
        feed(
            &mut c,
            "250 2.1.0 ok\r\n250 2.1.0 ok\r\n550 5.1.1 no b\r\n250 2.1.5 ok\r\n",
        );
        let ev = events(&mut c);
        let o: Vec<&TxOutcome> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Outcome(o) => Some(o),
                _ => None,
            })
            .collect();
        assert_eq!(o.len(), 1, "{ev:?}");
        assert_eq!(o[0].result, TxResult::NotSent);
        assert!(matches!(
            ev.last(),
            Some(Event::Closed(CloseReason::Error(
                SessionError::OutOfStep { .. }
            )))
        ));
    }

    #[test]
    fn an_extra_reply_in_a_pipelined_bdat_group_is_caught_at_the_end_of_data() {
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "one\r\n"));
        c.submit(tx(2, &["c@c.test"], "two\r\n"));
        out(&mut c);
        // MAIL gets two replies; BDAT would get the RCPT's 2.1.5.
        feed(
            &mut c,
            "250 2.1.0 ok\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n",
        );
        let ev = events(&mut c);
        assert!(
            !ev.iter().any(
                |e| matches!(e, Event::Outcome(o) if matches!(o.result, TxResult::Accepted(_)))
            ),
            "{ev:?}"
        );
        // The BDAT chunks left, so the outcome is unknown rather than sent.
        assert!(ev.iter().all(|e| match e {
            Event::Outcome(o) => o.result == TxResult::NotSent || o.result == TxResult::Uncertain,
            _ => true,
        }));
        assert!(matches!(
            ev.last(),
            Some(Event::Closed(CloseReason::Error(SessionError::OutOfStep {
                command: "BDAT",
                ..
            })))
        ));
    }

    #[test]
    fn only_235_is_a_login() {
        for answer in [
            "250 2.0.0 ok\r\n",
            "220 hi\r\n",
            "334 again\r\n",
            "354 what\r\n",
        ] {
            let mut cfg = config(TlsMode::Implicit);
            cfg.credentials = Some(creds(Some(AuthMech::Plain)));
            let mut c = Client::new(cfg);
            feed(&mut c, "220 mx\r\n");
            feed(&mut c, "250-mx\r\n250 AUTH PLAIN\r\n");
            assert_eq!(feed(&mut c, answer), "QUIT\r\n", "{answer}");
            let ev = events(&mut c);
            assert!(!ev.contains(&Event::Ready), "{answer}: {ev:?}");
            assert!(
                matches!(
                    ev.last(),
                    Some(Event::Closed(CloseReason::Error(SessionError::AuthFailed(
                        _
                    ))))
                ),
                "{answer}: {ev:?}"
            );
        }
        // LOGIN answers its two prompts, and a third 334 ends it.
        let mut cfg = config(TlsMode::Implicit);
        cfg.credentials = Some(creds(Some(AuthMech::Login)));
        let mut c = Client::new(cfg);
        feed(&mut c, "220 mx\r\n");
        feed(&mut c, "250-mx\r\n250 AUTH LOGIN\r\n");
        assert_ne!(feed(&mut c, "334 VXNlcm5hbWU6\r\n"), "QUIT\r\n");
        assert_ne!(feed(&mut c, "334 UGFzc3dvcmQ6\r\n"), "QUIT\r\n");
        assert_eq!(feed(&mut c, "334 UGFzc3dvcmQ6\r\n"), "QUIT\r\n");
        assert!(matches!(closed_error(&mut c), SessionError::AuthFailed(_)));
    }

    #[test]
    fn echoed_secrets_are_masked_in_replies_and_the_trace() {
        let mut cfg = config(TlsMode::Implicit);
        cfg.credentials = Some(creds(Some(AuthMech::Plain)));
        let mut c = Client::new(cfg);
        feed(&mut c, "220 mx\r\n");
        let ir = auth::plain_initial("me@163.com", "s3cret!");
        assert_eq!(
            feed(&mut c, "250-mx\r\n250 AUTH PLAIN\r\n"),
            format!("AUTH PLAIN {ir}\r\n")
        );
        feed(
            &mut c,
            &format!("535-5.7.8 you sent {ir}\r\n535 5.7.8 s3cret! is wrong\r\n"),
        );
        let trace = c.take_trace().join("\n");
        let err = closed_error(&mut c).to_string();
        for text in [&trace, &err] {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(!text.contains(ir.trim_end_matches('=')), "{text}");
            assert!(text.contains("***"), "{text}");
        }
    }

    #[test]
    fn a_transaction_lost_behind_the_dot_is_not_sent_and_is_learnt() {
        // Haraka's shape: MAIL written behind a dot is accepted, then the
        // transaction is gone, so RCPT and DATA get 503.
        let cfg = config(TlsMode::None);
        let shared = cfg.no_pipelining_after_dot.clone();
        let mut c = ready_with(cfg, EHLO_PIPE);
        c.submit(tx(1, &["b@b.test"], "one\r\n"));
        c.submit(tx(2, &["c@c.test"], "two\r\n"));
        out(&mut c);
        feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n");
        feed(
            &mut c,
            "250 2.0.0 queued\r\n250 2.1.0 sender ok\r\n\
             503 5.5.1 Use MAIL before RCPT\r\n503 5.5.1 MAIL required first\r\n",
        );
        let o = outcomes(&mut c);
        assert!(matches!(o[0].result, TxResult::Accepted(_)));
        // Not a rejection of c@: the message never started.
        assert_eq!((o[1].id, &o[1].result), (2, &TxResult::NotSent));
        assert!(shared.load(Ordering::SeqCst));
    }

    #[test]
    fn a_refusal_of_commands_after_the_dot_stops_pipelining_past_it() {
        let cfg = config(TlsMode::None);
        let shared = cfg.no_pipelining_after_dot.clone();
        let mut c = ready_with(cfg.clone(), EHLO_PIPE);
        c.submit(tx(1, &["b@b.test"], "one\r\n"));
        c.submit(tx(2, &["c@c.test"], "two\r\n"));
        out(&mut c);
        assert_eq!(
            feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
            "one\r\n.\r\nMAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<c@c.test>\r\nDATA\r\n"
        );
        feed(
            &mut c,
            "250 2.0.0 queued\r\n503 5.5.0 Command pipelined after DATA\r\n\
             503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n",
        );
        let o = outcomes(&mut c);
        assert!(matches!(o[0].result, TxResult::Accepted(_)));
        assert_eq!((o[1].id, &o[1].result), (2, &TxResult::NotSent));
        assert!(shared.load(Ordering::SeqCst), "learnt for every session");

        // A new session with the same configuration waits after each dot.
        let mut c = ready_with(cfg, EHLO_PIPE);
        c.submit(tx(3, &["d@d.test"], "three\r\n"));
        c.submit(tx(4, &["e@e.test"], "four\r\n"));
        out(&mut c);
        assert_eq!(
            feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
            "three\r\n.\r\n"
        );
        assert_eq!(
            feed(&mut c, "250 queued\r\n"),
            "MAIL FROM:<from@a.test> SIZE=6\r\nRCPT TO:<e@e.test>\r\nDATA\r\n"
        );
        assert_eq!(
            feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n"),
            "four\r\n.\r\n"
        );
        c.quit();
        assert_eq!(out(&mut c), "", "QUIT waits for the dot's reply too");
        assert_eq!(feed(&mut c, "250 queued\r\n"), "QUIT\r\n");
    }

    #[test]
    fn pipelined_data_sends_next_commands_with_the_dot() {
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test", "c@c.test"], "one\r\n"));
        assert_eq!(
            out(&mut c),
            "MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<b@b.test>\r\nRCPT TO:<c@c.test>\r\nDATA\r\n"
        );
        c.submit(tx(2, &["d@d.test"], ".two"));
        assert_eq!(out(&mut c), "", "nothing may follow DATA before its 354");
        assert_eq!(
            feed(
                &mut c,
                "250 ok\r\n250 ok\r\n452 4.5.3 too many\r\n354 go\r\n"
            ),
            "one\r\n.\r\nMAIL FROM:<from@a.test> SIZE=6\r\nRCPT TO:<d@d.test>\r\nDATA\r\n"
        );
        assert_eq!(
            feed(
                &mut c,
                "250 2.0.0 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n"
            ),
            "..two\r\n.\r\n"
        );
        let o = outcomes(&mut c);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].id, 1);
        assert_eq!(
            o[0].rcpts,
            vec![
                ("b@b.test".to_string(), Some(r(250, "ok"))),
                (
                    "c@c.test".to_string(),
                    Some(Reply {
                        code: 452,
                        enhanced: Some(crate::smtp::reply::EnhancedCode {
                            class: 4,
                            subject: 5,
                            detail: 3
                        }),
                        lines: vec!["too many".into()]
                    })
                ),
            ]
        );
        assert!(matches!(&o[0].result, TxResult::Accepted(r) if r.text() == "queued 1"));
        assert_eq!(feed(&mut c, "250 queued 2\r\n"), "");
        let o = outcomes(&mut c);
        assert_eq!(o[0].result, TxResult::Accepted(r(250, "queued 2")));
        c.quit();
        assert_eq!(out(&mut c), "QUIT\r\n");
    }

    #[test]
    fn pipelined_bdat_writes_everything_without_waiting() {
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "one\n"));
        c.submit(tx(2, &["c@c.test"], "two"));
        assert_eq!(
            out(&mut c),
            "MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<b@b.test>\r\nBDAT 5 LAST\r\none\r\n\
             MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<c@c.test>\r\nBDAT 5 LAST\r\ntwo\r\n"
        );
        assert_eq!(c.in_flight(), 2);
        assert_eq!(c.read_timeout(), Duration::from_secs(300));
        feed(&mut c, "250 ok\r\n250 ok\r\n");
        assert_eq!(
            c.read_timeout(),
            Duration::from_secs(600),
            "next reply ends a message"
        );
        assert_eq!(feed(&mut c, "250 q1\r\n250 ok\r\n250 ok\r\n250 q2\r\n"), "");
        let o = outcomes(&mut c);
        assert_eq!(
            o.iter().map(|o| o.result.clone()).collect::<Vec<_>>(),
            vec![
                TxResult::Accepted(r(250, "q1")),
                TxResult::Accepted(r(250, "q2"))
            ]
        );
        assert_eq!(c.in_flight(), 0);
        let trace = c.take_trace();
        assert!(trace.contains(&"C: BDAT 5 LAST".to_string()));
        assert!(trace.contains(&"C: <message data, 5 octets>".to_string()));
    }

    #[test]
    fn chunking_without_pipelining_is_lock_step_bdat() {
        let mut c = ready("250-mx\r\n250 CHUNKING\r\n");
        c.submit(tx(1, &["b@b.test"], "x\r\n"));
        assert_eq!(out(&mut c), "MAIL FROM:<from@a.test>\r\n");
        assert_eq!(feed(&mut c, "250 ok\r\n"), "RCPT TO:<b@b.test>\r\n");
        assert_eq!(feed(&mut c, "250 ok\r\n"), "BDAT 3 LAST\r\nx\r\n");
        assert_eq!(feed(&mut c, "250 done\r\n"), "");
        assert_eq!(
            outcomes(&mut c)[0].result,
            TxResult::Accepted(r(250, "done"))
        );
    }

    #[test]
    fn extensions_disabled_by_config_are_ignored() {
        let mut cfg = config(TlsMode::None);
        cfg.use_chunking = false;
        let mut c = ready_with(cfg.clone(), EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        assert!(out(&mut c).ends_with("RCPT TO:<b@b.test>\r\nDATA\r\n"));
        cfg.use_pipelining = false;
        let mut c = ready_with(cfg, EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        assert_eq!(out(&mut c), "MAIL FROM:<from@a.test> SIZE=3\r\n");
    }

    #[test]
    fn mail_parameters_and_refusals_without_sending() {
        let mut c = ready(EHLO_FULL);
        let mut t = tx(1, &["b@b.test"], "é");
        t.eight_bit = true;
        t.smtputf8 = true;
        c.submit(t);
        assert!(
            out(&mut c).starts_with("MAIL FROM:<from@a.test> SIZE=4 BODY=8BITMIME SMTPUTF8\r\n")
        );

        let mut c = ready(EHLO_PIPE);
        let mut t = tx(2, &["b@b.test"], "x");
        t.eight_bit = true;
        c.submit(t);
        let mut t = tx(3, &["b@b.test"], "x");
        t.smtputf8 = true;
        c.submit(t);
        assert_eq!(out(&mut c), "");
        let o = outcomes(&mut c);
        assert!(matches!(&o[0].result, TxResult::Unsupported(m) if m.contains("8BITMIME")));
        assert!(matches!(&o[1].result, TxResult::Unsupported(m) if m.contains("SMTPUTF8")));
        assert_eq!(c.in_flight(), 0);

        let mut c = ready("250-mx\r\n250 SIZE 10\r\n");
        c.submit(tx(4, &["b@b.test"], "0123456789"));
        assert_eq!(out(&mut c), "");
        assert_eq!(
            outcomes(&mut c)[0].result,
            TxResult::TooLarge {
                size: 12,
                limit: 10
            }
        );
        c.submit(tx(5, &["b@b.test"], "01234567\n"));
        assert_eq!(out(&mut c), "MAIL FROM:<from@a.test> SIZE=10\r\n");
    }

    #[test]
    fn addresses_that_could_inject_commands_are_refused() {
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test>\r\nRCPT TO:<evil@x"], "x"));
        let mut t = tx(2, &["b@b.test"], "x");
        t.mail_from = "a@a\nDATA".into();
        c.submit(t);
        assert_eq!(out(&mut c), "");
        let o = outcomes(&mut c);
        assert!(o
            .iter()
            .all(|o| matches!(o.result, TxResult::Unsupported(_))));
    }

    #[test]
    fn all_recipients_refused_data_path_resets() {
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test", "c@c.test"], "x"));
        out(&mut c);
        assert_eq!(
            feed(
                &mut c,
                "250 ok\r\n550 no\r\n452 full\r\n554 no valid recipients\r\n"
            ),
            "RSET\r\n"
        );
        let o = outcomes(&mut c);
        assert_eq!(o[0].result, TxResult::NoValidRecipients);
        assert_eq!(o[0].rcpts[1].1, Some(r(452, "full")));
        assert_eq!(feed(&mut c, "250 reset\r\n"), "");
        assert!(!c.wants_read());
    }

    #[test]
    fn broken_server_354_without_recipients_gets_nothing_not_even_a_dot() {
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test"], "secret body"));
        out(&mut c);
        // A dot would deliver an empty message to whatever the server holds.
        assert_eq!(feed(&mut c, "250 ok\r\n550 no\r\n354 go\r\n"), "");
        let ev = events(&mut c);
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Outcome(o) if o.result == TxResult::NotSent)),
            "{ev:?}"
        );
        assert!(matches!(
            ev.last(),
            Some(Event::Closed(CloseReason::Error(
                SessionError::OutOfStep { .. }
            )))
        ));
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test"], "secret body"));
        out(&mut c);
        assert_eq!(feed(&mut c, "503 nested MAIL\r\n250 ok\r\n354 go\r\n"), "");
        assert!(matches!(
            closed_error(&mut c),
            SessionError::OutOfStep { .. }
        ));
    }

    #[test]
    fn all_recipients_refused_bdat_path_resets() {
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        out(&mut c);
        assert_eq!(
            feed(
                &mut c,
                "250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n"
            ),
            "RSET\r\n"
        );
        assert_eq!(outcomes(&mut c)[0].result, TxResult::NoValidRecipients);
    }

    #[test]
    fn lock_step_all_recipients_refused_skips_data() {
        let mut c = ready(EHLO_PLAIN);
        c.submit(tx(1, &["b@b.test"], "x"));
        out(&mut c);
        assert_eq!(feed(&mut c, "250 ok\r\n"), "RCPT TO:<b@b.test>\r\n");
        assert_eq!(feed(&mut c, "550 no\r\n"), "RSET\r\n");
        assert_eq!(outcomes(&mut c)[0].result, TxResult::NoValidRecipients);
    }

    #[test]
    fn mail_refused_consumes_pipelined_replies_then_resets() {
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        out(&mut c);
        assert_eq!(
            feed(&mut c, "550 5.7.1 sender rejected\r\n503 no mail\r\n"),
            ""
        );
        assert!(outcomes(&mut c).is_empty(), "BDAT reply still owed");
        assert_eq!(feed(&mut c, "503 no mail\r\n"), "RSET\r\n");
        let o = outcomes(&mut c);
        assert!(matches!(&o[0].result, TxResult::Failed(r) if r.code == 550));
        assert!(o[0].mail.as_ref().is_some_and(|m| m.code == 550));
    }

    #[test]
    fn failed_bdat_then_503_to_next_mail_is_not_sent() {
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        c.submit(tx(2, &["c@c.test"], "y"));
        out(&mut c);
        assert_eq!(
            feed(&mut c, "250 ok\r\n250 ok\r\n552 5.3.4 too big\r\n"),
            "RSET\r\n"
        );
        assert_eq!(
            feed(
                &mut c,
                "503 5.5.1 nested MAIL\r\n503 no\r\n503 no\r\n250 reset\r\n"
            ),
            "RSET\r\n"
        );
        let o = outcomes(&mut c);
        assert!(matches!(&o[0].result, TxResult::Failed(r) if r.code == 552));
        assert_eq!(o[1].result, TxResult::NotSent);
    }

    #[test]
    fn reply_421_closes_with_per_transaction_outcomes() {
        // 421 as the end-of-data reply: that message failed, later ones not sent.
        let mut c = ready(EHLO_FULL);
        for id in 1..=3 {
            c.submit(tx(id, &["b@b.test"], "x"));
        }
        out(&mut c);
        feed(&mut c, "250 ok\r\n250 ok\r\n250 q1\r\n250 ok\r\n250 ok\r\n");
        assert_eq!(feed(&mut c, "421 4.3.2 shutting down\r\n"), "");
        let ev = events(&mut c);
        let results: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Outcome(o) => Some((o.id, o.result.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(results[0], (1, TxResult::Accepted(r(250, "q1"))));
        assert!(matches!(&results[1], (2, TxResult::Failed(r)) if r.code == 421));
        assert_eq!(results[2], (3, TxResult::NotSent));
        assert!(matches!(
            ev.last(),
            Some(Event::Closed(CloseReason::ServiceClosing(Reply {
                code: 421,
                ..
            })))
        ));
        assert!(!c.wants_read());

        // 421 to a RCPT: not sent; no QUIT after 421.
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test"], "x"));
        out(&mut c);
        assert_eq!(feed(&mut c, "250 ok\r\n421 too many errors\r\n"), "");
        assert_eq!(outcomes(&mut c)[0].result, TxResult::NotSent);

        // Unsolicited 421 while idle.
        let mut c = ready(EHLO_PIPE);
        assert_eq!(feed(&mut c, "421 idle timeout\r\n"), "");
        assert!(matches!(
            events(&mut c).as_slice(),
            [Event::Closed(CloseReason::ServiceClosing(_))]
        ));
        assert!(!c.can_submit());
    }

    #[test]
    fn window_bounds_transactions_in_flight() {
        let mut cfg = config(TlsMode::None);
        cfg.window = 3;
        let mut c = ready_with(cfg, EHLO_FULL);
        let mut n = 0;
        while c.can_submit() {
            n += 1;
            c.submit(tx(n, &["b@b.test"], "x"));
        }
        assert_eq!(n, 3);
        assert_eq!(out(&mut c).matches("BDAT").count(), 3);
        feed(&mut c, "250 ok\r\n250 ok\r\n250 q\r\n");
        assert!(c.can_submit());
        assert_eq!(c.in_flight(), 2);
    }

    #[test]
    fn unanswered_commands_stay_bounded_with_a_large_window() {
        let mut cfg = config(TlsMode::None);
        let n = MAX_UNANSWERED as u64;
        cfg.window = MAX_UNANSWERED * 2;
        let mut c = ready_with(cfg, EHLO_FULL);
        for id in 0..n {
            c.submit(tx(id, &["b@b.test"], "x"));
        }
        // 3 commands a message; a message starts only below the limit.
        let first = out(&mut c);
        assert_eq!(
            first.matches("MAIL FROM").count(),
            MAX_UNANSWERED.div_ceil(3)
        );
        assert_eq!(c.in_flight(), n as usize);
        // Answering one message's commands releases exactly one more.
        let more = feed(&mut c, "250 ok\r\n250 ok\r\n250 q\r\n");
        assert_eq!(more.matches("MAIL FROM").count(), 1);
    }

    #[test]
    fn connection_lost_uncertain_only_after_the_dot_left() {
        let mut c = ready(EHLO_PIPE);
        c.submit(tx(1, &["b@b.test"], "x"));
        c.submit(tx(2, &["c@c.test"], "y"));
        out(&mut c);
        // tx1's dot and tx2's commands leave; tx2 never reaches its data.
        assert!(!feed(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n").is_empty());
        let lost = c.connection_lost();
        assert_eq!(
            lost.iter()
                .map(|o| (o.id, o.result.clone()))
                .collect::<Vec<_>>(),
            vec![(1, TxResult::Uncertain), (2, TxResult::NotSent)]
        );
        assert!(matches!(
            events(&mut c).as_slice(),
            [Event::Closed(CloseReason::Error(SessionError::Protocol(_)))]
        ));
        assert!(c.connection_lost().is_empty());
    }

    #[test]
    fn data_not_taken_before_the_loss_is_not_sent() {
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        let lost = c.connection_lost();
        assert_eq!(lost[0].result, TxResult::NotSent);
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        out(&mut c);
        assert_eq!(c.connection_lost()[0].result, TxResult::Uncertain);
    }

    #[test]
    fn a_failed_write_takes_back_only_the_ends_it_never_wrote() {
        // BDAT LAST: each message's end is in the first output.
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        c.submit(tx(2, &["c@c.test"], "y"));
        let bytes = c.take_output();
        let first_end = bytes
            .windows(4)
            .position(|w| w == b"\nx\r\n")
            .expect("message 1 in the output")
            + 4;
        // Message 1's end left, message 2's did not.
        c.output_partly_written(first_end);
        let lost = c.connection_lost();
        assert_eq!(
            lost.iter()
                .map(|o| (o.id, o.result.clone()))
                .collect::<Vec<_>>(),
            vec![(1, TxResult::Uncertain), (2, TxResult::NotSent)]
        );
    }

    #[test]
    fn quit_waits_for_outcomes_and_eof_after_quit_is_clean() {
        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        c.quit();
        assert!(!c.can_submit());
        assert!(!out(&mut c).contains("QUIT"));
        assert_eq!(feed(&mut c, "250 ok\r\n250 ok\r\n250 q\r\n"), "QUIT\r\n");
        assert!(c.connection_lost().is_empty());
        assert_eq!(
            events(&mut c).last(),
            Some(&Event::Closed(CloseReason::Quit))
        );
    }

    #[test]
    fn quit_before_ready_quits_once_ready() {
        let mut c = Client::new(config(TlsMode::None));
        c.quit();
        feed(&mut c, "220 mx\r\n");
        assert_eq!(feed(&mut c, EHLO_PIPE), "QUIT\r\n");
    }

    #[test]
    fn trace_escapes_server_control_characters() {
        let mut c = Client::new(config(TlsMode::None));
        feed(&mut c, "220 evil\x1b[2J\x07 \u{202e}txt\r\n");
        assert_eq!(
            c.take_trace(),
            vec![
                "S: 220 evil\\x1b[2J\\x07 \\u{202e}txt",
                "C: EHLO client.test"
            ]
        );
        c.set_trace(false);
        feed(&mut c, EHLO_FULL);
        assert!(c.take_trace().is_empty());
    }

    #[test]
    fn unexpected_and_malformed_replies_end_the_session() {
        let mut c = ready(EHLO_PIPE);
        feed(&mut c, "250 surprise\r\n");
        assert_eq!(
            closed_error(&mut c),
            SessionError::Unexpected(r(250, "surprise"))
        );

        let mut c = ready(EHLO_FULL);
        c.submit(tx(1, &["b@b.test"], "x"));
        out(&mut c);
        c.feed(b"HTTP/1.1 400 Bad Request\r\n");
        let ev = events(&mut c);
        assert!(matches!(&ev[0], Event::Outcome(o) if o.result == TxResult::Uncertain));
        assert!(matches!(
            &ev[1],
            Event::Closed(CloseReason::Error(SessionError::Protocol(_)))
        ));
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let dbg = format!("{:?}", creds(None));
        assert!(
            !dbg.contains("s3cret") && dbg.contains("me@163.com"),
            "{dbg}"
        );
        let mut cfg = config(TlsMode::Implicit);
        cfg.credentials = Some(creds(None));
        let dbg = format!("{:?}", Client::new(cfg));
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }

    /// One scripted exchange; the server's bytes are fed in `chunk`-byte pieces.
    fn scripted_exchange(chunk: usize) -> (Vec<u8>, Vec<Event>) {
        struct Run {
            c: Client,
            chunk: usize,
            wire: Vec<u8>,
            evs: Vec<Event>,
        }
        impl Run {
            fn step(&mut self, server: &str) {
                for piece in server.as_bytes().chunks(self.chunk) {
                    self.c.feed(piece);
                    self.wire.extend(self.c.take_output());
                    self.evs.extend(std::iter::from_fn(|| self.c.poll_event()));
                }
            }
        }
        let mut run = Run {
            c: Client::new(config(TlsMode::None)),
            chunk,
            wire: Vec::new(),
            evs: Vec::new(),
        };
        run.step("220-mx\r\n220 ready\r\n");
        run.step(EHLO_PIPE);
        run.c
            .submit(tx(1, &["b@b.test", "c@c.test"], "hello\r\n.\r\n"));
        run.c.submit(tx(2, &["d@d.test"], "bye"));
        run.step("250 2.1.0 ok\r\n550-5.1.1 no\r\n550 5.1.1 user\r\n250 ok\r\n354 go\r\n");
        run.step("250 q1\r\n250 ok\r\n250 ok\r\n354 go\r\n250 q2\r\n");
        run.c.quit();
        run.wire.extend(run.c.take_output());
        run.step("221 bye\r\n");
        (run.wire, run.evs)
    }

    #[test]
    fn replies_split_at_every_byte_give_the_same_conversation() {
        let (wire, evs) = scripted_exchange(usize::MAX);
        assert_eq!(
            String::from_utf8(wire.clone()).unwrap(),
            "EHLO client.test\r\n\
             MAIL FROM:<from@a.test> SIZE=10\r\nRCPT TO:<b@b.test>\r\nRCPT TO:<c@c.test>\r\nDATA\r\n\
             hello\r\n..\r\n.\r\n\
             MAIL FROM:<from@a.test> SIZE=5\r\nRCPT TO:<d@d.test>\r\nDATA\r\n\
             bye\r\n.\r\nQUIT\r\n"
        );
        assert_eq!(evs.len(), 4);
        for chunk in [1, 2, 3, 5, 7, 10] {
            assert_eq!(
                scripted_exchange(chunk),
                (wire.clone(), evs.clone()),
                "chunk {chunk}"
            );
        }
    }

    /// A minimal SMTP server: answers every complete command, keeps bodies.
    struct FakeServer {
        ehlo: &'static str,
        buf: Vec<u8>,
        mode: Mode,
        body: Vec<u8>,
        messages: Vec<Vec<u8>>,
    }

    enum Mode {
        Command,
        Data,
        Bdat(usize),
    }

    impl FakeServer {
        fn new(ehlo: &'static str) -> Self {
            FakeServer {
                ehlo,
                buf: Vec::new(),
                mode: Mode::Command,
                body: Vec::new(),
                messages: Vec::new(),
            }
        }

        fn line(&mut self) -> Option<Vec<u8>> {
            let at = self.buf.windows(2).position(|w| w == b"\r\n")?;
            let line = self.buf[..at].to_vec();
            self.buf.drain(..at + 2);
            Some(line)
        }

        fn process(&mut self, input: &[u8]) -> Vec<u8> {
            self.buf.extend_from_slice(input);
            let mut out = Vec::new();
            loop {
                match self.mode {
                    Mode::Command => {
                        let Some(line) = self.line() else { break };
                        let line = String::from_utf8(line).unwrap();
                        let verb = line.split([' ', ':']).next().unwrap_or("");
                        let reply: String = match verb {
                            "EHLO" => self.ehlo.to_string(),
                            "MAIL" | "RCPT" | "RSET" => "250 ok\r\n".into(),
                            "DATA" => {
                                self.mode = Mode::Data;
                                "354 go\r\n".into()
                            }
                            "BDAT" => {
                                let n = line.split(' ').nth(1).unwrap().parse().unwrap();
                                self.mode = Mode::Bdat(n);
                                String::new()
                            }
                            "QUIT" => "221 bye\r\n".into(),
                            _ => "500 what\r\n".into(),
                        };
                        out.extend(reply.as_bytes());
                    }
                    Mode::Data => {
                        let Some(line) = self.line() else { break };
                        if line == b"." {
                            self.messages.push(std::mem::take(&mut self.body));
                            self.mode = Mode::Command;
                            out.extend(b"250 queued\r\n");
                        } else {
                            let l = line.strip_prefix(b".").unwrap_or(&line);
                            self.body.extend_from_slice(l);
                            self.body.extend_from_slice(b"\r\n");
                        }
                    }
                    Mode::Bdat(n) => {
                        if self.buf.len() < n {
                            break;
                        }
                        self.messages.push(self.buf.drain(..n).collect());
                        self.mode = Mode::Command;
                        out.extend(b"250 queued\r\n");
                    }
                }
            }
            out
        }
    }

    /// Sends `n` messages through the fake server, counting how often the
    /// client had to wait for replies before it could write again.
    fn round_trips(ehlo: &'static str, n: u64, window: usize) -> usize {
        let mut cfg = config(TlsMode::None);
        cfg.window = window;
        let mut c = Client::new(cfg);
        let mut server = FakeServer::new(ehlo);
        let mut from_server = b"220 fake\r\n".to_vec();
        let mut waits = 0;
        let mut submitted = 0;
        let mut accepted = 0;
        for _ in 0..10_000 {
            c.feed(&from_server);
            let mut closed = false;
            while let Some(ev) = c.poll_event() {
                match ev {
                    Event::Outcome(o) => {
                        assert!(matches!(o.result, TxResult::Accepted(_)), "{o:?}");
                        accepted += 1;
                    }
                    Event::Closed(reason) => {
                        assert_eq!(reason, CloseReason::Quit);
                        closed = true;
                    }
                    _ => {}
                }
            }
            if closed {
                break;
            }
            while c.can_submit() && submitted < n {
                let body = format!("Subject: {submitted}\r\n\r\n.line\r\nend {submitted}\r\n");
                c.submit(tx(submitted, &["b@b.test"], &body));
                submitted += 1;
            }
            if submitted == n && c.in_flight() == 0 {
                c.quit();
            }
            from_server = server.process(&c.take_output());
            assert!(c.wants_read(), "client stalled");
            waits += 1;
        }
        assert_eq!(accepted, n);
        assert_eq!(server.messages.len() as u64, n);
        for (i, m) in server.messages.iter().enumerate() {
            assert_eq!(
                m,
                format!("Subject: {i}\r\n\r\n.line\r\nend {i}\r\n").as_bytes()
            );
        }
        waits
    }

    #[test]
    fn round_trips_pipelined_data_about_one_per_message() {
        let waits = round_trips(EHLO_PIPE, 50, 16);
        // greeting + EHLO + 50 (one per message, the last one's dot) + QUIT
        assert!((50..=55).contains(&waits), "{waits}");
    }

    #[test]
    fn round_trips_pipelined_bdat_bounded_by_the_window() {
        let waits = round_trips(EHLO_FULL, 50, 16);
        assert!(waits <= 50usize.div_ceil(16) + 4, "{waits}");
        let waits = round_trips(EHLO_FULL, 50, 1);
        assert!(waits <= 50 + 4, "{waits}");
    }

    #[test]
    fn round_trips_lock_step_several_per_message() {
        let waits = round_trips(EHLO_PLAIN, 50, 16);
        // MAIL, RCPT, DATA, end of data per message + greeting, EHLO, QUIT.
        assert!((4 * 50..=5 * 50 + 3).contains(&waits), "{waits}");
    }
}
