//! `mailshot config import-mailrc`: a mailx `mail.rc` becomes a config that
//! `sendmail` then uses against a real server (aiosmtpd, STARTTLS + AUTH).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mail_parser::MessageParser;

use super::sendmail;
use crate::support::aiosmtpd::{AuthServer, TlsMode};
use crate::support::cmd;
use crate::support::TestDir;

#[test]
fn a_mail_rc_becomes_a_config_that_sends() {
    let server = AuthServer::start(TlsMode::Starttls, "ops@example.com", "pa ss\"word");
    let dir = TestDir::new();
    dir.write(
        ".mailrc",
        format!(
            "# as a mailx user writes it\nset from=\"Ops Team <ops@example.com>\"\nset smtp=smtp://127.0.0.1:{}\n\
             set smtp-use-starttls\nset smtp-auth=login smtp-auth-user=ops@example.com\n\
             set smtp-auth-password=\"pa ss\\\"word\"\nset tls-ca-file={}\n",
            server.port(),
            server.ca_file().display()
        ),
    );
    let out = cmd::mailshot(dir.path(), ["config", "import-mailrc"]).run();
    out.expect_code(0);
    let config = dir.read("xdg/mailshot/config.yaml");
    assert!(
        !config.contains("pa ss"),
        "the password stays out of the config:\n{config}"
    );
    let pw = dir.join("xdg/mailshot/config.password");
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "pa ss\"word\n");
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A second import never overwrites.
    let again = cmd::mailshot(dir.path(), ["config", "import-mailrc"]).run();
    again.expect_code(73);

    sendmail(
        &dir,
        &["a@y.example"],
        b"Subject: from the imported config\n\nhello\n",
    )
    .expect_code(0);
    let files = server.wait_for_messages(1, Duration::from_secs(20));
    assert_eq!(files.len(), 1);
    let data = std::fs::read(&files[0]).unwrap();
    let parsed = MessageParser::default().parse(&data).unwrap();
    let text = |n: &str| {
        parsed
            .header(n)
            .and_then(|v| v.as_text())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(text("X-Auth-User"), "ops@example.com");
    assert_eq!(text("Return-Path"), "ops@example.com");
    let from = parsed.from().and_then(|f| f.first()).unwrap();
    assert_eq!(from.address(), Some("ops@example.com"));
    assert_eq!(from.name(), Some("Ops Team"));
}
