//! A private Dovecot (Debian's `dovecot-imapd` and `dovecot-pop3d`) serving
//! one Maildir over IMAP (STARTTLS), IMAPS, POP3 (STLS) and POP3S on free
//! loopback ports, with a certificate from `generate_pki` and one user from
//! a passwd-file. Besides PLAIN and LOGIN it offers XOAUTH2, checking the
//! bearer token itself (`passdb oauth2` with `introspection_mode = local`:
//! an HS256 JWT signed with a key of this instance, see
//! [`Dovecot::access_token`]; the password is no token). Its config, base_dir, state and log live in
//! a temp dir; the system instance is never touched. Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as URL};
use base64::Engine as _;
use mailshot::smtp::net::tls::generate_pki;

use super::{chmod, chown, free_port, wait_for_listener, TestDir};

const DOVECOT: &str = "/usr/sbin/dovecot";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The user the instance knows.
pub const USER: &str = "bounces";
/// That user's password.
pub const PASSWORD: &str = "s3cret-pass";
/// The HMAC key the instance checks access tokens with.
const TOKEN_KEY: &[u8] = b"mailshot-test-oauth2-signing-key";

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
        // The key for JWTs without `azp` and `kid`, base64 as Dovecot reads it.
        let key_file = dir.write("keys/default/HS256/default", B64.encode(TOKEN_KEY));
        chmod(&key_file, "644");
        let oauth2 = dir.write(
            "oauth2.conf",
            format!(
                "introspection_mode = local\n\
                 local_validation_key_dict = fs:posix:prefix={}/keys/\n\
                 username_attribute = sub\n",
                dir.path().display()
            ),
        );
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
             auth_mechanisms = plain login xoauth2\n\
             first_valid_uid = 1\n\
             pop3_uidl_format = %08Xu%08Xv\n\
             passdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n  args = {oauth2}\n}}\n\
             passdb {{\n  driver = passwd-file\n  mechanisms = plain login\n  args = {passwd}\n}}\n\
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
            oauth2 = oauth2.display(),
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

    /// An access token for [`USER`] that the instance accepts over
    /// XOAUTH2 for the next ten minutes: a JWT (RFC 7519) signed with
    /// HS256.
    pub fn access_token() -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let part = |json: String| URL.encode(json);
        let signed = format!(
            "{}.{}",
            part(r#"{"alg":"HS256","typ":"JWT"}"#.to_string()),
            part(format!(
                r#"{{"sub":"{USER}","iat":{now},"exp":{}}}"#,
                now + 600
            ))
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, TOKEN_KEY);
        let tag = ring::hmac::sign(&key, signed.as_bytes());
        format!("{signed}.{}", URL.encode(tag.as_ref()))
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
