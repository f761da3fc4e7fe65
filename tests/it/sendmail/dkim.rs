//! `dkim:` in the config signs what `sendmail` and `send` send; dkimpy
//! verifies the signature on what the server received.

use super::{one, sendmail, setup};
use crate::everyday::{dkim_key, dkimpy_verify};
use crate::support::cmd;
use crate::support::fault::FaultServer;

#[test]
fn the_config_dkim_signs_sendmail_and_send() {
    let server = FaultServer::start();
    let dir = setup(server.port());
    let (key, record) = dkim_key(&dir, "rsa");
    dir.write(
        "xdg/mailshot/config.yaml",
        format!(
            "smtp:\n  url: \"smtp+plain://127.0.0.1:{}\"\n  timeout: 5s\n\
             dkim: {{ domain: x.example, selector: s1, key_file: \"{}\" }}\n",
            server.port(),
            key.display()
        ),
    );
    let input =
        "From:  Ann <ann@x.example>\nTo: bob@y.example\nSubject:   spaced\n\nline  one \n\n\n";
    sendmail(&dir, &["-t"], input.as_bytes()).expect_code(0);
    let m = one(server.messages());
    assert!(
        m.data.starts_with(b"DKIM-Signature:"),
        "{}",
        String::from_utf8_lossy(&m.data)
    );
    assert_eq!(
        dkimpy_verify(&dir, &m.data, "s1._domainkey.x.example", &record),
        "PASS"
    );

    let out = cmd::mailshot(
        dir.path(),
        [
            "send",
            "--to",
            "bob@y.example",
            "--from",
            "ann@x.example",
            "-s",
            "hi",
            "--dry-run",
        ],
    )
    .stdin("signed by send\n")
    .run();
    out.expect_code(0);
    assert_eq!(
        dkimpy_verify(&dir, &out.raw_stdout, "s1._domainkey.x.example", &record),
        "PASS"
    );
}
