//! A private Exim 4.96 (Debian's `exim4-daemon-heavy`, unpacked by
//! `scripts/test` with `dpkg -x`, since the package conflicts with postfix)
//! as a recording sink.
//!
//! The daemon runs in the foreground (`-bdf`) from a config in a temp dir:
//! its own spool and log, two listeners on free loopback ports (STARTTLS, and
//! implicit TLS through `tls_on_connect_ports`), a certificate from
//! `generate_pki`, PLAIN and LOGIN authenticators for one account (offered
//! only inside TLS), PIPELINING, CHUNKING and SMTPUTF8 advertised. Every
//! recipient is accepted unless the policy file names it (an ACL reads it on
//! every RCPT), and each message is delivered once per envelope recipient
//! into one Maildir, each copy with an `Envelope-to` header naming its
//! recipient.

use std::path::{Path, PathBuf};
use std::process::Command;

use mailshot::smtp::net::tls::generate_pki;

use super::recording::{write_policy, Copy, Listeners};
use super::{chmod, chown, free_port, TestDir};

/// Where `scripts/test` unpacks the Exim binary; `$MAILSHOT_EXIM` overrides.
const EXIM_DEFAULT: &str = "/opt/mailshot-test/exim/root/usr/sbin/exim4";
/// The system user the Debian build runs as.
pub(super) const EXIM_USER: &str = "Debian-exim";

pub(super) fn exim_bin() -> PathBuf {
    let bin = std::env::var_os("MAILSHOT_EXIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(EXIM_DEFAULT));
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test (it unpacks exim4-daemon-heavy)",
        bin.display()
    );
    bin
}

/// A running private Exim; killed on drop.
pub struct Exim(Listeners);

impl std::ops::Deref for Exim {
    type Target = Listeners;
    fn deref(&self) -> &Listeners {
        &self.0
    }
}

impl Exim {
    /// Configures and starts an instance accepting `user`/`password`.
    pub fn start(user: &str, password: &str) -> Exim {
        let bin = exim_bin();
        let dir = TestDir::new();
        // The receiving and delivering processes run as the Exim user.
        chmod(dir.path(), "755");
        for sub in ["spool", "log", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let pki = generate_pki(&[]);
        let cert = dir.write("cert.pem", &pki.cert_pem);
        let key = dir.write("key.pem", &pki.key_pem);
        let policy = dir.join("policy");
        write_policy(&policy, &[]);
        let (starttls_port, tls_port) = (free_port(), free_port());
        let config = render_config(&ConfigParams {
            bin: &bin,
            base: dir.path(),
            cert: &cert,
            key: &key,
            policy: &policy,
            starttls_port,
            tls_port,
            user,
            password,
        });
        let config_path = dir.write("exim.conf", config);
        for sub in ["spool", "log", "mail", "key.pem", "policy"] {
            chown(
                &dir.join(sub),
                &format!("{EXIM_USER}:{EXIM_USER}"),
                &format!(" (does the user {EXIM_USER} exist? scripts/test creates it)"),
            );
        }

        let log = dir.join("stderr.log");
        let listeners = Listeners::spawn(
            Command::new(&bin)
                .arg("-C")
                .arg(&config_path)
                .arg("-bdf")
                .arg("-oP")
                .arg(dir.join("exim.pid")),
            &log,
            (starttls_port, tls_port),
            pki.ca_pem,
            dir,
        );
        Exim(listeners.ready("Exim", exim_log))
    }

    /// Every delivered copy so far, by its `Envelope-to` header.
    pub fn copies(&self) -> Vec<Copy> {
        let boxdir = self.dir.join("mail/box/new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&boxdir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter_map(|f| std::fs::read(f).ok())
            .map(|data| Copy {
                rcpt: super::recording::header(&data, "Envelope-to")
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                data,
            })
            .collect()
    }

    /// The daemon's main and reject logs and its stderr.
    pub fn log(&self) -> String {
        exim_log(self.dir.path())
    }
}

/// Exim's main, reject and panic logs and its stderr, in `dir`.
pub(super) fn exim_log(dir: &Path) -> String {
    ["log/mainlog", "log/rejectlog", "log/paniclog", "stderr.log"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

struct ConfigParams<'a> {
    bin: &'a Path,
    base: &'a Path,
    cert: &'a Path,
    key: &'a Path,
    policy: &'a Path,
    starttls_port: u16,
    tls_port: u16,
    user: &'a str,
    password: &'a str,
}

/// The whole runtime configuration; `@NAME@` marks a value filled in, `$`
/// belongs to Exim's string expansion.
const CONFIG: &str = r#"exim_path = @BIN@
keep_environment =
primary_hostname = exim.test
exim_user = @EXIM_USER@
exim_group = @EXIM_USER@
never_users = root
spool_directory = @BASE@/spool
log_file_path = @BASE@/log/%slog
local_interfaces = <; 127.0.0.1.@STARTTLS_PORT@ ; 127.0.0.1.@TLS_PORT@
tls_on_connect_ports = @TLS_PORT@
tls_certificate = @CERT@
tls_privatekey = @KEY@
tls_advertise_hosts = *
pipelining_advertise_hosts = *
chunking_advertise_hosts = *
smtputf8_advertise_hosts = *
host_lookup =
rfc1413_hosts =
message_size_limit = 50M
smtp_accept_max = 50
smtp_accept_queue_per_connection = 0
recipients_max = 0
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl
acl_rcpt:
  deny    recipients = lsearch;@POLICY@
          condition = ${if >={${lookup{$local_part@$domain}lsearch{@POLICY@}}}{500}}
          message = 550 No such user here
  defer   recipients = lsearch;@POLICY@
          message = 451 Try again later
  accept

acl_data:
  warn    add_header = X-Auth-User: $authenticated_id
  warn    add_header = X-Session: $sender_host_port
  accept

begin routers
sink:
  driver = accept
  transport = maildir

begin transports
maildir:
  driver = appendfile
  directory = @BASE@/mail/box
  maildir_format
  create_directory
  user = @EXIM_USER@
  group = @EXIM_USER@
  mode = 0644
  envelope_to_add = true
  delivery_date_add = false
  return_path_add = false

begin retry
*  *  F,1m,1m

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and{{eq{$auth2}{@USER@}}{eq{$auth3}{@PASSWORD@}}}}
  server_set_id = $auth2
  server_advertise_condition = ${if def:tls_in_cipher}

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${if and{{eq{$auth1}{@USER@}}{eq{$auth2}{@PASSWORD@}}}}
  server_set_id = $auth1
  server_advertise_condition = ${if def:tls_in_cipher}
"#;

fn render_config(p: &ConfigParams) -> String {
    CONFIG
        .replace("@BIN@", &p.bin.display().to_string())
        .replace("@EXIM_USER@", EXIM_USER)
        .replace("@BASE@", &p.base.display().to_string())
        .replace("@STARTTLS_PORT@", &p.starttls_port.to_string())
        .replace("@TLS_PORT@", &p.tls_port.to_string())
        .replace("@CERT@", &p.cert.display().to_string())
        .replace("@KEY@", &p.key.display().to_string())
        .replace("@POLICY@", &p.policy.display().to_string())
        .replace("@USER@", p.user)
        .replace("@PASSWORD@", p.password)
}
