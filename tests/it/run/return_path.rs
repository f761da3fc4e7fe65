//! `return_path`: a template for the envelope sender (MAIL FROM), so that a
//! bounce names the row it came from (VERP); the From header is untouched.

use super::helpers::*;
use crate::support::fault::FaultServer;
use crate::support::report::row_of;

/// MAIL FROM arguments the server saw, in order.
fn mail_froms(server: &crate::support::fault::FaultHandle) -> Vec<String> {
    server
        .commands()
        .into_iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("MAIL FROM:"))
        .collect()
}

#[test]
fn each_row_gets_its_own_envelope_sender() {
    let server = FaultServer::start();
    let job = Job::with_csv(
        &smtp_plain(server.port(), "sessions: 1"),
        &csv_rows(3),
        "return_path: \"bounces+{{ row }}@example.test\"",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The path, without the parameters (SIZE=, BODY=) that follow it.
    let mut froms: Vec<String> = mail_froms(&server)
        .iter()
        .map(|c| c.split('>').next().unwrap().to_string() + ">")
        .collect();
    froms.sort();
    let want: Vec<String> = (1..=3)
        .map(|i| format!("MAIL FROM:<bounces+{i}@example.test>"))
        .collect();
    assert_eq!(froms, want);
    // The From header still names the sender.
    let preview = Mailshot::new(job.dir.path())
        .args(["preview", "job.yaml", "--row", "2"])
        .limit(RUN_LIMIT)
        .run();
    assert_eq!(preview.code, 0, "{}", preview.stderr);
    assert!(
        preview
            .stdout
            .lines()
            .any(|l| l.starts_with("From:") && l.ends_with("<sender@example.test>")),
        "{}",
        preview.stdout
    );
}

#[test]
fn without_return_path_the_envelope_sender_is_the_from_address() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 1);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let froms = mail_froms(&server);
    assert_eq!(froms.len(), 1);
    assert!(
        froms[0].starts_with("MAIL FROM:<sender@example.test>"),
        "{froms:?}"
    );
}

#[test]
fn a_value_cannot_turn_the_return_path_into_another_address() {
    let server = FaultServer::start();
    let csv = "email,name,tag\na@example.test,A,ok\nb@example.test,B,x@evil.test\n";
    let job = Job::with_csv(
        &smtp_plain(server.port(), ""),
        csv,
        "return_path: \"bounces+{{ tag }}@example.test\"",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("return_path"), "{}", out.stderr);
    assert!(server.commands().iter().all(|c| !c.starts_with("MAIL")));
}

#[test]
fn a_server_offering_dsn_is_asked_for_headers_only_bounces_with_envid_and_orcpt() {
    let server = FaultServer::builder().dsn(true).start();
    let job = Job::with_csv(
        &smtp_plain(server.port(), "sessions: 1"),
        "email,name,cc\nr1@example.test,A,cc+1@example.test\n",
        "cc: \"{{ cc }}\"",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cmds = server.commands();
    let mail = cmds
        .iter()
        .find(|c| c.starts_with("MAIL FROM:"))
        .expect("a MAIL command");
    // ENVID is the message's Message-ID, so a bounce that carries only it
    // still names the message (and its row).
    let id = job.report()[0].message_id.clone();
    let envid = id.trim_start_matches('<').trim_end_matches('>');
    assert!(mail.contains(" RET=HDRS"), "{mail}");
    assert!(mail.contains(&format!(" ENVID={envid}")), "{mail} vs {id}");
    let rcpts: Vec<&String> = cmds.iter().filter(|c| c.starts_with("RCPT")).collect();
    assert_eq!(
        rcpts,
        [
            "RCPT TO:<r1@example.test> ORCPT=rfc822;r1@example.test",
            "RCPT TO:<cc+1@example.test> ORCPT=rfc822;cc+2B1@example.test",
        ]
    );
    assert_eq!(deliveries(&server).len(), 2);
}

#[test]
fn a_server_without_dsn_gets_no_dsn_parameters() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 1);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for c in server.commands() {
        assert!(
            !c.contains("RET=") && !c.contains("ENVID=") && !c.contains("ORCPT="),
            "{c}"
        );
    }
}

/// A real Postfix that accepts the job's messages and relays one domain to
/// a server that refuses its user (550 5.1.1): the DSN Postfix then writes
/// returns goes to the row's VERP address, names the message by its ENVID
/// and the recipient by its ORCPT, carries only the headers (RET=HDRS), and
/// the classifier matches it to its row.
#[test]
fn a_postfix_bounce_comes_back_to_the_verp_address_with_envid_and_orcpt() {
    use mailshot::mailbox::classify::{classify, AddressPattern, Context, Kind};
    use std::time::Duration;

    let far = FaultServer::builder()
        .rcpt_hook(|_, _| Some("550 5.1.1 <gone@dead.test>: User unknown".into()))
        .start();
    let pf = crate::support::postfix::Postfix::start_with(&format!(
        "transport_maps = inline:{{ dead.test=smtp:[127.0.0.1]:{} }}\n\
         bounce_queue_lifetime = 0\n\
         maximal_queue_lifetime = 0",
        far.port()
    ));
    let csv = "email,name\nlive@example.test,Live\ngone@dead.test,Gone\n";
    let job = Job::with_csv(
        &format!(
            "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 10s }}",
            pf.port()
        ),
        csv,
        "return_path: \"bounces+{{ row }}@example.test\"",
    );
    job.dir.write(
        "body.txt",
        "Dear {{ name }},\nsecret body words {{ row }}.\n",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The message to live@ and the bounce for gone@.
    let files = pf.wait_for_messages(2, Duration::from_secs(30));
    let texts: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let bounce = texts
        .iter()
        .find(|t| String::from_utf8_lossy(t).contains("multipart/report"))
        .unwrap_or_else(|| panic!("no DSN among {files:?}\nlog:\n{}", pf.log()));
    let text = String::from_utf8_lossy(bounce);
    let id = row_of(&job.report(), "gone@dead.test").message_id.clone();
    assert!(
        text.contains("X-Original-To: bounces+2@example.test")
            || text.contains("Delivered-To: bounces+2@example.test"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Original-Envelope-Id: {}",
            id.trim_start_matches('<').trim_end_matches('>')
        )),
        "{text}"
    );
    assert!(
        text.contains("Original-Recipient: rfc822;gone@dead.test"),
        "{text}"
    );
    assert!(text.contains("text/rfc822-headers"), "{text}");
    assert!(!text.contains("secret body words"), "{text}");

    let ctx = Context {
        return_path: Some(AddressPattern::new("bounces+{{ row }}@example.test").unwrap()),
        unsubscribe: None,
    };
    let c = classify(bounce, &ctx);
    assert_eq!(c.kind, Kind::Hard, "{c:?}");
    assert_eq!(c.email.as_deref(), Some("gone@dead.test"), "{c:?}");
    assert_eq!(c.status.as_deref(), Some("5.1.1"), "{c:?}");
    assert_eq!(c.row, Some(2), "{c:?}");
    assert_eq!(c.message_id.as_deref(), Some(id.as_str()), "{c:?}");
}
