//! A private Exim 4.96 (the binary `scripts/test` unpacks) as a relay that
//! makes its own bounces, the way a sending site's smarthost does.
//!
//! It listens in plain text on one free loopback port, offers DSN
//! (RFC 3461), and delivers by domain: `users.test` has no users (a
//! `:fail:` redirect, so Exim bounces at routing), `far.test` goes to a
//! next hop on loopback (e.g. the fault server, answering 5xx or 4xx), and
//! every other domain is local: the messages land in one Maildir. Bounces
//! and delay warnings Exim writes to the envelope sender therefore land in
//! that Maildir too. Retry rules are seconds long, and delay warnings come
//! after `warn_after`, so a queue run ([`EximRelay::queue_run`]) some
//! seconds later turns a 4xx into a warning and then into a bounce.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::exim::{exim_bin, exim_log, EXIM_USER};
use super::recording::Listeners;
use super::{chmod, chown, free_port, wait_for_count, TestDir};

/// A running relay; killed on drop.
pub struct EximRelay {
    listeners: Listeners,
    bin: PathBuf,
    config: PathBuf,
}

/// How long a 4xx is retried, and when the first delay warning is due.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The retry rule's timeout: an address failing longer is bounced.
    pub give_up_after: Duration,
    /// `delay_warning`: a message deferred longer gets a warning.
    pub warn_after: Duration,
}

impl EximRelay {
    /// Starts a relay whose `far.test` mail goes to `127.0.0.1:next_hop`.
    pub fn start(next_hop: u16, timing: Timing) -> EximRelay {
        let bin = exim_bin();
        let dir = TestDir::new();
        chmod(dir.path(), "755");
        for sub in ["spool", "log", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = free_port();
        let config = CONFIG
            .replace("@BIN@", &bin.display().to_string())
            .replace("@EXIM_USER@", EXIM_USER)
            .replace("@BASE@", &dir.path().display().to_string())
            .replace("@PORT@", &port.to_string())
            .replace("@NEXT_HOP@", &next_hop.to_string())
            .replace("@GIVE_UP@", &format!("{}s", timing.give_up_after.as_secs()))
            .replace("@WARN@", &format!("{}s", timing.warn_after.as_secs()));
        let config = dir.write("exim.conf", config);
        for sub in ["spool", "log", "mail"] {
            chown(&dir.join(sub), &format!("{EXIM_USER}:{EXIM_USER}"), "");
        }
        let log = dir.join("stderr.log");
        let listeners = Listeners::spawn(
            Command::new(&bin)
                .arg("-C")
                .arg(&config)
                .arg("-bdf")
                .arg("-oP")
                .arg(dir.join("exim.pid")),
            &log,
            (port, port),
            String::new(),
            dir,
        )
        .ready("Exim relay", exim_log);
        EximRelay {
            listeners,
            bin,
            config,
        }
    }

    /// The plain-text SMTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.listeners.starttls_port
    }

    /// The Maildir of the local domains, where the bounces land.
    pub fn maildir(&self) -> PathBuf {
        self.listeners.dir.join("mail/box")
    }

    /// Message files in the Maildir, sorted by name.
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

    /// Waits until at least `n` messages are in the Maildir or `timeout` passes.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<PathBuf> {
        wait_for_count(n, timeout, Duration::from_millis(50), || self.messages())
    }

    /// One queue run that tries every queued message now (`-qff`),
    /// whatever its retry time; returns when the run is over.
    pub fn queue_run(&self) {
        let out = Command::new(&self.bin)
            .arg("-C")
            .arg(&self.config)
            .arg("-qff")
            .output()
            .expect("run exim -qff");
        assert!(
            out.status.success(),
            "exim -qff: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The relay's logs.
    pub fn log(&self) -> String {
        exim_log(self.listeners.dir.path())
    }

    /// The relay's folder.
    pub fn dir(&self) -> &Path {
        self.listeners.dir.path()
    }
}

/// The runtime configuration; `@NAME@` marks a value filled in, `$`
/// belongs to Exim's string expansion.
const CONFIG: &str = r#"exim_path = @BIN@
keep_environment =
primary_hostname = relay.exim.test
qualify_domain = relay.exim.test
exim_user = @EXIM_USER@
exim_group = @EXIM_USER@
never_users = root
spool_directory = @BASE@/spool
log_file_path = @BASE@/log/%slog
local_interfaces = <; 127.0.0.1.@PORT@
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
dsn_advertise_hosts = *
pipelining_advertise_hosts = *
recipients_max = 0
delay_warning = @WARN@
delay_warning_condition = yes
acl_smtp_rcpt = acl_rcpt

begin acl
acl_rcpt:
  accept

begin routers
no_users:
  driver = redirect
  domains = users.test
  data = :fail: Unknown user
  allow_fail
far:
  driver = manualroute
  domains = far.test
  route_list = * 127.0.0.1
  self = send
  transport = next_hop
local:
  driver = accept
  transport = maildir

begin transports
next_hop:
  driver = smtp
  port = @NEXT_HOP@
  allow_localhost
  hosts_avoid_tls = *
maildir:
  driver = appendfile
  directory = @BASE@/mail/box
  maildir_format
  create_directory
  user = @EXIM_USER@
  group = @EXIM_USER@
  mode = 0644
  envelope_to_add = true
  delivery_date_add = true
  return_path_add = true

begin retry
*  *  F,@GIVE_UP@,1s
"#;
