//! QQ, 163 and 126 send only as the login: `check` and `run` say so before
//! anything is sent when a row's From or `return_path` is another address,
//! naming the file, the key and the row; a display name of one's own is fine.

use super::helpers::*;
use crate::support::fault::{FaultHandle, FaultServer};
use crate::support::TestDir;

/// A job on `provider` (host, port and security pointed at the fault
/// server), logging in as `login`, with `from` and optional `return_path`
/// templates; rows 1-3 each carry a `sender` column.
fn job(server: &FaultHandle, provider: &str, login: &str, from: &str, rp: &str) -> TestDir {
    let dir = TestDir::new();
    dir.write(
        "recipients.csv",
        "email,sender\nr1@example.test,me@qq.com\nr2@example.test,other@qq.com\nr3@example.test,ME@QQ.COM\n",
    );
    dir.write("body.txt", "hi {{ email }}\n");
    dir.write(
        "job.yaml",
        format!(
            "smtp:\n  provider: {provider}\n  host: 127.0.0.1\n  port: {}\n  security: none\n  \
             allow_plaintext_auth: true\n  username: {login}\n  password_env: MAILSHOT_TEST_PW\n  \
             timeout: 2s\n  retry_delay: 50ms\n\
             from: \"{from}\"\n{rp}\
             subject: hi\n\
             text: body.txt\n\
             recipients: {{ file: recipients.csv }}\n",
            server.port()
        ),
    );
    dir
}

fn mailshot(dir: &TestDir, cmd: &str) -> Output {
    Mailshot::new(dir.path())
        .args([cmd, "job.yaml"])
        .env("MAILSHOT_TEST_PW", "secret")
        .env_remove("XDG_CONFIG_HOME")
        .limit(RUN_LIMIT)
        .run()
}

fn login_server() -> FaultHandle {
    FaultServer::builder()
        .auth(true)
        .credentials("me@qq.com", "secret")
        .start()
}

#[test]
fn check_and_run_refuse_a_from_that_is_not_the_qq_login_before_sending() {
    let server = login_server();
    let dir = job(&server, "qq", "me@qq.com", "News <{{ sender }}>", "");
    for cmd in ["check", "run"] {
        let out = mailshot(&dir, cmd);
        assert_eq!(out.code, 65, "{cmd}: {}", out.stderr);
        // Only row 2 differs (row 3 is the login in other case).
        let problem = out
            .stderr
            .lines()
            .find(|l| l.contains("(row 2)"))
            .unwrap_or_else(|| panic!("{cmd}: no row 2 in {}", out.stderr));
        assert!(problem.contains("job.yaml:"), "{problem}");
        assert!(problem.contains("`from` is other@qq.com"), "{problem}");
        assert!(problem.contains("me@qq.com"), "{problem}");
        assert!(!out.stderr.contains("(row 1)") && !out.stderr.contains("(row 3)"));
        assert!(
            out.stderr
                .contains("501 mail from address must be same as authorization user"),
            "{cmd}: the provider's reply: {}",
            out.stderr
        );
    }
    assert_eq!(
        server.connections(),
        0,
        "nothing was sent, not even a connection"
    );
    assert!(!dir.join("job.report.csv").exists());
}

#[test]
fn a_netease_return_path_other_than_the_login_is_refused() {
    let server = login_server();
    let dir = job(
        &server,
        "163",
        "me@qq.com",
        "me@qq.com",
        "return_path: \"bounces+{{ row }}@qq.com\"\n",
    );
    let out = mailshot(&dir, "check");
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("(row 1): `return_path` is bounces+1@qq.com"),
        "{}",
        out.stderr
    );
    assert!(out
        .stderr
        .contains("553 Mail from must equal authorized user"));
}

#[test]
fn a_display_name_of_ones_own_is_fine_only_the_address_counts() {
    let server = login_server();
    let dir = job(&server, "qq", "me@qq.com", "Weekly News <ME@qq.com>", "");
    let out = mailshot(&dir, "check");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = mailshot(&dir, "run");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let messages = server.messages();
    assert_eq!(messages.len(), 3);
    assert!(messages
        .iter()
        .all(|m| m.from.eq_ignore_ascii_case("me@qq.com")));
}

#[test]
fn without_such_a_preset_any_sender_goes() {
    let server = login_server();
    let dir = job(&server, "gmail", "me@qq.com", "News <{{ sender }}>", "");
    let out = mailshot(&dir, "check");
    assert_eq!(out.code, 0, "{}", out.stderr);
}
