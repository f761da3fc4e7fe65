use super::*;

fn sub(read: bool, args: &[&str]) -> Submission {
    Submission {
        read_recipients: read,
        recipients: args.iter().map(|s| s.to_string()).collect(),
        date: 1_700_000_000,
        run_id: "r1".into(),
        ..Default::default()
    }
}

fn text(o: &Outgoing) -> String {
    String::from_utf8(o.data.to_vec()).unwrap()
}

#[test]
fn line_ends_become_crlf_and_a_lone_dot_ends_input_without_i() {
    assert_eq!(normalise(b"a\nb\r\nc", true), b"a\r\nb\r\nc\r\n");
    assert_eq!(normalise(b"a\n.\nb\n", false), b"a\r\n");
    assert_eq!(normalise(b"a\n.\nb\n", true), b"a\r\n.\r\nb\r\n");
    assert_eq!(normalise(b"a\n..\nb\n", false), b"a\r\n..\r\nb\r\n");
}

#[test]
fn bcc_is_removed_and_read_with_t() {
    let data = normalise(
        b"From: A <a@x.example>\nTo: b@y.example,\n  c@y.example\nBcc: Hidden <h@z.example>,\n\tj@z.example\nSubject: s\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <m1@x.example>\n\nbody\n",
        true,
    );
    let o = submit(&data, &sub(true, &["extra@w.example"])).unwrap();
    assert_eq!(
        o.envelope.rcpt_to,
        [
            "b@y.example",
            "c@y.example",
            "h@z.example",
            "j@z.example",
            "extra@w.example"
        ]
    );
    assert_eq!(o.envelope.mail_from, "a@x.example");
    assert_eq!(o.message_id, "<m1@x.example>");
    let t = text(&o);
    assert!(!t.to_lowercase().contains("bcc"), "{t}");
    assert!(!t.contains("j@z.example"), "{t}");
    assert_eq!(
        t,
        "From: A <a@x.example>\r\nTo: b@y.example,\r\n  c@y.example\r\nSubject: s\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m1@x.example>\r\n\r\nbody\r\n"
    );
}

#[test]
fn without_t_headers_give_no_recipients() {
    let data = normalise(b"To: b@y.example\nSubject: s\n\nbody\n", true);
    let mut s = sub(false, &[]);
    s.default_from = Some("me@x.example".into());
    assert!(matches!(submit(&data, &s), Err(Error::Usage(_))));
    s.recipients = vec!["c@y.example".into()];
    let o = submit(&data, &s).unwrap();
    assert_eq!(o.envelope.rcpt_to, ["c@y.example"]);
}

#[test]
fn date_message_id_and_from_are_added_only_when_missing() {
    let data = normalise(b"To: b@y.example\nSubject: s\n\nbody\n", true);
    let mut s = sub(true, &[]);
    s.envelope_from = Some("cron@host.example".into());
    s.full_name = Some("Cron Daemon".into());
    let o = submit(&data, &s).unwrap();
    let bytes = o.data.to_vec();
    let msg = MessageParser::new().parse(&bytes).unwrap();
    let from = msg.from().unwrap().first().unwrap();
    assert_eq!(from.address(), Some("cron@host.example"));
    assert_eq!(from.name(), Some("Cron Daemon"));
    assert_eq!(msg.date().unwrap().to_timestamp(), 1_700_000_000);
    assert_eq!(format!("<{}>", msg.message_id().unwrap()), o.message_id);
    assert!(o.message_id.ends_with("@host.example>"));
    assert!(text(&o).ends_with("To: b@y.example\r\nSubject: s\r\n\r\nbody\r\n"));
    assert_eq!(o.envelope.mail_from, "cron@host.example");
}

#[test]
fn eight_bit_bodies_are_marked() {
    let data = normalise("To: b@y.example\n\nGrüße\n".as_bytes(), true);
    let mut s = sub(true, &[]);
    s.default_from = Some("me@x.example".into());
    assert!(submit(&data, &s).unwrap().eight_bit);
    let data = normalise(b"To: b@y.example\n\nplain\n", true);
    assert!(!submit(&data, &s).unwrap().eight_bit);
}
