//! Header injection: a CSV value with CR/LF can never create a header or a
//! recipient, whichever header-bearing key it reaches. `check` names every
//! bad row and the key; `run --dry-run` writes nothing; `run` sends nothing.

use std::time::Duration;

use super::{assert_unchanged, snapshot, JobDir};
use crate::support::fault::FaultServer;

/// Row 1 is clean; rows 2–4 carry CRLF, bare LF and bare CR followed by a
/// would-be header.
const CSV: &[u8] = b"email,name\r\n\
ann@example.com,Ann\r\n\
eve@example.com,\"Eve\r\nBcc: victim@example.com\"\r\n\
mal@example.com,\"Mal\nBcc: victim@example.com\"\r\n\
rob@example.com,\"Rob\rBcc: victim@example.com\"\r\n";

/// (key named in the diagnostic, YAML that feeds `name` into that key).
/// Every key whose value ends up in a header field.
const KEYS: &[(&str, &str)] = &[
    ("from", "from: \"{{ name }} <sender@example.com>\""),
    ("to", "to: \"{{ name }} <{{ email }}>\""),
    ("cc", "cc: \"{{ name }} <cc@example.com>\""),
    ("bcc", "bcc: \"{{ name }} <bcc@example.com>\""),
    ("reply_to", "reply_to: \"{{ name }} <reply@example.com>\""),
    ("subject", "subject: \"Hello {{ name }}\""),
    ("headers.X-Name", "headers:\n  X-Name: \"{{ name }}\""),
    (
        "attachments[0].name",
        "attachments:\n  - path: body.txt\n    name: \"{{ name }}.txt\"",
    ),
    (
        "list_unsubscribe",
        "list_unsubscribe: \"https://example.com/u?n={{ name }}\"",
    ),
];

fn job_yaml(port: u16, key_yaml: &str, key: &str) -> String {
    let from = if key == "from" {
        ""
    } else {
        "from: \"Sender <sender@example.com>\"\n"
    };
    let subject = if key == "subject" {
        ""
    } else {
        "subject: \"Hi\"\n"
    };
    format!(
        "smtp: {{ url: \"smtp+plain://127.0.0.1:{port}\", timeout: 2s, retry_delay: 50ms, max_attempts: 3 }}\n\
         {from}{subject}text: body.txt\n{key_yaml}\nrecipients:\n  file: r.csv\n"
    )
}

#[test]
fn crlf_lf_and_cr_in_any_header_key_are_rejected_and_nothing_is_sent() {
    let server = FaultServer::start();
    for (key, key_yaml) in KEYS {
        let jd = JobDir::new();
        jd.csv(CSV);
        jd.job(&job_yaml(server.port(), key_yaml, key));
        let before = snapshot(jd.dir.path());

        let check = jd.run(&["check", "job.yaml"]);
        check.expect_code(65);
        for row in [2, 3, 4] {
            let line = check
                .stderr
                .lines()
                .find(|l| l.contains(&format!("row {row}")) && l.contains(key))
                .unwrap_or_else(|| {
                    panic!(
                        "{key}: no diagnostic naming row {row} and the key:\n{}",
                        check.stderr
                    )
                });
            assert!(
                line.contains("job.yaml"),
                "{key}: names the job file: {line}"
            );
        }
        assert!(
            !check.stderr.contains("row 1"),
            "{key}: the clean row is not blamed:\n{}",
            check.stderr
        );

        jd.dry_run_exits(65);

        let run = jd.run(&["run", "job.yaml", "--quiet"]);
        run.expect_code(65);
        assert_unchanged(&before, jd.dir.path(), key);
    }
    // Not even the clean row went out, and no session was opened.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.connections(), 0, "a session was opened");
    assert!(server.messages().is_empty(), "a message was sent");
}

#[test]
fn line_breaks_in_body_values_are_harmless_and_stay_in_the_body() {
    // The same hostile values in the text part are just text: the message
    // has exactly the headers the job asked for and one recipient.
    let jd = JobDir::new();
    jd.csv(CSV);
    jd.dir.write("body.txt", "Name: {{ name }}\n");
    jd.job(
        "from: \"Sender <sender@example.com>\"\nsubject: Hi\ntext: body.txt\nrecipients:\n  file: r.csv\n",
    );
    let msgs = jd.dry_run();
    assert_eq!(msgs.len(), 4);
    for (row, raw) in &msgs {
        let names = super::header_names(raw);
        assert!(!names.contains(&"bcc".to_string()), "row {row}: {names:?}");
        let msg = super::parse(raw);
        assert_eq!(msg.to().map(|a| a.iter().count()), Some(1), "row {row}");
        let text = msg.body_text(0).unwrap();
        if *row > 1 {
            assert!(
                text.contains("Bcc: victim@example.com"),
                "row {row}: {text}"
            );
        }
    }
}
