//! The sample corpus in `tests/fixtures/bounces/`, each message checked for
//! the kind, status, address, row and original Message-ID it yields, and
//! the best-effort texts of large providers.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            &include_bytes!(concat!("../../../tests/fixtures/bounces/", $name))[..],
        )
    };
}

fn context() -> Context {
    Context {
        return_path: Some(AddressPattern::new("bounces+{{ row }}@example.com").unwrap()),
        unsubscribe: Some(AddressPattern::new("unsubscribe@example.com").unwrap()),
    }
}

struct Want {
    kind: Kind,
    email: Option<&'static str>,
    status: Option<&'static str>,
    row: Option<u64>,
    message_id: Option<&'static str>,
}

fn want(
    kind: Kind,
    email: Option<&'static str>,
    status: Option<&'static str>,
    row: Option<u64>,
    message_id: Option<&'static str>,
) -> Want {
    Want {
        kind,
        email,
        status,
        row,
        message_id,
    }
}

#[test]
fn every_sample_yields_its_kind_status_address_row_and_message_id() {
    use Kind::*;
    let cases = [
        // RFC 3464 §2.3.3 Action failed + RFC 3463 5.1.1 (bad mailbox).
        (
            fixture!("postfix-hard.eml"),
            want(
                Hard,
                Some("nobody@example.org"),
                Some("5.1.1"),
                Some(3),
                Some("<20261207T030110Z-k3f9.3@example.com>"),
            ),
        ),
        // Action delayed: a warning, soft.
        (
            fixture!("postfix-delayed.eml"),
            want(
                Soft,
                Some("full@example.org"),
                Some("4.2.2"),
                Some(9),
                Some("<20261207T030110Z-k3f9.9@example.com>"),
            ),
        ),
        // Failed after the queue lifetime with a 4.x.x status: soft.
        (
            fixture!("postfix-expired.eml"),
            want(
                Soft,
                Some("slow@example.net"),
                Some("4.4.1"),
                Some(11),
                Some("<20261207T030110Z-k3f9.11@example.com>"),
            ),
        ),
        // Exim writes Status 5.0.0; the reply's own 5.1.1 says more. The
        // returned part is message/rfc822.
        (
            fixture!("exim-dsn.eml"),
            want(
                Hard,
                Some("gone@example.net"),
                Some("5.1.1"),
                Some(5),
                Some("<20261207T030110Z-k3f9.5@example.com>"),
            ),
        ),
        // Exim giving up on a 4xx past its retry timeout: Status 5.0.0,
        // but the reply was 450 4.2.2 all along.
        (
            fixture!("exim-retry-timeout.eml"),
            want(
                Soft,
                Some("full@far.test"),
                Some("4.2.2"),
                Some(3),
                Some("<d7081cc6971365a8.3@example.com>"),
            ),
        ),
        // Classic Exim text, no report part: X-Failed-Recipients and the
        // quoted 552 5.2.2.
        (
            fixture!("exim-text.eml"),
            want(
                Hard,
                Some("quota@example.net"),
                Some("5.2.2"),
                Some(12),
                Some("<20261207T030110Z-k3f9.12@example.com>"),
            ),
        ),
        // qmail: "(#5.1.1)" and the copy after the "---" line.
        (
            fixture!("qmail.eml"),
            want(
                Hard,
                Some("nosuch@example.net"),
                Some("5.1.1"),
                Some(8),
                Some("<20261207T030110Z-k3f9.8@example.com>"),
            ),
        ),
        (
            fixture!("gmail-hard.eml"),
            want(
                Hard,
                Some("doesnotexist@gmail.com"),
                Some("5.1.1"),
                Some(4),
                Some("<20261207T030110Z-k3f9.4@example.com>"),
            ),
        ),
        // RFC 5965 §3.1 Original-Rcpt-To; the row from the VERP address
        // the report was sent to.
        (
            fixture!("arf-complaint.eml"),
            want(
                Complaint,
                Some("reader@example.net"),
                None,
                Some(6),
                Some("<20261207T030110Z-k3f9.6@example.com>"),
            ),
        ),
        // A redacted report: no address, but the row from the returned
        // Return-Path, and the Message-ID.
        (
            fixture!("arf-redacted.eml"),
            want(
                Complaint,
                Some("redacted@fbl.example.org"),
                None,
                Some(14),
                Some("<20261207T030110Z-k3f9.14@example.com>"),
            ),
        ),
        // RFC 3834 §5 Auto-Submitted: auto-replied.
        (
            fixture!("auto-reply.eml"),
            want(AutoReply, Some("alice@example.org"), None, None, None),
        ),
        (
            fixture!("out-of-office.eml"),
            want(AutoReply, Some("carol@example.net"), None, None, None),
        ),
        (
            fixture!("unsubscribe.eml"),
            want(Unsubscribe, Some("Bob@Example.org"), None, None, None),
        ),
        // Bounce words in a person's reply do not make it a bounce.
        (
            fixture!("human-reply.eml"),
            want(Unknown, Some("dave@example.org"), None, None, None),
        ),
    ];
    for ((name, raw), w) in cases {
        let c = classify(raw, &context());
        assert_eq!(c.kind, w.kind, "{name}: {c:?}");
        assert_eq!(c.email.as_deref(), w.email, "{name}: {c:?}");
        assert_eq!(c.status.as_deref(), w.status, "{name}: {c:?}");
        assert_eq!(c.row, w.row, "{name}: {c:?}");
        assert_eq!(c.message_id.as_deref(), w.message_id, "{name}: {c:?}");
        assert!(c.received_message_id.is_some(), "{name}: {c:?}");
    }
}

#[test]
fn the_arf_redacted_sample_shows_the_returned_to_only_as_a_fallback() {
    // The complaint without Original-Rcpt-To takes the returned To; the one
    // with it takes Original-Rcpt-To even though the returned To differs.
    let (_, raw) = fixture!("arf-complaint.eml");
    let edited = String::from_utf8_lossy(raw).replace("To: reader@example.net", "To: x@y.example");
    let c = classify(edited.as_bytes(), &context());
    assert_eq!(c.email.as_deref(), Some("reader@example.net"));
}

#[test]
fn dsn_details_envelope_id_and_diagnostic() {
    let (_, raw) = fixture!("postfix-hard.eml");
    let c = classify(raw, &context());
    assert_eq!(c.envelope_id.as_deref(), Some("20261207T030110Z-k3f9.3"));
    assert_eq!(
        c.diagnostic.as_deref(),
        Some(
            "550 5.1.1 <nobody@example.org>: Recipient address rejected: \
             User unknown in local recipient table"
        )
    );
    assert_eq!(
        c.received_message_id.as_deref(),
        Some("<20261207030112.4Q1c2x0Zbqz9sRk@mail.example.com>")
    );
    let (_, raw) = fixture!("gmail-hard.eml");
    let c = classify(raw, &context());
    let d = c.diagnostic.unwrap();
    assert!(d.starts_with("550-5.1.1 The email account"), "{d}");
    assert!(d.chars().count() <= MAX_DIAGNOSTIC + 3, "{d}");
    let (_, raw) = fixture!("arf-complaint.eml");
    assert_eq!(
        classify(raw, &context()).diagnostic.as_deref(),
        Some("feedback-type: abuse")
    );
}

#[test]
fn without_a_return_path_template_there_is_no_row() {
    let (_, raw) = fixture!("postfix-hard.eml");
    let c = classify(raw, &Context::default());
    assert_eq!(c.kind, Kind::Hard);
    assert_eq!(c.row, None);
    // Without an unsubscribe address, a request to unsubscribe is just mail.
    let (_, raw) = fixture!("unsubscribe.eml");
    assert_eq!(classify(raw, &Context::default()).kind, Kind::Unknown);
}

#[test]
fn the_worst_recipient_of_a_multi_recipient_report_counts() {
    let raw = "From: MAILER-DAEMON@mx.example.net\r\n\
        To: bounces+2@example.com\r\n\
        Subject: Undelivered Mail Returned to Sender\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nnotice\r\n\
        --b\r\nContent-Type: message/delivery-status\r\n\r\n\
        Reporting-MTA: dns; mx.example.net\r\n\r\n\
        Final-Recipient: rfc822; late@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n\
        Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
        --b--\r\n";
    let c = classify(raw.as_bytes(), &context());
    assert_eq!(c.kind, Kind::Hard);
    assert_eq!(c.email.as_deref(), Some("gone@example.org"));
    assert_eq!(c.row, Some(2));
}

#[test]
fn delivered_notices_and_not_spam_feedback_are_unknown() {
    let raw = "From: MAILER-DAEMON@mx.example.net\r\n\
        To: bounces+2@example.com\r\n\
        Subject: Successful Mail Delivery Report\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
        --b\r\nContent-Type: message/delivery-status\r\n\r\n\
        Reporting-MTA: dns; mx.example.net\r\n\r\n\
        Final-Recipient: rfc822; ok@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n\
        --b--\r\n";
    assert_eq!(classify(raw.as_bytes(), &context()).kind, Kind::Unknown);
    let raw = "From: fbl@example.net\r\nTo: fbl@example.com\r\n\
        Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n\
        --b\r\nContent-Type: message/feedback-report\r\n\r\n\
        Feedback-Type: not-spam\r\nUser-Agent: x/1\r\nVersion: 1\r\n\r\n--b--\r\n";
    assert_eq!(classify(raw.as_bytes(), &context()).kind, Kind::Unknown);
}

#[test]
fn a_per_row_unsubscribe_address_gives_the_row() {
    let ctx = Context {
        return_path: None,
        unsubscribe: Some(AddressPattern::new("unsub+{{ row }}@example.com").unwrap()),
    };
    let raw = b"From: Eve <eve@example.org>\r\nTo: unsub+21@example.com\r\n\
        Subject: unsubscribe\r\n\r\nplease\r\n";
    let c = classify(raw, &ctx);
    assert_eq!(c.kind, Kind::Unsubscribe);
    assert_eq!(c.email.as_deref(), Some("eve@example.org"));
    assert_eq!(c.row, Some(21));
}

#[test]
fn provider_bounce_texts_best_effort() {
    // The wordings of NetEase (163/126) and QQ notices as their users see
    // them; the layout around the words varies.
    let netease = "From: Postmaster <postmaster@163.com>\r\nTo: bounces+30@example.com\r\n\
        Subject: =?UTF-8?B?57O757uf6YCA5L+h?=\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\n\
        您发送到 wrong@163.com 的邮件投递失败。\r\n\
        原因：550 User not found: wrong@163.com\r\n";
    let c = classify(netease.as_bytes(), &context());
    assert_eq!(
        (c.kind, c.email.as_deref(), c.row),
        (Kind::Hard, Some("wrong@163.com"), Some(30))
    );
    let qq = "From: \"QQ Mail\" <MAILER-DAEMON@qq.com>\r\nTo: bounces+31@example.com\r\n\
        Subject: =?UTF-8?B?6YCA5L+h?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
        很抱歉您发送的邮件被退回，以下是该邮件的相关信息：\r\n\
        收件人 full@qq.com\r\n\
        退信原因 收件人邮箱空间不足 (mailbox is full)\r\n";
    let c = classify(qq.as_bytes(), &context());
    assert_eq!(
        (c.kind, c.email.as_deref(), c.status),
        (Kind::Soft, Some("full@qq.com"), None)
    );
    // Gmail's older plain form: no code, but unmistakable words.
    let gmail = "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n\
        To: bounces+32@example.com\r\nSubject: Delivery Status Notification (Failure)\r\n\r\n\
        Delivery to the following recipient failed permanently:\r\n\r\n\
        \x20    missing@gmail.com\r\n\r\n\
        Technical details of permanent failure:\r\n\
        The email account that you tried to reach does not exist.\r\n";
    let c = classify(gmail.as_bytes(), &context());
    assert_eq!(
        (c.kind, c.email.as_deref(), c.row),
        (Kind::Hard, Some("missing@gmail.com"), Some(32))
    );
    // "Mailbox unavailable" with a 550 and no enhanced code.
    let plain = "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces+33@example.com\r\n\
        Subject: Returned mail: see transcript for details\r\n\r\n\
        ----- The following addresses had permanent fatal errors -----\r\n\
        <x@example.org>\r\n\r\n\
        550 Requested action not taken: mailbox unavailable\r\n";
    let c = classify(plain.as_bytes(), &context());
    assert_eq!(
        (c.kind, c.email.as_deref()),
        (Kind::Hard, Some("x@example.org"))
    );
}

#[test]
fn garbage_is_unknown_and_never_panics() {
    for raw in [
        &b""[..],
        b"\xff\xfe\x00",
        b"no headers at all",
        b"From:\r\n\r\n",
    ] {
        let c = classify(raw, &context());
        assert_eq!(c.kind, Kind::Unknown, "{raw:?}");
    }
}

#[test]
fn kind_names_are_the_report_column_values() {
    let names: Vec<&str> = [
        Kind::Hard,
        Kind::Soft,
        Kind::Complaint,
        Kind::Unsubscribe,
        Kind::AutoReply,
        Kind::Unknown,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect();
    assert_eq!(
        names,
        [
            "hard",
            "soft",
            "complaint",
            "unsubscribe",
            "auto_reply",
            "unknown"
        ]
    );
    assert_eq!(Kind::AutoReply.to_string(), "auto_reply");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = classify(&bytes, &context());
        }

        #[test]
        fn mutated_samples_never_panic(cut in 0usize..4000, byte in any::<u8>(), at in 0usize..4000) {
            let (_, raw) = fixture!("gmail-hard.eml");
            let mut v = raw[..cut.min(raw.len())].to_vec();
            if !v.is_empty() {
                let i = at % v.len();
                v[i] = byte;
            }
            let _ = classify(&v, &context());
        }
    }
}
