//! Real-server fixtures from the Debian `postfix` package: a private Postfix
//! instance (`smtpd` → `virtual` delivery into a Maildir) and `smtp-sink`.
//!
//! The instance lives entirely in a temp dir (its own config, queue, data
//! directory, Maildir and log) and listens on `127.0.0.1:<free port>`, so
//! several tests can run one each, in parallel, without touching the system's
//! Postfix. It offers what Postfix 3.7 offers (PIPELINING, CHUNKING, 8BITMIME,
//! SMTPUTF8, SIZE, DSN) plus STARTTLS with a certificate from `generate_pki`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailshot::smtp::net::tls::generate_pki;

use super::{chmod, chown, free_port, wait_for_count, wait_for_greeting, TestDir};

const POSTFIX: &str = "/usr/sbin/postfix";
const SMTP_SINK_PATHS: &[&str] = &["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"];
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The services a complete Postfix needs besides the smtpd listener; chroot
/// is off (`n`) because the temp dir has no chroot jail.
const MASTER_SERVICES: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// uid and gid of a system user, from `id`.
fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .unwrap_or_else(|e| panic!("run id: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no system user {user:?} (is postfix installed?)"))
    };
    (id("-u"), id("-g"))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A private Postfix instance; stopped (and its master killed if needed) on drop.
pub struct Postfix {
    dir: TestDir,
    port: u16,
    ca_pem: String,
}

impl Postfix {
    /// Configures and starts an instance, waiting until it greets.
    /// Panics with a clear message if Postfix is not installed.
    pub fn start() -> Postfix {
        Postfix::start_with("")
    }

    /// [`Postfix::start`] with extra `main.cf` lines (e.g. a `transport_maps`
    /// that makes it bounce some domains itself).
    pub fn start_with(extra_main_cf: &str) -> Postfix {
        assert!(
            Path::new(POSTFIX).exists(),
            "{POSTFIX} is missing: install the Debian package postfix (scripts/test does)"
        );
        let (uid, gid) = user_ids("postfix");
        let dir = TestDir::new();
        // Postfix daemons run as `postfix` and must be able to traverse it.
        chmod(dir.path(), "755");
        let conf = dir.join("conf");
        let queue = dir.join("queue");
        let data = dir.join("data");
        let mail = dir.join("mail");
        for d in [&conf, &queue, &data, &mail] {
            std::fs::create_dir_all(d).unwrap();
        }
        chown(&data, "postfix:postfix", "");
        chown(&mail, "postfix:postfix", "");

        let pki = generate_pki(&[]);
        let cert = dir.write("conf/cert.pem", &pki.cert_pem);
        let key = dir.write("conf/key.pem", &pki.key_pem);
        chmod(&key, "600");

        let port = free_port();
        let base = dir.path().display().to_string();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = mailshot-pf-{port}.test\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
             alias_maps =\n\
             alias_database =\n\
             virtual_mailbox_domains = static:all\n\
             virtual_mailbox_maps = static:box/\n\
             virtual_mailbox_base = {mail}\n\
             virtual_uid_maps = static:{uid}\n\
             virtual_gid_maps = static:{gid}\n\
             virtual_mailbox_limit = 0\n\
             message_size_limit = 52428800\n\
             smtputf8_enable = yes\n\
             maillog_file = {base}/maillog\n\
             maillog_file_prefixes = {base}\n\
             smtpd_tls_security_level = may\n\
             smtpd_tls_cert_file = {cert}\n\
             smtpd_tls_key_file = {key}\n\
             smtpd_tls_loglevel = 1\n",
            queue = queue.display(),
            data = data.display(),
            mail = mail.display(),
            cert = cert.display(),
            key = key.display(),
        );
        dir.write("conf/main.cf", format!("{main_cf}{extra_main_cf}\n"));
        dir.write(
            "conf/master.cf",
            format!("127.0.0.1:{port} inet n - n - - smtpd\n{MASTER_SERVICES}"),
        );

        let pf = Postfix {
            dir,
            port,
            ca_pem: pki.ca_pem,
        };
        let out = pf
            .postfix_cmd("start")
            .output()
            .unwrap_or_else(|e| panic!("run {POSTFIX}: {e}"));
        if !out.status.success() || !wait_for_greeting(port, START_TIMEOUT) {
            panic!(
                "private Postfix did not start on 127.0.0.1:{port}: {}{}\nlog:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                pf.log()
            );
        }
        pf
    }

    fn postfix_cmd(&self, action: &str) -> Command {
        let mut cmd = Command::new(POSTFIX);
        cmd.arg("-c")
            .arg(self.dir.join("conf"))
            .arg(action)
            .stdin(Stdio::null());
        cmd
    }

    /// The smtpd port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed smtpd's STARTTLS certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA to a file in the instance dir and returns its path.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.write("ca.pem", &self.ca_pem)
    }

    /// The Maildir messages are delivered into.
    pub fn maildir(&self) -> PathBuf {
        self.dir.join("mail/box")
    }

    /// Delivered message files (Maildir `new/` and `cur/`), sorted by name.
    pub fn messages(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir().join(sub)) {
                files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
        files.sort();
        files
    }

    /// Waits until at least `n` messages are delivered or `timeout` passes.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<PathBuf> {
        wait_for_count(n, timeout, Duration::from_millis(50), || self.messages())
    }

    /// The instance's mail log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ = self.postfix_cmd("stop").output();
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// Postfix's `smtp-sink` discard server on a free loopback port; killed on drop.
pub struct SmtpSink {
    child: Child,
    port: u16,
}

impl SmtpSink {
    /// `smtp-sink` with PIPELINING (its default) and no faults.
    pub fn start() -> SmtpSink {
        Self::start_with(&[])
    }

    /// `smtp-sink` with extra options (e.g. `-Q`, `-f`, `-r`, `-q`, `-W`, see smtp-sink(1)).
    pub fn start_with(options: &[&str]) -> SmtpSink {
        let bin = SMTP_SINK_PATHS
            .iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("smtp-sink not found in {SMTP_SINK_PATHS:?}: install the Debian package postfix")
            });
        let port = free_port();
        let mut cmd = Command::new(bin);
        if running_as_root() {
            // It refuses to keep root privileges.
            cmd.args(["-u", "postfix"]);
        }
        let mut child = cmd
            .args(options)
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        if !wait_for_greeting(port, START_TIMEOUT) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("smtp-sink did not answer on 127.0.0.1:{port}");
        }
        SmtpSink { child, port }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
