//! The receiving servers, each on its own free loopback port: Postfix's
//! `smtp-sink` (discards, PIPELINING but no CHUNKING), mailshot's own capture
//! server (stores `.eml` files, PIPELINING + CHUNKING) and a private Postfix
//! `smtpd` instance (a real queue, PIPELINING + CHUNKING, delivery to the
//! `discard` transport so the disk holds only the queue files).

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::procs::Guard;

/// The file the capture server writes its throwaway CA certificate to.
const CAPTURE_CA: &str = "capture-ca.pem";

/// Which server it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Postfix `smtp-sink`.
    Sink,
    /// `mailshot capture`.
    Capture,
    /// Postfix `smtpd`.
    Postfix,
    /// A private Exim 4 (CHUNKING), discarding what it accepts.
    Exim,
    /// A private Haraka 3 (no CHUNKING), discarding what it accepts.
    Haraka,
}

/// A running server; stopped on drop.
pub struct Server {
    /// Which one.
    pub kind: Kind,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it leaves evidence of what it received (dump file, eml folder, log).
    evidence: Option<PathBuf>,
    _guard: Guard,
}

impl Server {
    /// Keeps the server's threads on `cpu` (every CPU when `None`).
    pub fn pin(&self, cpu: Option<usize>) -> io::Result<()> {
        match self._guard.pid() {
            Some(pid) => crate::procs::pin_process(pid, cpu),
            None => Ok(()),
        }
    }

    /// A short name for tables.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Sink => "smtp-sink",
            Kind::Capture => "capture",
            Kind::Postfix => "postfix",
            Kind::Exim => "exim",
            Kind::Haraka => "haraka",
        }
    }

    /// Whether the server offers CHUNKING (so mailshot uses BDAT).
    pub fn chunking(&self) -> bool {
        !matches!(self.kind, Kind::Sink | Kind::Haraka)
    }

    /// Messages the server has taken so far, when it leaves evidence to count.
    pub fn received(&self) -> Option<u64> {
        let ev = self.evidence.as_ref()?;
        match self.kind {
            Kind::Capture => Some(
                fs::read_dir(ev)
                    .ok()?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count() as u64,
            ),
            // One X-Mail-Args record per transaction in the dump format.
            Kind::Sink => Some(count_lines(ev, |l| l.starts_with("X-Mail-Args:"))),
            // cleanup logs each message-id before smtpd answers the final dot.
            Kind::Postfix => Some(count_lines(ev, |l| {
                l.contains("postfix/cleanup[") && l.contains("message-id=")
            })),
            // The main log's `<=` line is written before the final reply.
            Kind::Exim => Some(count_lines(ev, |l| l.contains(" <= "))),
            // The plugin appends a line before it answers.
            Kind::Haraka => Some(count_lines(ev, |l| l == "queued")),
        }
    }

    /// Waits (bounded) until `received()` reaches `want`; returns the last count.
    pub fn wait_received(&self, want: u64, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received()?;
            if got >= want || Instant::now() >= deadline {
                return Some(got);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The size in bytes of one message the capture server stored.
    pub fn stored_size(&self) -> Option<u64> {
        if self.kind != Kind::Capture {
            return None;
        }
        fs::read_dir(self.evidence.as_ref()?)
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .and_then(|e| e.metadata().ok())
            .map(|m| m.len())
    }

    /// Forgets what was received so far (empties the capture folder but
    /// for the CA certificate), so the disk does not fill over many runs.
    pub fn clear(&self) {
        if let (Kind::Capture, Some(dir)) = (self.kind, &self.evidence) {
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_name() != CAPTURE_CA {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
    }

    /// The capture server's CA certificate (it signs the STARTTLS
    /// certificate), for a client to trust.
    pub fn ca_file(&self) -> Option<PathBuf> {
        match (self.kind, &self.evidence) {
            (Kind::Capture, Some(dir)) => Some(dir.join(CAPTURE_CA)).filter(|p| p.is_file()),
            _ => None,
        }
    }
}

fn count_lines(path: &Path, pred: impl Fn(&str) -> bool) -> u64 {
    let Ok(f) = fs::File::open(path) else {
        return 0;
    };
    BufReader::new(f)
        .split(b'\n')
        .filter_map(|l| l.ok())
        .filter(|l| pred(&String::from_utf8_lossy(l)))
        .count() as u64
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Connects until the server greets with 220 (bounded), then says QUIT.
pub fn wait_greeting(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = (|| -> io::Result<()> {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut r = BufReader::new(s.try_clone()?);
            let mut line = String::new();
            r.read_line(&mut line)?;
            if !line.starts_with("220") {
                return Err(io::Error::other(format!("greeting {line:?}")));
            }
            let _ = (&s).write_all(b"QUIT\r\n");
            Ok(())
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::other(format!("{addr} never greeted: {e}")))
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Finds a Postfix tool in the places Debian puts them.
pub fn postfix_tool(name: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/lib/postfix/sbin",
        "/usr/libexec/postfix",
        "/usr/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.exists())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `smtp-sink`; with `dump`, every transaction is appended to that
/// file so deliveries can be counted (costs disk time: smoke mode only).
pub fn start_sink(dir: &Path, dump: bool) -> io::Result<Server> {
    let bin = postfix_tool("smtp-sink")
        .ok_or_else(|| io::Error::other("smtp-sink not found (Debian package postfix)"))?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new(bin);
    if is_root() {
        // smtp-sink refuses to keep root privileges.
        cmd.args(["-u", "nobody"]);
    }
    let evidence = if dump {
        let d = dir.join("sink-dump");
        fs::create_dir_all(&d)?;
        // Written after the switch to `nobody`.
        set_mode(&d, 0o777)?;
        let f = d.join("dump");
        let _ = fs::remove_file(&f);
        cmd.arg("-D").arg(&f);
        Some(f)
    } else {
        None
    };
    cmd.args(["-m", "1024"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("1024")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    serving(Kind::Sink, addr, evidence, cmd.spawn()?)
}

/// `child`, once it greets on `addr` (it must still be running then).
fn serving(
    kind: Kind,
    addr: SocketAddr,
    evidence: Option<PathBuf>,
    child: Child,
) -> io::Result<Server> {
    let mut server = Server {
        kind,
        addr,
        evidence,
        _guard: Guard::child(child),
    };
    wait_greeting(addr, Duration::from_secs(10))?;
    if !server._guard.alive() {
        return Err(io::Error::other(format!("{} exited", server.name())));
    }
    Ok(server)
}

fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
}

/// Starts `mailshot capture` storing into `dir/capture`.
pub fn start_capture(mailshot: &Path, dir: &Path) -> io::Result<Server> {
    let out = dir.join("capture");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out)?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(mailshot)
        .arg("capture")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--dir")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    serving(Kind::Capture, addr, Some(out), child)
}

/// Starts a private Postfix instance configured in `dir/postfix` whose only
/// listener is an `smtpd` on a free loopback port; mail for example.com is
/// queued for real (fsync'd queue files) and then discarded.
pub fn start_postfix(dir: &Path) -> io::Result<Server> {
    let postfix = postfix_tool("postfix")
        .ok_or_else(|| io::Error::other("postfix not found (Debian package postfix)"))?;
    if !is_root() {
        return Err(io::Error::other("a private Postfix needs root"));
    }
    let daemons = postfix_tool("smtpd")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| io::Error::other("postfix daemons not found"))?;
    let conf = dir.join("postfix");
    // A stale instance from an aborted run would hold the queue lock.
    if conf.join("main.cf").exists() {
        let _ = Command::new(&postfix)
            .arg("-c")
            .arg(&conf)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = fs::remove_dir_all(&conf);
    let queue = conf.join("queue");
    let data = conf.join("data");
    fs::create_dir_all(&queue)?;
    fs::create_dir_all(&data)?;
    let chown = Command::new("chown").arg("postfix").arg(&data).status()?;
    if !chown.success() {
        return Err(io::Error::other("chown postfix failed"));
    }
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = conf.join("maillog");
    let c = conf.display();
    let main_cf = format!(
        "compatibility_level = 3.6
queue_directory = {c}/queue
data_directory = {c}/data
command_directory = {cmd}
daemon_directory = {daemons}
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.localdomain
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
virtual_mailbox_domains = example.com
virtual_transport = discard
maillog_file = {log}
maillog_file_prefixes = {c}
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
in_flow_delay = 0s
smtpd_peername_lookup = no
biff = no
",
        cmd = postfix.parent().unwrap_or(Path::new("/usr/sbin")).display(),
        daemons = daemons.display(),
        log = log.display(),
    );
    let master_cf = format!(
        "127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"
    );
    fs::write(conf.join("main.cf"), main_cf)?;
    fs::write(conf.join("master.cf"), master_cf)?;
    let start = Command::new(&postfix)
        .arg("-c")
        .arg(&conf)
        .arg("start")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let mut stop = Command::new(&postfix);
    stop.arg("-c")
        .arg(&conf)
        .arg("stop")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = Guard::command(stop);
    if !start.status.success() {
        return Err(io::Error::other(format!(
            "postfix start failed: {} {}",
            String::from_utf8_lossy(&start.stderr).trim(),
            fs::read_to_string(&log).unwrap_or_default()
        )));
    }
    wait_greeting(addr, Duration::from_secs(20))?;
    Ok(Server {
        kind: Kind::Postfix,
        addr,
        evidence: Some(log),
        _guard: guard,
    })
}

/// Where `scripts/test` unpacks Debian's Exim (`$MAILSHOT_EXIM` overrides).
const EXIM_DEFAULT: &str = "/opt/mailshot-test/exim/root/usr/sbin/exim4";
/// The system user the Debian build runs as.
const EXIM_USER: &str = "Debian-exim";

/// Exim's runtime configuration: one plain listener with PIPELINING and
/// CHUNKING, every message spooled (Exim's own fsync'd spool files) and then
/// discarded. `@NAME@` is filled in; `$` belongs to Exim.
const EXIM_CONFIG: &str = "exim_path = @BIN@
keep_environment =
primary_hostname = exim.bench
exim_user = @USER@
exim_group = @USER@
never_users = root
spool_directory = @BASE@/spool
log_file_path = @BASE@/log/%slog
local_interfaces = <; 127.0.0.1.@PORT@
pipelining_advertise_hosts = *
chunking_advertise_hosts = *
host_lookup =
rfc1413_hosts =
message_size_limit = 50M
smtp_accept_max = 50
smtp_accept_max_per_connection = 0
smtp_accept_queue_per_connection = 0
recipients_max = 0
acl_smtp_rcpt = acl_rcpt

begin acl
acl_rcpt:
  accept

begin routers
discard:
  driver = redirect
  data = :blackhole:

begin transports

begin retry
*  *  F,1m,1m
";

/// Starts a private Exim (foreground daemon) configured in `dir/exim`.
pub fn start_exim(dir: &Path) -> io::Result<Server> {
    let bin = std::env::var_os("MAILSHOT_EXIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(EXIM_DEFAULT));
    if !bin.exists() {
        return Err(io::Error::other(format!(
            "{} not found (scripts/test unpacks exim4-daemon-heavy)",
            bin.display()
        )));
    }
    if !is_root() {
        return Err(io::Error::other("a private Exim needs root"));
    }
    let base = dir.join("exim");
    let _ = fs::remove_dir_all(&base);
    for sub in ["spool", "log"] {
        fs::create_dir_all(base.join(sub))?;
    }
    set_mode(&base, 0o755)?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = base.join("exim.conf");
    fs::write(
        &config,
        EXIM_CONFIG
            .replace("@BIN@", &bin.display().to_string())
            .replace("@USER@", EXIM_USER)
            .replace("@BASE@", &base.display().to_string())
            .replace("@PORT@", &port.to_string()),
    )?;
    for sub in ["spool", "log"] {
        let ok = Command::new("chown")
            .arg(format!("{EXIM_USER}:{EXIM_USER}"))
            .arg(base.join(sub))
            .status()?;
        if !ok.success() {
            return Err(io::Error::other(format!("chown {EXIM_USER} failed")));
        }
    }
    let child = Command::new(&bin)
        .arg("-C")
        .arg(&config)
        .arg("-bdf")
        .arg("-oP")
        .arg(base.join("exim.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(base.join("stderr.log"))?)
        .spawn()?;
    serving(Kind::Exim, addr, Some(base.join("log/mainlog")), child)
}

/// Where `scripts/test` installs Haraka from npm (`$MAILSHOT_TEST_CACHE`
/// overrides the cache folder, as for the tests).
fn node_modules() -> PathBuf {
    let cache = std::env::var_os("MAILSHOT_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/mailshot-test")
        });
    cache.join("node/node_modules")
}

/// Starts a private Haraka configured in `dir/haraka`: one plain listener,
/// PIPELINING (Haraka offers no CHUNKING), and the harness's plugin that
/// counts and discards every message.
pub fn start_haraka(dir: &Path) -> io::Result<Server> {
    let modules = node_modules();
    let bin = modules.join(".bin/haraka");
    if !bin.exists() {
        return Err(io::Error::other(format!(
            "{} not found (scripts/test installs Haraka from npm)",
            bin.display()
        )));
    }
    let base = dir.join("haraka");
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base)?;
    let root = base.join("root");
    let made = Command::new(&bin)
        .arg("-i")
        .arg(&root)
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !made.success() {
        return Err(io::Error::other("haraka -i failed"));
    }
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let conf = |name: &str, text: &str| fs::write(root.join("config").join(name), text);
    conf("me", "haraka.bench\n")?;
    conf(
        "smtp.ini",
        &format!("[main]\nlisten=127.0.0.1:{port}\nnodes=0\ndaemonize=false\n"),
    )?;
    conf("plugins", "bench_discard\n")?;
    conf("log.ini", "[main]\nlevel=warn\n")?;
    let connection = root.join("config/connection.ini");
    let text = fs::read_to_string(&connection)?;
    // Room for the 1 MB attachment messages; the default is 25 MB anyway.
    fs::write(
        &connection,
        text.replace("bytes=26214400", "bytes=52428800"),
    )?;
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/throughput/haraka_discard.js");
    fs::copy(plugin, root.join("plugins/bench_discard.js"))?;
    let count = base.join("queued");
    fs::write(&count, "")?;
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&root)
        .current_dir(&base)
        .env("NODE_PATH", &modules)
        .env("BENCH_COUNT_FILE", &count)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(base.join("stderr.log"))?)
        .spawn()?;
    serving(Kind::Haraka, addr, Some(count), child)
}
