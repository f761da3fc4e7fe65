//! A provider that sends only as the login (QQ, 163, 126) leaves no room for
//! a VERP `return_path`: bounces come back to the login's own mailbox, and
//! the row is found from the returned headers' Message-ID instead.

use super::Books;
use crate::mailbox::reader::Received;
use crate::mailbox::seen::{MessageKey, Seen};

const BOUNCE: &[u8] = include_bytes!("../../../tests/fixtures/bounces/postfix-hard.eml");
/// The Message-ID in the bounce's returned headers.
const SENT_ID: &str = "<20261207T030110Z-k3f9.3@example.com>";

/// A job on the qq preset without `return_path`, whose report says row 5
/// went to `email` with `message_id`; the row `learn` gives the bounce.
fn matched_row(email: &str, message_id: &str) -> Option<u64> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("body.txt"), "hi\n").unwrap();
    std::fs::write(
        d.join("recipients.csv"),
        format!("email\nr1@example.net\n{email}\n"),
    )
    .unwrap();
    let job_path = d.join("job.yaml");
    let yaml = "smtp: { provider: qq, username: me@qq.com, password_env: QQ_CODE }\n\
                from: \"News <me@qq.com>\"\n\
                subject: hi\n\
                text: body.txt\n\
                recipients: { file: recipients.csv }\n\
                suppress: suppressed.csv\n";
    std::fs::write(&job_path, yaml).unwrap();
    let job = crate::job::validate::parse_job(yaml, &job_path, &[]).unwrap();
    assert!(job.return_path.is_none());
    assert_eq!(job.smtp.as_ref().unwrap().provider.as_deref(), Some("qq"));
    let report = d.join("job.report.csv");
    std::fs::write(
        &report,
        format!(
            "row,email,status,code,enhanced,reply,message_id,attempts\n\
             1,r1@example.net,sent,250,2.0.0,ok,<other@example.com>,1\n\
             5,{email},sent,250,2.0.0,ok,{message_id},1\n"
        ),
    )
    .unwrap();
    let mut seen = Seen::load(&d.join("job.bounces.state")).unwrap();
    let mut books = Books::open(&job, &report, 3, &mut seen, true).unwrap();
    let received = vec![Received {
        key: MessageKey::Pop3("test".into(), "1".into()),
        data: BOUNCE.to_vec(),
    }];
    let (learnt, _) = books.learn(received, &mut seen, true).unwrap();
    assert_eq!(learnt.rows.len(), 1);
    assert_eq!(learnt.rows[0].kind.as_str(), "hard");
    learnt.rows[0].row
}

#[test]
fn on_a_qq_preset_without_return_path_a_bounce_is_matched_by_its_message_id() {
    // The list had an address that forwards to the one that bounced, so
    // the address alone cannot find the row: the Message-ID does.
    assert_eq!(matched_row("nobody@old.example.org", SENT_ID), Some(5));
    // Without that Message-ID in the report nothing would match.
    assert_eq!(
        matched_row("nobody@old.example.org", "<else@example.com>"),
        None
    );
}
