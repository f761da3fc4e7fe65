//! The SMTP session as a state machine without I/O (RFC 5321), with
//! PIPELINING (RFC 2920), CHUNKING/BDAT (RFC 3030), STARTTLS (RFC 3207),
//! AUTH (RFC 4954) and the MAIL parameters SIZE (RFC 1870), 8BITMIME
//! (RFC 6152) and SMTPUTF8 (RFC 6531).
//!
//! The driver (`net::session`) loops: write [`Client::take_output`], handle
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
use super::bytes::{MessageBytes, MessageWriter};
use super::capabilities::Capabilities;
use super::command::Command;
use super::data;
use super::redact::Redactor;
use super::reply::{ProtocolError, Reply, ReplyParser};
use crate::smtp::auth::AuthMech;

/// Never more unanswered commands than this. The socket driver drains
/// replies as they arrive (see `net::duplex`), so no socket buffer bounds the
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
    /// Upgrade with STARTTLS when the server offers it; go on in plain text
    /// when it does not, or refuses it (RFC 3207 §4.1), as mail between MX
    /// hosts does.
    Opportunistic,
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
pub struct SessionConfig {
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

impl SessionConfig {
    /// Defaults: no credentials, window 16, pipelining and chunking on,
    /// 5 min / 10 min timeouts.
    pub fn new(helo_name: impl Into<String>, tls: TlsMode) -> Self {
        SessionConfig {
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
    pub data: Arc<MessageBytes>,
    /// Needs `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// Needs `SMTPUTF8`.
    pub smtputf8: bool,
    /// The envelope id (RFC 3461 `ENVID`, at most 100 characters) asked
    /// for when the server offers DSN, with `RET=HDRS` and an `ORCPT` per
    /// recipient, so a bounce can be matched to its message; `None` asks
    /// for nothing.
    pub envid: Option<String>,
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
    /// Refused (503) only because it was written behind an end of data whose
    /// reply was still outstanding, to a server that forbids that. It never
    /// left; the client now waits for each end-of-data reply, so it goes
    /// again without counting as an attempt (this can happen once per run).
    Resend,
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
    /// The caller's bytes themselves when they need no change (a composed
    /// message always), so a big message is not copied once more per send.
    wire: Arc<MessageBytes>,
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

    /// Some reply of this transaction was a 503 (bad sequence of commands).
    fn refused_in_sequence(&self) -> bool {
        self.mail
            .iter()
            .chain(self.rcpts.iter().flatten())
            .chain(self.last.iter())
            .any(|r| r.code == 503)
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
    config: SessionConfig,
    parser: ReplyParser,
    phase: Phase,
    expects: VecDeque<Expect>,
    out: MessageWriter,
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
    pub fn new(config: SessionConfig) -> Self {
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
            out: MessageWriter::default(),
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

    /// Bytes to write now (drained), in one vector; may be empty.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.take_output_with_finals().0.to_vec()
    }

    /// Like [`Client::take_output`], also naming (by [`Transaction::id`]) the
    /// transactions whose end of data — final dot or `BDAT LAST` chunk — is in
    /// these bytes: once written, their outcome is uncertain until answered.
    /// The bytes come in pieces: a block a message shares with others (an
    /// attachment's encoding) is referenced, not copied, to be written with
    /// the rest in one vectored write.
    pub fn take_output_with_finals(&mut self) -> (MessageBytes, Vec<u64>) {
        let mut ids = Vec::new();
        self.finals_taken = std::mem::take(&mut self.finals_in_out);
        for (seq, _) in &self.finals_taken {
            if let Some(tx) = self.txs.get_mut(seq) {
                tx.final_handed_out = true;
                ids.push(tx.tx.id);
            }
        }
        (self.out.take(), ids)
    }

    /// Gives back a buffer that [`take_output`](Self::take_output) handed
    /// out, once written, so the next output reuses its memory instead of
    /// growing a fresh one (a fresh megabyte buffer is hundreds of page
    /// faults).
    pub fn recycle_output(&mut self, written: MessageBytes) {
        if !self.out.is_empty() {
            return;
        }
        if let Some(buf) = written.into_first_buffer() {
            if buf.capacity() > self.out.buffer_capacity() {
                self.out = MessageWriter::with_buffer(buf);
            }
        }
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
        // Normalising only ever adds bytes, so an unchanged length means
        // the message is already normalised.
        let wire = tx.data.normalized();
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

    /// Waiting for the 354 that lets a message's content follow DATA: until
    /// it arrives the client has nothing to send, and it comes after the
    /// replies to the MAIL and RCPT commands written with it, which a
    /// server may hold back until the client has acknowledged the first of
    /// them (Nagle's algorithm).
    pub fn awaits_go_ahead(&self) -> bool {
        self.expects
            .iter()
            .rev()
            .any(|e| matches!(e, Expect::Data(_)))
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

    fn send_data(&mut self, seq: u64, bytes: &MessageBytes, octets: usize) {
        self.out
            .append_with(bytes, |b, out| out.extend_from_slice(b));
        self.data_written(seq, octets);
    }

    /// The end of `seq`'s data is the end of the output so far.
    fn data_written(&mut self, seq: u64, octets: usize) {
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
                if reply.code != 220 && self.config.tls == TlsMode::Opportunistic {
                    // Go on without it: forget the offer so it is not asked again.
                    if let Some(caps) = self.caps.as_mut() {
                        caps.starttls = false;
                    }
                    self.after_hello();
                } else if reply.code != 220 {
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
                // Stuffed straight into the output: no copy of the message
                // of its own.
                let wire = std::mem::take(&mut tx.wire);
                let start = self.out.len();
                self.out.append_with(&wire, data::stuff_lines);
                // Every piece ends its last line (the last one is given a
                // CRLF by the stuffing when it lacks one).
                self.out.extend_from_slice(b".\r\n");
                let n = self.out.len() - start;
                self.data_written(seq, n);
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
        let upgrade = match self.config.tls {
            TlsMode::StartTls => true,
            TlsMode::Opportunistic => caps.starttls,
            TlsMode::Implicit | TlsMode::None => false,
        };
        if upgrade && !self.tls {
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
        let dsn = self.caps.as_ref().is_some_and(|c| c.dsn);
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
                    dsn: tx.tx.envid.as_ref().filter(|_| dsn).map(|id| {
                        // RFC 3461 §4.4: at most 100 characters; a longer id is left out.
                        if id.len() <= 100 {
                            id.clone()
                        } else {
                            String::new()
                        }
                    }),
                };
                self.send(cmd, Some(Expect::Mail(seq)));
                true
            }
            Step::Rcpt(i) => {
                let rcpt = tx.tx.rcpt_to[i].clone();
                // ORCPT's rfc822 type is ASCII only (RFC 6533 adds utf-8).
                let cmd = if dsn && tx.tx.envid.is_some() && rcpt.is_ascii() {
                    Command::RcptToOrcpt(rcpt)
                } else {
                    Command::RcptTo(rcpt)
                };
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
        let mut result = tx.decide();
        if result == TxResult::NotSent
            && tx.behind_dot
            && tx.refused_in_sequence()
            && self.dot_barrier()
        {
            result = TxResult::Resend;
        }
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
        let size = tx.data.normalized_len() as u64;
        if size > limit {
            return Some(TxResult::TooLarge { size, limit });
        }
    }
    None
}

#[cfg(test)]
mod opportunistic_tests;
#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;
