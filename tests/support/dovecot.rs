//! A private Dovecot (Debian's `dovecot-imapd` and `dovecot-pop3d`) serving
//! one Maildir over IMAP (STARTTLS), IMAPS, POP3 (STLS) and POP3S on free
//! loopback ports, with a certificate from `generate_pki` and one user from
//! a passwd-file. Its config, base_dir, state and log live in a temp dir;
//! the system instance is never touched. Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailshot::smtp::net::tls::generate_pki;

use super::{chmod, chown, free_port, wait_for_listener, TestDir};

const DOVECOT: &str = "/usr/sbin/dovecot";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The user the instance knows.
pub const USER: &str = "bounces";
/// That user's password.
pub const PASSWORD: &str = "s3cret-pass";

/// The four listeners' ports on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// IMAP with STARTTLS.
    pub imap: u16,
    /// IMAP over implicit TLS.
    pub imaps: u16,
    /// POP3 with STLS.
    pub pop3: u16,
    /// POP3 over implicit TLS.
    pub pop3s: u16,
}

/// A running private Dovecot.
pub struct Dovecot {
    dir: TestDir,
    child: Child,
    ports: Ports,
    ca_pem: String,
}

impl Dovecot {
    /// Starts an instance serving `maildir` (created if missing, and given
    /// to the `postfix` user, as the private Postfix delivers as that user).
    pub fn start(maildir: &Path) -> Dovecot {
        assert!(
            Path::new(DOVECOT).exists(),
            "{DOVECOT} is missing: install dovecot-imapd and dovecot-pop3d (scripts/test does)"
        );
        let dir = TestDir::new();
        chmod(dir.path(), "755");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        chown(maildir, "postfix:postfix", "");
        let pki = generate_pki(&[]);
        let cert = dir.write("cert.pem", &pki.cert_pem);
        let key = dir.write("key.pem", &pki.key_pem);
        chmod(&key, "600");
        let passwd = dir.write("passwd", format!("{USER}:{{PLAIN}}{PASSWORD}\n"));
        chmod(&passwd, "644");
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        chown(&home, "postfix:postfix", "");
        let ports = Ports {
            imap: free_port(),
            imaps: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
        };
        let base = dir.path().display();
        let conf = format!(
            "protocols = imap pop3\n\
             listen = 127.0.0.1\n\
             base_dir = {base}/run\n\
             state_dir = {base}/state\n\
             log_path = {base}/dovecot.log\n\
             info_log_path = {base}/dovecot.log\n\
             default_internal_user = dovecot\n\
             default_login_user = dovenull\n\
             ssl = yes\n\
             ssl_cert = <{cert}\n\
             ssl_key = <{key}\n\
             ssl_min_protocol = TLSv1.2\n\
             disable_plaintext_auth = yes\n\
             auth_mechanisms = plain login\n\
             first_valid_uid = 1\n\
             pop3_uidl_format = %08Xu%08Xv\n\
             passdb {{\n  driver = passwd-file\n  args = {passwd}\n}}\n\
             userdb {{\n  driver = static\n  args = uid=postfix gid=postfix home={home}\n}}\n\
             mail_location = maildir:{maildir}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
               inet_listener imaps {{\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  \
               inet_listener pop3s {{\n    port = {pop3s}\n    ssl = yes\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n\
             service imap-login {{\n  chroot =\n}}\n\
             service pop3-login {{\n  chroot =\n}}\n",
            cert = cert.display(),
            key = key.display(),
            passwd = passwd.display(),
            home = home.display(),
            maildir = maildir.display(),
            imap = ports.imap,
            imaps = ports.imaps,
            pop3 = ports.pop3,
            pop3s = ports.pop3s,
        );
        let conf = dir.write("dovecot.conf", conf);
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {DOVECOT}: {e}"));
        let dc = Dovecot {
            dir,
            child,
            ports,
            ca_pem: pki.ca_pem,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for port in [ports.imap, ports.imaps, ports.pop3, ports.pop3s] {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                wait_for_listener(port, left),
                "private Dovecot did not listen on 127.0.0.1:{port}\nlog:\n{}",
                dc.log()
            );
        }
        dc
    }

    /// The listeners' ports.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// Writes the CA that signed the server certificate to a file and returns its path.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.write("ca.pem", &self.ca_pem)
    }

    /// The instance's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
