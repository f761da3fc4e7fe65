//! A private Haraka 3 (npm `Haraka`, installed by `scripts/test`) as a
//! recording sink: `haraka -i` lays out a config folder in a temp dir, which
//! then gets two listeners on free loopback ports (STARTTLS, and implicit TLS
//! through `smtps_port`), the `tls` plugin with a certificate from
//! `generate_pki`, `auth/flat_file` (PLAIN, LOGIN; one account) and the
//! `haraka_sink.js` plugin next to this file, which stores each message once
//! per envelope recipient and refuses recipients named in a policy file.
//!
//! Haraka offers PIPELINING but no CHUNKING, and answers 503 to commands a
//! client pipelines after the final dot of DATA.

use std::path::Path;
use std::process::{Command, Stdio};

use mailshot::smtp::net::tls::generate_pki;

use super::recording::{node_modules, support_file, write_policy, Listeners};
use super::{free_port, TestDir};

/// A running Haraka; killed on drop.
pub struct Haraka(Listeners);

impl std::ops::Deref for Haraka {
    type Target = Listeners;
    fn deref(&self) -> &Listeners {
        &self.0
    }
}

/// The RFC 7919 `ffdhe2048` group. Without a `dhparams.pem` Haraka runs
/// `openssl dhparam 2048` at start-up, which takes seconds to minutes, and
/// offers no working TLS until it ends.
const FFDHE2048_PEM: &str = "-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

impl Haraka {
    /// Configures and starts an instance accepting `user`/`password`.
    pub fn start(user: &str, password: &str) -> Haraka {
        let modules = node_modules();
        let bin = modules.join(".bin/haraka");
        let dir = TestDir::new();
        let root = dir.join("haraka");
        let status = Command::new(&bin)
            .arg("-i")
            .arg(&root)
            .env("NODE_PATH", &modules)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run {} -i: {e}", bin.display()));
        assert!(status.success(), "haraka -i {}", root.display());

        let (starttls_port, tls_port) = (free_port(), free_port());
        let pki = generate_pki(&[]);
        let conf = |name: &str, text: &str| {
            std::fs::write(root.join("config").join(name), text)
                .unwrap_or_else(|e| panic!("write Haraka {name}: {e}"));
        };
        conf("tls_cert.pem", &pki.cert_pem);
        conf("tls_key.pem", &pki.key_pem);
        conf("me", "haraka.test\n");
        conf(
            "smtp.ini",
            &format!(
                "[main]\nlisten=127.0.0.1:{starttls_port},127.0.0.1:{tls_port}\n\
                 smtps_port={tls_port}\nnodes=0\ndaemonize=false\n"
            ),
        );
        conf("plugins", "tls\nauth/flat_file\nmailshot_sink\n");
        conf(
            "auth_flat_file.ini",
            &format!("[core]\nmethods=PLAIN,LOGIN\n[users]\n{user}={password}\n"),
        );
        conf("log.ini", "[main]\nlevel=warn\n");
        let connection = root.join("config/connection.ini");
        let text = std::fs::read_to_string(&connection).expect("Haraka connection.ini");
        // Room for the attachment tests; the default is 25 MB.
        std::fs::write(
            &connection,
            text.replace("bytes=26214400", "bytes=52428800"),
        )
        .unwrap();
        conf("dhparams.pem", FFDHE2048_PEM);
        std::fs::copy(
            support_file("haraka_sink.js"),
            root.join("plugins/mailshot_sink.js"),
        )
        .expect("install the sink plugin");
        write_policy(&dir.join("policy"), &[]);

        let log = dir.join("haraka.log");
        let listeners = Listeners::spawn(
            Command::new(&bin)
                .arg("-c")
                .arg(&root)
                .current_dir(dir.path())
                .env("NODE_PATH", &modules)
                .env("MAILSHOT_SINK_DIR", dir.path()),
            &log,
            (starttls_port, tls_port),
            pki.ca_pem,
            dir,
        );
        Haraka(listeners.ready("Haraka", haraka_log))
    }

    /// Haraka's log so far.
    pub fn log(&self) -> String {
        haraka_log(self.dir.path())
    }
}

fn haraka_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("haraka.log")).unwrap_or_default()
}
