//! The scripted fault server: an ESMTP server on 127.0.0.1:0 whose extensions,
//! latency and failures a test chooses, and which records what the client did.
//!
//! Protocol: RFC 5321 with PIPELINING (RFC 2920), CHUNKING (RFC 3030), SIZE
//! (RFC 1870), STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954), plus
//! XOAUTH2 (Google/Microsoft bearer tokens) when asked for. The grammar
//! (command lines, paths, DATA unstuffing, BDAT chunks, AUTH responses) is
//! the library's `smtp::server`, as for the capture server; this file holds
//! the scripting, the recording and the faults.
//!
//! Each connection has a reader thread that parses commands and a writer
//! thread that sends every reply at (time its command was received +
//! `reply_delay`), like link latency, so a pipelining client sees the same
//! overlap it would over a real network. The reader counts **round trips**:
//! the times it needed the next command (or a message body after 354) and had
//! to wait because nothing at all was buffered, in user space or in the kernel.
//!
//! Counting: `close_after_messages` counts messages per connection;
//! `drop_during_data` and `drop_after_final_dot` count message attempts
//! (DATA accepted with 354, or a first BDAT chunk) across the whole server,
//! 1-based, so a client that reconnects and retries is not hit again;
//! `stall_after` counts command lines per connection.
//!
//! Defaults: PIPELINING, 8BITMIME, SMTPUTF8 and ENHANCEDSTATUSCODES on;
//! CHUNKING, STARTTLS, AUTH and SIZE off.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mailshot::smtp::net::tls::{server_config, TestPki};
use mailshot::smtp::server::auth::{
    decode, plain, xoauth2, AuthArg, LOGIN_PASSWORD_PROMPT, LOGIN_USERNAME_PROMPT,
};
use mailshot::smtp::server::bdat::{BdatArg, Chunk};
use mailshot::smtp::server::data::{DataLine, Unstuffer};
use mailshot::smtp::server::path::{mail_from, rcpt_to};
use mailshot::smtp::server::reply::multiline;
use mailshot::smtp::server::request::{trim_eol, Request, Verb};

/// A RCPT hook: the address and the 1-based number of this RCPT in its
/// transaction; `Some(reply)` replaces the default `250` reply.
pub type RcptHook = Arc<dyn Fn(&str, usize) -> Option<String> + Send + Sync>;

/// A MAIL hook: the reverse-path; `Some(reply)` replaces the default `250`
/// reply (and starts no transaction).
pub type MailHook = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// An end-of-data hook: the complete message; `Some(reply)` refuses it
/// with that reply instead of queueing it (e.g. a content filter's 554).
pub type MessageHook = Arc<dyn Fn(&Message) -> Option<String> + Send + Sync>;

/// How long a stalled connection stays open at most.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// A connection with no input for this long is closed (tests are bounded).
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// The pause between bytes in trickle mode.
const TRICKLE_PAUSE: Duration = Duration::from_millis(1);

/// Entry point: `FaultServer::builder()...start()`.
pub struct FaultServer;

impl FaultServer {
    /// A builder with the defaults described in the module docs.
    pub fn builder() -> FaultBuilder {
        FaultBuilder {
            opts: Options {
                pipelining: true,
                chunking: false,
                pki: None,
                auth: false,
                xoauth2: false,
                credentials: None,
                size: None,
                eight_bit: true,
                smtputf8: true,
                dsn: false,
                greeting: "220 fault.test ESMTP scripted fault server".into(),
                reply_delay: Duration::ZERO,
                rcpt_hook: None,
                mail_hook: None,
                message_hook: None,
                close_after_messages: None,
                drop_during_data: None,
                drop_after_final_dot: None,
                stall_after: None,
                trickle: false,
                inject_after_starttls: None,
                tls_garbage_after_starttls: false,
                max_connections: None,
                trickle_from: None,
                extra_reply_after_first_mail: false,
                refuse_pipelined_after_dot: false,
                echo_auth: false,
                data_end_delay: Duration::ZERO,
                data_reply: None,
                auth_reply: None,
                skip_first_rcpt_reply: false,
                endless_ehlo_reply: false,
                forget_mail_after_dot: false,
                nagle: false,
            },
        }
    }

    /// A server with the defaults, started.
    pub fn start() -> FaultHandle {
        Self::builder().start()
    }
}

#[derive(Clone)]
struct Options {
    pipelining: bool,
    chunking: bool,
    pki: Option<TestPki>,
    auth: bool,
    xoauth2: bool,
    credentials: Option<(String, String)>,
    size: Option<u64>,
    eight_bit: bool,
    smtputf8: bool,
    dsn: bool,
    greeting: String,
    reply_delay: Duration,
    rcpt_hook: Option<RcptHook>,
    mail_hook: Option<MailHook>,
    message_hook: Option<MessageHook>,
    close_after_messages: Option<(usize, String)>,
    drop_during_data: Option<usize>,
    drop_after_final_dot: Option<usize>,
    stall_after: Option<usize>,
    trickle: bool,
    inject_after_starttls: Option<String>,
    tls_garbage_after_starttls: bool,
    max_connections: Option<usize>,
    trickle_from: Option<(usize, Duration)>,
    extra_reply_after_first_mail: bool,
    refuse_pipelined_after_dot: bool,
    echo_auth: bool,
    data_end_delay: Duration,
    data_reply: Option<String>,
    auth_reply: Option<String>,
    skip_first_rcpt_reply: bool,
    endless_ehlo_reply: bool,
    forget_mail_after_dot: bool,
    nagle: bool,
}

/// Chooses what the fault server offers and which faults it injects.
pub struct FaultBuilder {
    opts: Options,
}

impl FaultBuilder {
    /// Advertise PIPELINING (default on). Off, any command sent before the
    /// previous reply counts as a pipelining violation.
    pub fn pipelining(mut self, on: bool) -> Self {
        self.opts.pipelining = on;
        self
    }
    /// Advertise and accept CHUNKING/BDAT (default off).
    pub fn chunking(mut self, on: bool) -> Self {
        self.opts.chunking = on;
        self
    }
    /// Offer STARTTLS with this PKI's leaf certificate.
    pub fn starttls(mut self, pki: Option<TestPki>) -> Self {
        self.opts.pki = pki;
        self
    }
    /// Advertise AUTH PLAIN LOGIN; any credentials pass unless [`credentials`](Self::credentials) is set.
    pub fn auth(mut self, on: bool) -> Self {
        self.opts.auth = on;
        self
    }
    /// Also advertise and accept XOAUTH2 (implies [`auth`](Self::auth)): the
    /// initial response must decode to `user=U\x01auth=Bearer T\x01\x01`,
    /// and with [`credentials`](Self::credentials) the token T is checked as
    /// the password.
    pub fn xoauth2(mut self, on: bool) -> Self {
        self.opts.xoauth2 = on;
        self.opts.auth |= on;
        self
    }
    /// Only this user and password authenticate; others get 535 5.7.8.
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.opts.auth = true;
        self.opts.credentials = Some((user.into(), password.into()));
        self
    }
    /// Advertise and enforce SIZE.
    pub fn size(mut self, limit: Option<u64>) -> Self {
        self.opts.size = limit;
        self
    }
    /// Advertise 8BITMIME (default on).
    pub fn eight_bit(mut self, on: bool) -> Self {
        self.opts.eight_bit = on;
        self
    }
    /// Advertise SMTPUTF8 (default on).
    pub fn smtputf8(mut self, on: bool) -> Self {
        self.opts.smtputf8 = on;
        self
    }
    /// Advertise DSN, RFC 3461 (default off).
    pub fn dsn(mut self, on: bool) -> Self {
        self.opts.dsn = on;
        self
    }
    /// The greeting line (without CRLF). A non-2xx greeting refuses the
    /// session: `421` closes at once, others answer 503 until QUIT (RFC 5321 3.1).
    pub fn greeting(mut self, line: &str) -> Self {
        self.opts.greeting = line.into();
        self
    }
    /// Each reply leaves at (its command's arrival + `delay`).
    pub fn reply_delay(mut self, delay: Duration) -> Self {
        self.opts.reply_delay = delay;
        self
    }
    /// Overrides RCPT replies: `hook(address, n)` with n the 1-based RCPT
    /// number in the transaction; `None` keeps the default 250.
    pub fn rcpt_hook(
        mut self,
        hook: impl Fn(&str, usize) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.opts.rcpt_hook = Some(Arc::new(hook));
        self
    }
    /// Overrides MAIL replies: `hook(reverse_path)`; `None` keeps the
    /// default 250, `Some(reply)` is sent instead and no transaction starts.
    pub fn mail_hook(
        mut self,
        hook: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.opts.mail_hook = Some(Arc::new(hook));
        self
    }
    /// Overrides end-of-data replies: `hook(message)`; `None` queues the
    /// message with the default 250, `Some(reply)` refuses it with `reply`.
    pub fn message_hook(
        mut self,
        hook: impl Fn(&Message) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.opts.message_hook = Some(Arc::new(hook));
        self
    }
    /// After `n` accepted messages on a connection, the next command (other
    /// than QUIT) gets `reply` (e.g. `421 4.7.0 too many messages`) and the
    /// connection closes.
    pub fn close_after_messages(mut self, n: usize, reply: &str) -> Self {
        self.opts.close_after_messages = Some((n, reply.into()));
        self
    }
    /// Closes the connection in the middle of the `n`-th message's data
    /// (1-based, counted across the server) without replying.
    pub fn drop_during_data(mut self, after_messages: usize) -> Self {
        self.opts.drop_during_data = Some(after_messages);
        self
    }
    /// Reads the `n`-th message (1-based, across the server) to its end, then
    /// closes without replying: the client cannot know whether it was accepted.
    pub fn drop_after_final_dot(mut self, n: usize) -> Self {
        self.opts.drop_after_final_dot = Some(n);
        self
    }
    /// After `n` command lines on a connection, stop answering but keep the
    /// socket open (until the handle drops or 30 s pass).
    pub fn stall_after(mut self, n_commands: usize) -> Self {
        self.opts.stall_after = Some(n_commands);
        self
    }
    /// Send replies one byte at a time with small pauses.
    pub fn trickle(mut self, on: bool) -> Self {
        self.opts.trickle = on;
        self
    }
    /// Send `line` right after the 220 to STARTTLS, before the handshake
    /// (the STARTTLS response-injection attack, CVE-2011-0411's mirror image).
    pub fn inject_after_starttls(mut self, line: &str) -> Self {
        self.opts.inject_after_starttls = Some(line.into());
        self
    }
    /// Answer STARTTLS with 220 and then plain-text garbage instead of a handshake.
    pub fn tls_garbage_after_starttls(mut self) -> Self {
        self.opts.tls_garbage_after_starttls = true;
        self
    }
    /// At most `n` connections open at once; more are greeted with
    /// `421 4.7.0 Too many connections` and closed.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.opts.max_connections = Some(n);
        self
    }

    /// From the `n`-th reply of each connection on (0 = the greeting), send
    /// replies one byte per `pause`: a server that trickles.
    pub fn trickle_from(mut self, n: usize, pause: Duration) -> Self {
        self.opts.trickle_from = Some((n, pause));
        self
    }
    /// The first MAIL of the first connection gets two `250` replies instead
    /// of one: an extra reply inside a pipelined group.
    pub fn extra_reply_after_first_mail(mut self) -> Self {
        self.opts.extra_reply_after_first_mail = true;
        self
    }
    /// Like Haraka: commands that arrived after the final dot, before its
    /// reply went out, are answered `503 5.5.0 Command pipelined after DATA`
    /// and not carried out (counted by [`FaultHandle::pipelining_refusals`]).
    pub fn refuse_pipelined_after_dot(mut self) -> Self {
        self.opts.refuse_pipelined_after_dot = true;
        self
    }
    /// Every AUTH fails, and the server quotes what it got: the 535 names the
    /// payload and the decoded password; XOAUTH2 first gets a 334 echoing it.
    pub fn echo_auth(mut self) -> Self {
        self.opts.echo_auth = true;
        self.opts.auth = true;
        self
    }
    /// The reply to the end of data (final dot or `BDAT LAST`) leaves this
    /// much later than the other replies.
    pub fn data_end_delay(mut self, delay: Duration) -> Self {
        self.opts.data_end_delay = delay;
        self
    }
    /// On the first connection, answer DATA with `line` instead of 354 (and
    /// expect no body).
    pub fn data_reply(mut self, line: &str) -> Self {
        self.opts.data_reply = Some(line.into());
        self
    }

    /// Answer every AUTH with `line` (offering AUTH PLAIN LOGIN), whatever
    /// was sent: e.g. a 250 that is not a login.
    pub fn auth_reply(mut self, line: &str) -> Self {
        self.opts.auth = true;
        self.opts.auth_reply = Some(line.into());
        self
    }

    /// The first RCPT of the first connection is carried out but gets no
    /// reply: a reply missing from a pipelined group.
    pub fn skip_first_rcpt_reply(mut self) -> Self {
        self.opts.skip_first_rcpt_reply = true;
        self
    }

    /// Haraka's shape of the same rule: a MAIL that arrived after a final
    /// dot, before its reply, is answered 250 and then forgotten, so the
    /// RCPT and DATA behind it get 503 (counted as refusals).
    pub fn forget_mail_after_dot(mut self) -> Self {
        self.opts.forget_mail_after_dot = true;
        self
    }
    /// Like Haraka's sockets: Nagle's algorithm stays on (no `TCP_NODELAY`),
    /// so of the replies to a pipelined group, each written on its own, only
    /// the first leaves at once; the rest wait until the client acknowledges
    /// it.
    pub fn nagle(mut self) -> Self {
        self.opts.nagle = true;
        self
    }
    /// Answer EHLO with a multi-line reply that never ends (`250-` lines of
    /// 1000 bytes, as fast as the client takes them, up to 256 MiB); the
    /// bytes written are in [`FaultHandle::endless_bytes`].
    pub fn endless_ehlo_reply(mut self) -> Self {
        self.opts.endless_ehlo_reply = true;
        self
    }

    /// Binds 127.0.0.1:0 and starts accepting in the background.
    pub fn start(self) -> FaultHandle {
        self.start_on("127.0.0.1:0".parse().unwrap())
    }

    /// Starts listening on `addr` (another loopback address, as one MX
    /// host among several on the same port).
    pub fn start_on(self, addr: SocketAddr) -> FaultHandle {
        let listener = TcpListener::bind(addr).expect("bind fault server");
        let addr = listener.local_addr().unwrap();
        let tls = self.opts.pki.as_ref().map(server_config);
        let state = Arc::new(State {
            opts: self.opts,
            tls,
            stop: AtomicBool::new(false),
            record: Mutex::new(Record::default()),
            round_trips: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            socks: Mutex::new(HashMap::new()),
        });
        let st = state.clone();
        let accept = std::thread::Builder::new()
            .name("fault-accept".into())
            .spawn(move || accept_loop(listener, st))
            .expect("spawn fault accept thread");
        FaultHandle {
            addr,
            state,
            accept: Some(accept),
        }
    }
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Message {
    /// MAIL FROM path (empty for `<>`).
    pub from: String,
    /// The accepted RCPT TO paths, in order.
    pub rcpts: Vec<String>,
    /// The message as delivered: DATA dot-unstuffed, or the BDAT chunks joined.
    pub data: Vec<u8>,
    /// 1-based connection number it arrived on.
    pub connection: usize,
    /// Sent with BDAT rather than DATA.
    pub bdat: bool,
    /// Sent inside TLS.
    pub tls: bool,
    /// When the server had read the whole message (its final dot or `BDAT LAST` chunk).
    pub received: Instant,
}

/// What happened on one connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionStats {
    /// Command lines received (AUTH responses included).
    pub commands: usize,
    /// Messages accepted.
    pub messages: usize,
    /// Round trips: waits on an empty input after the greeting.
    pub round_trips: usize,
    /// When the connection was accepted.
    pub opened: Option<Instant>,
    /// When its session ended (`None` while it is still open).
    pub closed: Option<Instant>,
}

#[derive(Default)]
struct Record {
    pipelining_refusals: usize,
    endless_bytes: usize,
    messages: Vec<Message>,
    unacknowledged: Vec<Message>,
    commands: Vec<(usize, String)>,
    conns: Vec<ConnectionStats>,
    refused: usize,
    violations: Vec<String>,
}

struct State {
    opts: Options,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: AtomicBool,
    record: Mutex<Record>,
    round_trips: AtomicUsize,
    attempts: AtomicUsize,
    active: AtomicUsize,
    /// Clones of open sockets, so stopping can wake blocked readers.
    socks: Mutex<HashMap<usize, TcpStream>>,
}

impl State {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fault server; stops (and joins every thread) when dropped.
pub struct FaultHandle {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl FaultHandle {
    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    /// The CA to trust for STARTTLS, if it was configured.
    pub fn ca_pem(&self) -> Option<&str> {
        self.state.opts.pki.as_ref().map(|p| p.ca_pem.as_str())
    }
    /// Every accepted message, in acceptance order.
    pub fn messages(&self) -> Vec<Message> {
        self.state.record().messages.clone()
    }
    /// Messages read to their end but never answered (`drop_after_final_dot`).
    pub fn unacknowledged(&self) -> Vec<Message> {
        self.state.record().unacknowledged.clone()
    }
    /// Every command line received (without CRLF), across connections in
    /// arrival order; AUTH responses included.
    pub fn commands(&self) -> Vec<String> {
        self.state
            .record()
            .commands
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }
    /// The command lines of connection `n` (1-based).
    pub fn commands_on(&self, n: usize) -> Vec<String> {
        self.state
            .record()
            .commands
            .iter()
            .filter(|(c, _)| *c == n)
            .map(|(_, l)| l.clone())
            .collect()
    }
    /// Round trips over all connections (see the module docs).
    pub fn round_trips(&self) -> usize {
        self.state.round_trips.load(Ordering::SeqCst)
    }
    /// Connections accepted into a session (refused ones not included).
    pub fn connections(&self) -> usize {
        self.state.record().conns.len()
    }
    /// Per-connection counts, by connection number - 1.
    pub fn connection_stats(&self) -> Vec<ConnectionStats> {
        self.state.record().conns.clone()
    }
    /// Connections turned away by `max_connections`.
    pub fn refused_connections(&self) -> usize {
        self.state.record().refused
    }
    /// Commands sent before the reply they had to wait for (RFC 2920 3.1:
    /// EHLO, DATA, QUIT, NOOP, AUTH, STARTTLS end a group; without
    /// PIPELINING every command does).
    pub fn pipelining_violations(&self) -> Vec<String> {
        self.state.record().violations.clone()
    }
    /// Bytes of the endless EHLO reply the client took before it left
    /// (see [`FaultBuilder::endless_ehlo_reply`]).
    pub fn endless_bytes(&self) -> usize {
        self.state.record().endless_bytes
    }
    /// Commands refused because they were pipelined after a final dot
    /// (see [`FaultBuilder::refuse_pipelined_after_dot`]).
    pub fn pipelining_refusals(&self) -> usize {
        self.state.record().pipelining_refusals
    }
    /// Waits until at least `n` messages were accepted, or `timeout` passes.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if msgs.len() >= n || Instant::now() >= deadline {
                return msgs;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FaultHandle {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut threads = Vec::new();
    let mut next_id = 0usize;
    loop {
        let Ok((sock, _)) = listener.accept() else {
            if state.stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        if let Some(max) = state.opts.max_connections {
            if state.active.load(Ordering::SeqCst) >= max {
                state.record().refused += 1;
                let _ = (&sock).write_all(b"421 4.7.0 Too many connections\r\n");
                let _ = sock.shutdown(Shutdown::Both);
                continue;
            }
        }
        next_id += 1;
        let id = next_id;
        state.active.fetch_add(1, Ordering::SeqCst);
        state.record().conns.push(ConnectionStats {
            opened: Some(Instant::now()),
            ..ConnectionStats::default()
        });
        if let Ok(clone) = sock.try_clone() {
            state.socks.lock().unwrap().insert(id, clone);
        }
        let st = state.clone();
        threads.push(std::thread::spawn(move || {
            Connection::run(id, sock, &st);
            if let Some(c) = st.record().conns.get_mut(id - 1) {
                c.closed = Some(Instant::now());
            }
            st.socks.lock().unwrap().remove(&id);
            st.active.fetch_sub(1, Ordering::SeqCst);
        }));
        threads.retain(|t: &JoinHandle<()>| !t.is_finished());
    }
    for sock in state.socks.lock().unwrap().values() {
        let _ = sock.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
}

/// The TLS state once STARTTLS completed; shared by reader and writer.
type TlsSlot = Arc<Mutex<Option<rustls::ServerConnection>>>;

/// Writes all of `buf`, retrying while the reader has the socket in
/// non-blocking mode for its round-trip probe.
fn write_all_retry(sock: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    let mut s = sock;
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends bytes through TLS if it is on, else in the clear.
fn send_bytes(sock: &TcpStream, tls: &TlsSlot, bytes: &[u8]) -> io::Result<()> {
    let mut guard = tls.lock().unwrap();
    match guard.as_mut() {
        None => write_all_retry(sock, bytes),
        Some(conn) => {
            conn.writer().write_all(bytes)?;
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
            // Written under the lock so TLS records leave in sequence order.
            write_all_retry(sock, &out)
        }
    }
}

/// A reply for the writer thread.
struct Outgoing {
    due: Instant,
    bytes: Vec<u8>,
    sent: Option<mpsc::Sender<()>>,
}

/// Fixes the socket's receive buffer at a small size (which also turns off
/// the kernel's autotuning of it).
fn small_receive_buffer(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the
    // length given.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn writer_loop(
    sock: TcpStream,
    tls: TlsSlot,
    rx: mpsc::Receiver<Outgoing>,
    trickle: bool,
    abort: Arc<AtomicBool>,
    trickle_from: Option<(usize, Duration)>,
) {
    for (n, out) in rx.into_iter().enumerate() {
        if let Some((_, pause)) = trickle_from.filter(|&(from, _)| n >= from) {
            let mut result = Ok(());
            for b in &out.bytes {
                if abort.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(pause);
                result = send_bytes(&sock, &tls, std::slice::from_ref(b));
                if result.is_err() {
                    break;
                }
            }
            if result.is_err() {
                return;
            }
            if let Some(ack) = out.sent {
                let _ = ack.send(());
            }
            continue;
        }
        let now = Instant::now();
        if out.due > now {
            std::thread::sleep(out.due - now);
        }
        if abort.load(Ordering::SeqCst) {
            return;
        }
        let result = if trickle {
            out.bytes.iter().try_for_each(|b| {
                std::thread::sleep(TRICKLE_PAUSE);
                send_bytes(&sock, &tls, std::slice::from_ref(b))
            })
        } else {
            send_bytes(&sock, &tls, &out.bytes)
        };
        if result.is_err() {
            return;
        }
        if let Some(ack) = out.sent {
            let _ = ack.send(());
        }
    }
}

struct Transaction {
    from: String,
    rcpts: Vec<String>,
    rcpt_commands: usize,
    bdat: Option<Vec<u8>>,
    bdat_failed: bool,
    attempt: Option<usize>,
}

/// How a connection ends.
enum End {
    /// Flush queued replies, then close.
    Close,
    /// Close at once, discarding queued replies (a dropped connection).
    Abort,
    /// Flush, then keep the socket open without answering.
    Stall,
}

/// The server's side of one connection.
struct Connection<'a> {
    id: usize,
    sock: TcpStream,
    tls: TlsSlot,
    state: &'a State,
    opts: &'a Options,
    out: Option<mpsc::Sender<Outgoing>>,
    abort: Arc<AtomicBool>,
    inbuf: Vec<u8>,
    eof: bool,
    received_at: Instant,
    refused: bool,
    helo: bool,
    esmtp: bool,
    tls_on: bool,
    authed: bool,
    tx: Option<Transaction>,
    messages_here: usize,
    commands_here: usize,
    /// Bytes of input that arrived after a final dot, before its reply.
    after_dot: usize,
}

impl<'a> Connection<'a> {
    fn run(id: usize, sock: TcpStream, state: &'a State) {
        let _ = sock.set_nodelay(!state.opts.nagle);
        if state.opts.drop_during_data.is_some() {
            // A server that dies mid-message must be able to stop a big
            // message mid-write: without this, loopback's receive buffer
            // (autotuned up to tens of megabytes) would swallow it whole.
            small_receive_buffer(&sock);
        }
        let _ = sock.set_read_timeout(Some(IDLE_LIMIT));
        let tls: TlsSlot = Arc::new(Mutex::new(None));
        let abort = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let writer = {
            let wsock = sock.try_clone().expect("clone socket for the writer");
            let tls = tls.clone();
            let abort = abort.clone();
            let trickle = state.opts.trickle;
            let trickle_from = state.opts.trickle_from;
            std::thread::spawn(move || writer_loop(wsock, tls, rx, trickle, abort, trickle_from))
        };
        let mut s = Connection {
            id,
            sock,
            tls,
            state,
            opts: &state.opts,
            out: Some(tx),
            abort,
            inbuf: Vec::new(),
            eof: false,
            received_at: Instant::now(),
            refused: false,
            helo: false,
            esmtp: false,
            tls_on: false,
            authed: false,
            tx: None,
            messages_here: 0,
            commands_here: 0,
            after_dot: 0,
        };
        let end = s.serve().unwrap_or(End::Abort);
        match end {
            End::Close => {
                drop(s.out.take());
                let _ = writer.join();
            }
            End::Abort => {
                s.abort.store(true, Ordering::SeqCst);
                drop(s.out.take());
                let _ = writer.join();
                // Let the client's pending bytes arrive, so closing with unread
                // data makes the kernel send RST, as a crashed server would.
                std::thread::sleep(Duration::from_millis(20));
            }
            End::Stall => {
                drop(s.out.take());
                let _ = writer.join();
                s.stall();
            }
        }
        let _ = s.sock.shutdown(Shutdown::Write);
    }

    /// Keeps reading (and ignoring) until the client leaves, the server stops,
    /// or the stall limit passes.
    fn stall(&mut self) {
        let deadline = Instant::now() + STALL_LIMIT;
        let mut buf = [0u8; 4096];
        while !self.state.stop.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let _ = self
                .sock
                .set_read_timeout(Some(left.min(Duration::from_millis(200))));
            match self.sock.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    }

    fn reply(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").into_bytes(), None);
    }

    fn send_raw(&mut self, bytes: Vec<u8>, sent: Option<mpsc::Sender<()>>) {
        if let Some(out) = &self.out {
            let _ = out.send(Outgoing {
                due: self.received_at + self.opts.reply_delay,
                bytes,
                sent,
            });
        }
    }

    /// The server dies in the middle of a message: what it had already
    /// answered (the messages before, pipelined ahead of this one) is on the
    /// wire, as it would be from a real server; nothing more is.
    fn die_mid_message(&mut self) -> End {
        self.send_and_wait(Vec::new());
        End::Abort
    }

    /// Queues `bytes` and waits until the writer has put them on the wire.
    fn send_and_wait(&mut self, bytes: Vec<u8>) -> bool {
        let (ack, done) = mpsc::channel();
        self.send_raw(bytes, Some(ack));
        done.recv().is_ok()
    }

    fn count_round_trip(&mut self) {
        self.state.round_trips.fetch_add(1, Ordering::SeqCst);
        if let Some(c) = self.state.record().conns.get_mut(self.id - 1) {
            c.round_trips += 1;
        }
    }

    /// Reads more plaintext into `inbuf`; false at EOF. `boundary` marks a
    /// read for the next command or a body's start: if nothing is waiting
    /// anywhere, that is a round trip.
    fn read_more(&mut self, boundary: bool) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut raw = [0u8; 16384];
        let mut probe = boundary && self.inbuf.is_empty();
        loop {
            let n = if probe {
                probe = false;
                self.sock.set_nonblocking(true)?;
                let r = (&self.sock).read(&mut raw);
                self.sock.set_nonblocking(false)?;
                match r {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.count_round_trip();
                        (&self.sock).read(&mut raw)
                    }
                    other => other,
                }
            } else {
                (&self.sock).read(&mut raw)
            };
            let n = match n {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                    ) =>
                {
                    0
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                return Ok(false);
            }
            let mut guard = self.tls.lock().unwrap();
            let Some(conn) = guard.as_mut() else {
                self.inbuf.extend_from_slice(&raw[..n]);
                return Ok(true);
            };
            let mut slice = &raw[..n];
            while !slice.is_empty() {
                conn.read_tls(&mut slice)?;
                conn.process_new_packets().map_err(io::Error::other)?;
            }
            let before = self.inbuf.len();
            let mut plain = [0u8; 16384];
            loop {
                match conn.reader().read(&mut plain) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(k) => self.inbuf.extend_from_slice(&plain[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
            write_all_retry(&self.sock, &out)?;
            if self.inbuf.len() > before {
                return Ok(true);
            }
            if self.eof {
                return Ok(false);
            }
        }
    }

    /// Takes what the client has already sent (plain text only), without waiting.
    fn read_available(&mut self) -> io::Result<()> {
        if self.eof || self.tls_on {
            return Ok(());
        }
        // Let bytes written together with the dot arrive.
        std::thread::sleep(Duration::from_millis(5));
        let mut raw = [0u8; 16384];
        self.sock.set_nonblocking(true)?;
        let r = (&self.sock).read(&mut raw);
        self.sock.set_nonblocking(false)?;
        match r {
            Ok(0) => self.eof = true,
            Ok(n) => self.inbuf.extend_from_slice(&raw[..n]),
            Err(_) => {}
        }
        Ok(())
    }

    /// The next LF-terminated line without its CRLF; None at EOF.
    fn read_line(&mut self, boundary: bool) -> io::Result<Option<Vec<u8>>> {
        let mut first = true;
        loop {
            if let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.inbuf.drain(..=pos).collect();
                return Ok(Some(line));
            }
            if !self.read_more(boundary && first)? {
                return Ok(None);
            }
            first = false;
        }
    }

    fn record_command(&mut self, line: &str) {
        self.commands_here += 1;
        let mut rec = self.state.record();
        rec.commands.push((self.id, line.to_owned()));
        if let Some(c) = rec.conns.get_mut(self.id - 1) {
            c.commands += 1;
        }
    }

    fn violation(&mut self, what: String) {
        self.state.record().violations.push(what);
    }

    fn serve(&mut self) -> io::Result<End> {
        let greeting = self.opts.greeting.clone();
        self.reply(&greeting);
        if greeting.starts_with("421") {
            return Ok(End::Close);
        }
        self.refused = !greeting.starts_with('2');
        loop {
            if self
                .opts
                .stall_after
                .is_some_and(|n| self.commands_here >= n)
            {
                return Ok(End::Stall);
            }
            let Some(raw) = self.read_line(true)? else {
                return Ok(End::Close);
            };
            self.received_at = Instant::now();
            let line = String::from_utf8_lossy(trim_eol(&raw)).into_owned();
            self.record_command(&line);
            if self.after_dot > 0 && self.opts.forget_mail_after_dot {
                self.after_dot = self.after_dot.saturating_sub(raw.len());
                let upper = line.to_ascii_uppercase();
                if upper.starts_with("MAIL") {
                    self.reply("250 2.1.0 sender ok");
                    self.tx = None;
                    continue;
                }
                if upper.starts_with("RCPT") || upper == "DATA" {
                    self.state.record().pipelining_refusals += 1;
                    let what = if upper == "DATA" {
                        "MAIL required first"
                    } else {
                        "Use MAIL before RCPT"
                    };
                    self.reply(&format!("503 5.5.1 {what}"));
                    continue;
                }
            }
            if self.after_dot > 0 {
                self.after_dot = self.after_dot.saturating_sub(raw.len());
                if !line.eq_ignore_ascii_case("QUIT") {
                    self.state.record().pipelining_refusals += 1;
                    self.reply("503 5.5.0 Command pipelined after DATA");
                    continue;
                }
            }
            let Request { verb, arg } = Request::parse(&line);
            if !self.inbuf.is_empty() && (verb.ends_group() || !self.opts.pipelining) {
                self.violation(format!("connection {}: data after {line:?}", self.id));
            }
            if self.refused {
                if verb == Verb::Quit {
                    self.reply("221 2.0.0 Bye");
                    return Ok(End::Close);
                }
                self.reply("503 5.5.1 Error: no service");
                continue;
            }
            if let Some((n, reply)) = &self.opts.close_after_messages {
                if self.messages_here >= *n && verb != Verb::Quit {
                    let reply = reply.clone();
                    self.reply(&reply);
                    return Ok(End::Close);
                }
            }
            if let Some(end) = self.command(verb, arg)? {
                return Ok(end);
            }
        }
    }

    fn command(&mut self, verb: Verb, arg: &str) -> io::Result<Option<End>> {
        if verb == Verb::Ehlo && self.opts.endless_ehlo_reply {
            // Past the writer thread: as fast as the socket takes it.
            let line = format!("250-{}\r\n", "x".repeat(1000)).repeat(64);
            let mut sent = 0;
            while sent < 256 << 20 && send_bytes(&self.sock, &self.tls, line.as_bytes()).is_ok() {
                sent += line.len();
                self.state.record().endless_bytes = sent;
            }
            return Ok(Some(End::Abort));
        }
        match verb {
            Verb::Ehlo | Verb::Helo => {
                if arg.is_empty() {
                    self.reply("501 5.5.4 Syntax: EHLO hostname");
                } else {
                    self.helo = true;
                    self.esmtp = verb == Verb::Ehlo;
                    self.tx = None;
                    let reply = self.ehlo_reply(arg);
                    self.reply(&reply);
                }
            }
            Verb::Mail => self.mail(arg),
            Verb::Rcpt => self.rcpt(arg),
            Verb::Data => return self.data(),
            Verb::Bdat => return self.bdat(arg),
            Verb::Rset => {
                self.tx = None;
                self.reply("250 2.0.0 Ok");
            }
            Verb::Noop => self.reply("250 2.0.0 Ok"),
            Verb::Quit => {
                self.reply("221 2.0.0 Bye");
                return Ok(Some(End::Close));
            }
            Verb::StartTls => return self.starttls(),
            Verb::Auth => return self.auth(arg),
            _ => self.reply("500 5.5.2 Error: command not recognized"),
        }
        Ok(None)
    }

    fn ehlo_reply(&self, arg: &str) -> String {
        let mut lines = vec![format!("fault.test Hello {arg}")];
        if self.esmtp {
            let o = self.opts;
            let mut push = |on: bool, kw: String| {
                if on {
                    lines.push(kw)
                }
            };
            push(o.pipelining, "PIPELINING".into());
            push(o.chunking, "CHUNKING".into());
            push(o.eight_bit, "8BITMIME".into());
            push(o.smtputf8, "SMTPUTF8".into());
            push(o.dsn, "DSN".into());
            if let Some(size) = o.size {
                push(true, format!("SIZE {size}"));
            }
            push(true, "ENHANCEDSTATUSCODES".into());
            push(o.pki.is_some() && !self.tls_on, "STARTTLS".into());
            if o.xoauth2 {
                push(o.auth, "AUTH PLAIN LOGIN XOAUTH2".into());
            } else {
                push(o.auth, "AUTH PLAIN LOGIN".into());
            }
        }
        multiline(250, &lines)
    }

    fn mail(&mut self, arg: &str) {
        if !self.helo {
            return self.reply("503 5.5.1 Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return self.reply("503 5.5.1 Error: nested MAIL command");
        }
        let Some(from_arg) = mail_from(arg) else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        for (k, v) in from_arg.params() {
            match k.to_ascii_uppercase().as_str() {
                "SIZE" if self.opts.size.is_some() => {
                    let limit = self.opts.size.unwrap();
                    match v.parse::<u64>() {
                        Ok(n) if n > limit => {
                            return self.reply("552 5.3.4 Message size exceeds fixed limit")
                        }
                        Ok(_) => {}
                        Err(_) => return self.reply("501 5.5.4 Bad SIZE parameter"),
                    }
                }
                "BODY" if self.opts.eight_bit => {}
                "SMTPUTF8" if self.opts.smtputf8 => {}
                "AUTH" if self.opts.auth => {}
                "RET" | "ENVID" if self.opts.dsn => {}
                _ => return self.reply("555 5.5.4 Unsupported option"),
            }
        }
        let from = from_arg.path;
        if let Some(reply) = self.opts.mail_hook.as_ref().and_then(|hook| hook(&from)) {
            return self.reply(&reply);
        }
        self.tx = Some(Transaction {
            from,
            rcpts: Vec::new(),
            rcpt_commands: 0,
            bdat: None,
            bdat_failed: false,
            attempt: None,
        });
        self.reply("250 2.1.0 Ok");
        if self.opts.extra_reply_after_first_mail && self.id == 1 && self.messages_here == 0 {
            self.reply("250 2.1.0 Ok");
        }
    }

    fn rcpt(&mut self, arg: &str) {
        let Some(tx) = self.tx.as_mut() else {
            return self.reply("503 5.5.1 Error: need MAIL command");
        };
        let Some(to_arg) = rcpt_to(arg) else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        // Only DSN's parameters (RFC 3461), and only when it is offered.
        let dsn_only = |k: &str| matches!(k.to_ascii_uppercase().as_str(), "ORCPT" | "NOTIFY");
        if to_arg
            .params()
            .any(|(k, _)| !(self.opts.dsn && dsn_only(k)))
        {
            return self.reply("555 5.5.4 Unsupported option");
        }
        let to = to_arg.path;
        tx.rcpt_commands += 1;
        let n = tx.rcpt_commands;
        let reply = self
            .opts
            .rcpt_hook
            .as_ref()
            .and_then(|hook| hook(&to, n))
            .unwrap_or_else(|| "250 2.1.5 Ok".into());
        if reply.starts_with('2') {
            tx.rcpts.push(to);
        }
        if self.opts.skip_first_rcpt_reply && self.id == 1 && n == 1 && self.messages_here == 0 {
            return;
        }
        self.reply(&reply);
    }

    fn next_attempt(&self) -> usize {
        self.state.attempts.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn data(&mut self) -> io::Result<Option<End>> {
        match &self.tx {
            None => {
                self.reply("503 5.5.1 Error: need RCPT command");
                return Ok(None);
            }
            Some(tx) if tx.rcpts.is_empty() => {
                self.reply("554 5.5.1 Error: no valid recipients");
                return Ok(None);
            }
            Some(tx) if tx.bdat.is_some() => {
                self.reply("503 5.5.1 Error: DATA after BDAT");
                return Ok(None);
            }
            Some(_) => {}
        }
        if let Some(line) = self.opts.data_reply.clone().filter(|_| self.id == 1) {
            self.reply(&line);
            return Ok(None);
        }
        let attempt = self.next_attempt();
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        let mut body = Vec::new();
        let mut unstuffer = Unstuffer::new();
        let mut first = true;
        loop {
            let Some(line) = self.read_line(first)? else {
                return Ok(Some(End::Close));
            };
            first = false;
            if self.opts.drop_during_data == Some(attempt) {
                return Ok(Some(self.die_mid_message()));
            }
            match unstuffer.line(&line) {
                DataLine::End => break,
                DataLine::Content(content) => body.extend_from_slice(content),
            }
        }
        self.received_at = Instant::now();
        if !self.inbuf.is_empty() && !self.opts.pipelining {
            self.violation(format!("connection {}: data after end of DATA", self.id));
        }
        if self.opts.refuse_pipelined_after_dot || self.opts.forget_mail_after_dot {
            // What is already here was sent before the dot's reply: Haraka's
            // anti-smuggling rule refuses it.
            let _ = self.read_available();
            self.after_dot = self.inbuf.len();
        }
        Ok(self.finish(body, false, attempt))
    }

    /// Accepts (or, for `drop_after_final_dot`, silently drops) a complete message.
    fn finish(&mut self, body: Vec<u8>, bdat: bool, attempt: usize) -> Option<End> {
        let tx = self.tx.take().expect("transaction in progress");
        let msg = Message {
            from: tx.from,
            rcpts: tx.rcpts,
            data: body,
            connection: self.id,
            bdat,
            tls: self.tls_on,
            received: self.received_at,
        };
        if self.opts.drop_after_final_dot == Some(attempt) {
            self.state.record().unacknowledged.push(msg);
            return Some(End::Close);
        }
        if let Some(limit) = self.opts.size {
            if msg.data.len() as u64 > limit {
                self.reply("552 5.3.4 Message size exceeds fixed limit");
                return None;
            }
        }
        if let Some(line) = self.opts.message_hook.as_ref().and_then(|hook| hook(&msg)) {
            self.reply(&line);
            return None;
        }
        let queued = {
            let mut rec = self.state.record();
            rec.messages.push(msg);
            if let Some(c) = rec.conns.get_mut(self.id - 1) {
                c.messages += 1;
            }
            rec.messages.len()
        };
        self.messages_here += 1;
        let line = format!("250 2.0.0 Ok: queued as M{queued}\r\n");
        if let Some(out) = &self.out {
            let _ = out.send(Outgoing {
                due: self.received_at + self.opts.reply_delay + self.opts.data_end_delay,
                bytes: line.into_bytes(),
                sent: None,
            });
        }
        None
    }

    fn bdat(&mut self, arg: &str) -> io::Result<Option<End>> {
        let Some(BdatArg { size, last }) = BdatArg::parse(arg) else {
            self.reply("501 5.5.4 Syntax: BDAT size [LAST]");
            return Ok(Some(End::Close));
        };
        let attempt = match self.tx.as_mut() {
            Some(tx) if tx.attempt.is_none() && self.opts.chunking && !tx.rcpts.is_empty() => {
                let a = self.state.attempts.fetch_add(1, Ordering::SeqCst) + 1;
                self.tx.as_mut().unwrap().attempt = Some(a);
                Some(a)
            }
            Some(tx) => tx.attempt,
            None => None,
        };
        if attempt.is_some() && self.opts.drop_during_data == attempt {
            // Take whatever part of the chunk is already here, then vanish.
            if self.inbuf.is_empty() {
                let _ = self.read_more(false);
            }
            return Ok(Some(self.die_mid_message()));
        }
        let mut reader = Chunk::new(size, true);
        while !reader.is_complete() {
            if self.inbuf.is_empty() && !self.read_more(false)? {
                return Ok(Some(End::Close));
            }
            let taken = reader.take(&self.inbuf);
            self.inbuf.drain(..taken);
        }
        let chunk = reader.into_data();
        self.received_at = Instant::now();
        if !self.opts.chunking {
            self.reply("500 5.5.1 Error: BDAT not offered");
            return Ok(None);
        }
        let Some(tx) = self.tx.as_mut() else {
            self.reply("503 5.5.1 Error: need RCPT command");
            return Ok(None);
        };
        if tx.rcpts.is_empty() {
            self.reply("554 5.5.1 Error: no valid recipients");
            return Ok(None);
        }
        let buf = tx.bdat.get_or_insert_with(Vec::new);
        buf.extend_from_slice(&chunk);
        if let Some(limit) = self.opts.size {
            if buf.len() as u64 > limit {
                tx.bdat_failed = true;
            }
        }
        if !last {
            if tx.bdat_failed {
                self.reply("552 5.3.4 Message size exceeds fixed limit");
            } else {
                self.reply(&format!("250 2.0.0 {size} octets received"));
            }
            return Ok(None);
        }
        let body = tx.bdat.take().unwrap_or_default();
        if tx.bdat_failed {
            self.tx = None;
            self.reply("552 5.3.4 Message size exceeds fixed limit");
            return Ok(None);
        }
        Ok(self.finish(body, true, attempt.unwrap_or(0)))
    }

    fn starttls(&mut self) -> io::Result<Option<End>> {
        let Some(config) = self.state.tls.clone() else {
            self.reply("500 5.5.2 Error: command not recognized");
            return Ok(None);
        };
        if self.tls_on {
            self.reply("503 5.5.1 Error: TLS already active");
            return Ok(None);
        }
        let mut bytes = b"220 2.0.0 Ready to start TLS\r\n".to_vec();
        if let Some(extra) = &self.opts.inject_after_starttls {
            bytes.extend_from_slice(extra.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        if self.opts.tls_garbage_after_starttls {
            bytes.extend_from_slice(b"this is not a TLS handshake\r\n\x00\x01\x02");
            self.send_and_wait(bytes);
            return Ok(Some(End::Stall));
        }
        if !self.send_and_wait(bytes) {
            return Ok(Some(End::Close));
        }
        // Plain text sent before the handshake must not become commands (RFC 3207 4.2).
        self.inbuf.clear();
        let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        let mut sock = &self.sock;
        while conn.is_handshaking() {
            if conn.complete_io(&mut sock).is_err() {
                return Ok(Some(End::Close));
            }
        }
        let mut plain = [0u8; 4096];
        while let Ok(k) = conn.reader().read(&mut plain) {
            if k == 0 {
                break;
            }
            self.inbuf.extend_from_slice(&plain[..k]);
        }
        *self.tls.lock().unwrap() = Some(conn);
        self.tls_on = true;
        self.helo = false;
        self.esmtp = false;
        self.authed = false;
        self.tx = None;
        Ok(None)
    }

    /// Reads one AUTH continuation line, recording it like a command.
    fn auth_line(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.reply(&format!("334 {prompt}"));
        let Some(raw) = self.read_line(true)? else {
            return Ok(None);
        };
        self.received_at = Instant::now();
        let line = String::from_utf8_lossy(trim_eol(&raw)).into_owned();
        self.record_command(&line);
        Ok(Some(line))
    }

    fn auth(&mut self, arg: &str) -> io::Result<Option<End>> {
        if !self.opts.auth {
            self.reply("500 5.5.2 Error: command not recognized");
            return Ok(None);
        }
        if self.authed || !self.esmtp || self.tx.is_some() {
            self.reply("503 5.5.1 Error: AUTH not allowed now");
            return Ok(None);
        }
        if let Some(line) = self.opts.auth_reply.clone() {
            self.reply(&line);
            return Ok(None);
        }
        let Some(AuthArg {
            mechanism: mech,
            initial,
        }) = AuthArg::parse(arg)
        else {
            self.reply("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
            return Ok(None);
        };
        let initial = initial.map(str::to_owned);
        let mut sent: Vec<String> = Vec::new();
        let (user, pass) = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.auth_line("")? {
                        Some(r) => r,
                        None => return Ok(Some(End::Close)),
                    },
                };
                if resp == "*" {
                    self.reply("501 5.0.0 Authentication cancelled");
                    return Ok(None);
                }
                sent.push(resp.clone());
                let Some(bytes) = decode(&resp) else {
                    self.reply("501 5.5.2 Cannot decode response");
                    return Ok(None);
                };
                let Some(pair) = plain(&bytes) else {
                    self.reply("501 5.5.2 Malformed PLAIN response");
                    return Ok(None);
                };
                pair
            }
            "LOGIN" => {
                let user = match initial {
                    Some(r) => r,
                    None => match self.auth_line(LOGIN_USERNAME_PROMPT)? {
                        Some(r) => r,
                        None => return Ok(Some(End::Close)),
                    },
                };
                let Some(pass) = self.auth_line(LOGIN_PASSWORD_PROMPT)? else {
                    return Ok(Some(End::Close));
                };
                if user == "*" || pass == "*" {
                    self.reply("501 5.0.0 Authentication cancelled");
                    return Ok(None);
                }
                sent.push(user.clone());
                sent.push(pass.clone());
                match (decode(&user), decode(&pass)) {
                    (Some(u), Some(p)) => (u, p),
                    _ => {
                        self.reply("501 5.5.2 Cannot decode response");
                        return Ok(None);
                    }
                }
            }
            "XOAUTH2" if self.opts.xoauth2 => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.auth_line("")? {
                        Some(r) => r,
                        None => return Ok(Some(End::Close)),
                    },
                };
                if self.opts.echo_auth {
                    // Quote the payload in a challenge, as a confused server might.
                    match self.auth_line(&resp)? {
                        Some(_) => {}
                        None => return Ok(Some(End::Close)),
                    }
                }
                sent.push(resp.clone());
                let Some(bytes) = decode(&resp) else {
                    self.reply("501 5.5.2 Cannot decode response");
                    return Ok(None);
                };
                match xoauth2(&bytes) {
                    Some(pair) => pair,
                    None => {
                        self.reply("501 5.5.2 Malformed XOAUTH2 response");
                        return Ok(None);
                    }
                }
            }
            _ => {
                self.reply("504 5.5.4 Unrecognized authentication type");
                return Ok(None);
            }
        };
        if self.opts.echo_auth {
            let pass = String::from_utf8_lossy(&pass).into_owned();
            self.reply(&format!(
                "535-5.7.8 you sent {}\r\n535 5.7.8 the password {pass} is wrong",
                sent.join(" ")
            ));
            return Ok(None);
        }
        let ok = match &self.opts.credentials {
            None => true,
            Some((u, p)) => u.as_bytes() == user.as_slice() && p.as_bytes() == pass.as_slice(),
        };
        if ok {
            self.authed = true;
            self.reply("235 2.7.0 Authentication successful");
        } else {
            self.reply("535 5.7.8 Error: authentication failed");
        }
        Ok(None)
    }
}
