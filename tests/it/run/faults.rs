//! Faults from the scripted server, judged at the run level: every
//! recipient in the report with the right status, nothing delivered twice.
//! (421 mid-batch is in `flow`, 550 for some in `retries` and `report`.)

use mailshot::smtp::net::tls::generate_pki;

use super::helpers::*;
use crate::support::fault::FaultServer;

fn statuses(job: &Job) -> Vec<String> {
    job.report().into_iter().map(|r| r.status).collect()
}

/// The server resets the connection in the middle of the 2nd message's body.
/// With pipelining the client has already handed out the whole message, final
/// dot included, so it cannot know what the server got: that row is
/// `uncertain` (SPEC), every other row is sent once, and a rerun with
/// `--resend-uncertain` completes the job with one copy each.
#[test]
fn reset_mid_data_is_uncertain_and_never_duplicated() {
    let server = FaultServer::builder().drop_during_data(2).start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 8);
    let out = job.run(&[]);
    let rows = job.report();
    let d = deliveries(&server);
    for r in &rows {
        match r.status.as_str() {
            "sent" => assert_eq!(d.get(&r.email), Some(&1), "{r:?}"),
            "uncertain" | "failed" => assert_eq!(d.get(&r.email), None, "{r:?}"),
            other => panic!("{other}: {r:?}"),
        }
    }
    assert!(matches!(out.code, 0 | 75), "{}", out.stderr);
    assert_eq!(rows.len(), 8);
    let out = job.run(&["--resend-uncertain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 8);
    assert!(statuses(&job).iter().all(|s| s == "sent"));
}

#[test]
fn drop_after_final_dot_is_uncertain_not_resent() {
    let server = FaultServer::builder().drop_after_final_dot(2).start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 4);
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let rows = job.report();
    let uncertain: Vec<_> = rows.iter().filter(|r| r.status == "uncertain").collect();
    assert_eq!(uncertain.len(), 1, "{rows:?}");
    let victim = uncertain[0].email.clone();
    assert_eq!(deliveries(&server).get(&victim), None);
    assert_eq!(server.unacknowledged().len(), 1);
    // A rerun does not resend it...
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(server.messages().len(), 3);
    // ...unless asked, and then with the same Message-ID.
    let out = job.run(&["--resend-uncertain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let resent = server
        .messages()
        .into_iter()
        .find(|m| m.rcpts == [victim.clone()])
        .unwrap();
    let lost = &server.unacknowledged()[0];
    let id = |data: &[u8]| {
        mail_parser::MessageParser::default()
            .parse(data)
            .and_then(|m| m.message_id().map(str::to_owned))
    };
    assert_eq!(id(&resent.data), id(&lost.data));
    assert!(id(&lost.data).is_some());
    assert_each_once(&server, 4);
}

#[test]
fn status_452_after_two_recipients_defers_the_rest() {
    let server = FaultServer::builder()
        .rcpt_hook(|_, n| (n > 2).then(|| "452 4.5.3 Too many recipients".to_owned()))
        .start();
    // Each message has the row's address plus three Cc's: 4 RCPTs, 2 allowed.
    let csv = "email,name,c1,c2,c3\n\
               a@example.test,A,a1@example.test,a2@example.test,a3@example.test\n\
               b@example.test,B,b1@example.test,b2@example.test,b3@example.test\n";
    let job = Job::with_csv(
        &smtp_plain(server.port(), "sessions: 1"),
        csv,
        "cc: \"{{ c1 }}, {{ c2 }}, {{ c3 }}\"",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let d = deliveries(&server);
    for who in ["a", "a1", "a2", "a3", "b", "b1", "b2", "b3"] {
        assert_eq!(
            d.get(&format!("{who}@example.test")),
            Some(&1),
            "{who}: {d:?}"
        );
    }
    assert!(server.messages().iter().all(|m| m.rcpts.len() <= 2));
    assert_eq!(statuses(&job), ["sent", "sent"]);
}

#[test]
fn stalled_server_times_out_and_the_run_still_completes() {
    // Every connection answers EHLO and two messages' commands, then goes silent.
    let server = FaultServer::builder().stall_after(7).start();
    let job = Job::new(
        &format!(
            "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 1s, retry_delay: 50ms, max_attempts: 4, sessions: 1 }}",
            server.port()
        ),
        5,
    );
    let out = job.run(&[]);
    let rows = job.report();
    assert_eq!(rows.len(), 5);
    // Nothing is ever delivered twice, whatever the timeouts did.
    let d = deliveries(&server);
    assert!(d.values().all(|&n| n == 1), "{d:?}");
    for r in &rows {
        match r.status.as_str() {
            "sent" => assert_eq!(d.get(&r.email), Some(&1), "{r:?}"),
            "failed" | "uncertain" => assert_eq!(d.get(&r.email), None, "{r:?}"),
            other => panic!("unexpected status {other}: {r:?}"),
        }
    }
    assert!(
        server.connections() >= 3,
        "it reconnected after each timeout"
    );
    assert!(matches!(out.code, 0 | 75), "{}: {}", out.code, out.stderr);
    if out.code == 0 {
        assert_each_once(&server, 5);
    }
}

#[test]
fn greeting_554_nothing_sent() {
    let server = FaultServer::builder()
        .greeting("554 5.7.1 No SMTP service here")
        .start();
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    let out = job.run(&[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(
        out.stderr.contains("554"),
        "shows the greeting: {}",
        out.stderr
    );
    assert!(server.messages().is_empty());
    assert_eq!(statuses(&job), ["failed", "failed", "failed"]);
    assert_eq!(server.connections(), 1, "a 5xx greeting is not retried");
}

#[test]
fn tls_handshake_failure_nothing_sent() {
    let pki = generate_pki(&["127.0.0.1"]);
    let server = FaultServer::builder()
        .starttls(Some(pki.clone()))
        .tls_garbage_after_starttls()
        .start();
    let job = Job::new(
        &format!(
            "{{ url: \"smtp://127.0.0.1:{}\", ca_file: ca.pem, timeout: 2s, retry_delay: 50ms, max_attempts: 2 }}",
            server.port()
        ),
        3,
    );
    job.dir.write("ca.pem", &pki.ca_pem);
    let out = job.run(&[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(
        out.stderr.to_ascii_lowercase().contains("tls"),
        "{}",
        out.stderr
    );
    assert!(server.messages().is_empty());
    assert!(
        !server.commands().iter().any(|c| c.starts_with("MAIL")),
        "no mail in the clear after a failed STARTTLS"
    );
    assert_eq!(statuses(&job), ["failed", "failed", "failed"]);
}

#[test]
fn trickling_replies_each_delivered_once() {
    let server = FaultServer::builder().trickle(true).start();
    let job = Job::new(&smtp_plain(server.port(), ""), 6);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 6);
    assert!(statuses(&job).iter().all(|s| s == "sent"));
}

#[test]
fn too_many_connections_421_greeting_is_retried() {
    let server = FaultServer::builder().max_connections(1).start();
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 5"), 12);
    let out = job.run(&["--sessions", "3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 12);
}
