//! `return_path`: a template for the envelope sender (MAIL FROM), so that a
//! bounce names the row it came from (VERP); the From header is untouched.

use super::helpers::*;
use crate::support::fault::FaultServer;

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
