//! Bounces made by the real programs, read back by `mailshot bounces`: a
//! private Exim relays a job and bounces an unknown user itself, a 5xx from
//! the next hop, and a 4xx first with a delay warning and then, past its
//! retry timeout, with a bounce; a private Postfix does the same for a 4xx
//! until its queue lifetime ends. A private Dovecot serves the Maildir the
//! bounces land in. Each notice is checked for its kind, status, address,
//! row and original Message-ID, matched by the VERP return path and, for a
//! job without VERP, by the ENVID or Message-ID the notice carries.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::cmd::{Mailshot, Output};
use crate::support::dovecot::{Dovecot, PASSWORD, USER};
use crate::support::exim_relay::{EximRelay, Timing};
use crate::support::fault::FaultServer;
use crate::support::postfix::Postfix;
use crate::support::report::{read_report, row_of};
use crate::support::TestDir;

const LIMIT: Duration = Duration::from_secs(90);

fn mailshot(dir: &TestDir, args: &[&str]) -> Output {
    Mailshot::new(dir.path())
        .args(args)
        .env("BOUNCES_PW", PASSWORD)
        .env_remove("XDG_CONFIG_HOME")
        .limit(LIMIT)
        .run()
}

/// A job sending through `smtp_port`, with `return_path`, reading its
/// bounces from `mailbox` (a YAML flow map, or nothing).
fn write_job(dir: &TestDir, name: &str, smtp_port: u16, return_path: &str, mailbox: &str) {
    let bounces = if mailbox.is_empty() {
        String::new()
    } else {
        format!("bounces: {mailbox}\n")
    };
    dir.write(
        name,
        format!(
            "smtp: {{ url: \"smtp+plain://127.0.0.1:{smtp_port}\", timeout: 10s }}\n\
             from: \"Sender <sender@example.test>\"\n\
             subject: \"Hello {{{{ name }}}}\"\n\
             text: body.txt\n\
             return_path: \"{return_path}\"\n\
             suppress: {name}.suppressed.csv\n\
             {bounces}\
             recipients: {{ file: recipients.csv }}\n"
        ),
    );
}

/// `JOB.bounces.csv` as (email, row, kind, status, diagnostic, message_id).
fn bounce_rows(path: &std::path::Path) -> Vec<[String; 6]> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows: Vec<[String; 6]> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            std::array::from_fn(|i| rec[i].to_string())
        })
        .collect();
    rows.sort();
    rows
}

fn emails_in(path: &std::path::Path) -> BTreeSet<String> {
    let Ok(mut r) = csv::Reader::from_path(path) else {
        return BTreeSet::new();
    };
    r.records().map(|rec| rec.unwrap()[0].to_string()).collect()
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

#[test]
fn exim_made_bounces_are_classified_and_matched_to_their_rows() {
    let far = FaultServer::builder()
        .rcpt_hook(|addr, _| {
            if addr.contains("gone@") {
                Some("550 5.1.1 <gone@far.test>: Recipient address rejected: User unknown".into())
            } else if addr.contains("full@") {
                Some("450 4.2.2 <full@far.test>: Mailbox full".into())
            } else {
                None
            }
        })
        .start();
    let timing = Timing {
        give_up_after: Duration::from_secs(10),
        warn_after: Duration::from_secs(2),
    };
    let relay = EximRelay::start(far.port(), timing);
    let dir = TestDir::new();
    dir.write(
        "recipients.csv",
        "email,name\nnobody@users.test,Nobody\ngone@far.test,Gone\nfull@far.test,Full\n",
    );
    dir.write("body.txt", "Dear {{ name }},\nhello.\n");
    let verp = "bounces+{{ row }}@example.test";
    write_job(&dir, "job.yaml", relay.port(), verp, "");
    let out = mailshot(&dir, &["run", "job.yaml"]);
    let sent = Instant::now();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The unknown user and the 5xx bounce at once.
    let files = relay.wait_for_messages(2, Duration::from_secs(30));
    assert_eq!(files.len(), 2, "{files:?}\n{}", relay.log());
    // The 4xx: a queue run past `warn_after` sends a delay warning ...
    sleep_until(sent + timing.warn_after + Duration::from_secs(1));
    relay.queue_run();
    let files = relay.wait_for_messages(3, Duration::from_secs(30));
    assert_eq!(files.len(), 3, "{files:?}\n{}", relay.log());
    // ... and one past the retry timeout gives up and bounces.
    sleep_until(sent + timing.give_up_after + Duration::from_secs(1));
    relay.queue_run();
    let files = relay.wait_for_messages(4, Duration::from_secs(30));
    assert_eq!(files.len(), 4, "{files:?}\n{}", relay.log());

    let dc = Dovecot::start(&relay.maildir());
    std::fs::copy(dc.ca_file(), dir.join("ca.pem")).unwrap();
    let mailbox = format!(
        "{{ url: \"imaps://{USER}@127.0.0.1:{}\", password_env: BOUNCES_PW, ca_file: ca.pem }}",
        dc.ports().imaps
    );
    write_job(&dir, "job.yaml", relay.port(), verp, &mailbox);
    let out = mailshot(&dir, &["bounces", "job.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = bounce_rows(&dir.join("job.bounces.csv"));
    let report = read_report(&dir.join("job.report.csv"));
    let want = |email: &str, kind: &str| {
        let r = row_of(&report, email);
        (
            email.to_string(),
            r.row.to_string(),
            kind.to_string(),
            r.message_id.clone(),
        )
    };
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[5].clone()))
        .collect();
    assert_eq!(
        got,
        [
            want("full@far.test", "soft"),
            want("full@far.test", "soft"),
            want("gone@far.test", "hard"),
            want("nobody@users.test", "hard"),
        ],
        "{rows:#?}"
    );
    // Statuses: Exim writes 5.0.0 for what it gives up on; the next hop's
    // reply, when there was one, says more. The 4xx stays soft, also once
    // Exim gave up on it.
    let status: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[3].as_str(), r[4].contains("retry timeout")))
        .collect();
    assert_eq!(
        status,
        [
            ("full@far.test", "4.2.2", false),
            ("full@far.test", "4.2.2", true),
            ("gone@far.test", "5.1.1", false),
            ("nobody@users.test", "5.0.0", false),
        ],
        "{rows:#?}"
    );
    assert!(
        rows[2][4].starts_with("550 5.1.1 <gone@far.test>"),
        "{rows:?}"
    );
    // The hard bounces are suppressed; two soft bounces are under the limit.
    let gone: BTreeSet<String> = ["gone@far.test", "nobody@users.test"]
        .map(String::from)
        .into();
    assert_eq!(emails_in(&dir.join("job.yaml.suppressed.csv")), gone);

    // A job without VERP matches the same notices by what they carry (the
    // ENVID, the returned Message-ID).
    std::fs::copy(dir.join("job.report.csv"), dir.join("plain.report.csv")).unwrap();
    write_job(
        &dir,
        "plain.yaml",
        relay.port(),
        "bounces@example.test",
        &mailbox,
    );
    let out = mailshot(&dir, &["bounces", "plain.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plain = bounce_rows(&dir.join("plain.bounces.csv"));
    assert_eq!(plain, rows);
    assert_eq!(emails_in(&dir.join("plain.yaml.suppressed.csv")), gone);
}

#[test]
fn postfix_soft_bounces_count_up_to_the_limit_and_then_suppress() {
    let far = FaultServer::builder()
        .rcpt_hook(|_, _| Some("450 4.2.2 <full@slow.test>: Mailbox full".into()))
        .start();
    // A 4xx is retried every second or two; the first retry after two
    // seconds brings a delay warning, and after fifteen the message expires
    // (time enough to read the warning alone).
    let pf = Postfix::start_with(&format!(
        "transport_maps = inline:{{ slow.test=smtp:[127.0.0.1]:{} }}\n\
         queue_run_delay = 1s\n\
         minimal_backoff_time = 1s\n\
         maximal_backoff_time = 2s\n\
         delay_warning_time = 2s\n\
         maximal_queue_lifetime = 15s\n\
         bounce_queue_lifetime = 15s",
        far.port()
    ));
    let dc = Dovecot::start(&pf.maildir());
    let dir = TestDir::new();
    dir.write(
        "recipients.csv",
        "email,name\nlive@example.test,Live\nfull@slow.test,Full\n",
    );
    dir.write("body.txt", "Dear {{ name }},\nhello.\n");
    std::fs::copy(dc.ca_file(), dir.join("ca.pem")).unwrap();
    let mailbox = format!(
        "{{ url: \"pop3s://{USER}@127.0.0.1:{}\", password_env: BOUNCES_PW, ca_file: ca.pem, \
         soft_bounce_limit: 2 }}",
        dc.ports().pop3s
    );
    let verp = "bounces+{{ row }}@example.test";
    write_job(&dir, "job.yaml", pf.port(), verp, &mailbox);
    let out = mailshot(&dir, &["run", "job.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let suppress = dir.join("job.yaml.suppressed.csv");

    // The live message (it lands in the same Maildir, and is `unknown`)
    // and the delay warning.
    let files = pf.wait_for_messages(2, Duration::from_secs(30));
    assert_eq!(files.len(), 2, "{files:?}\n{}", pf.log());
    let out = mailshot(&dir, &["bounces", "job.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("soft 1"), "{}", out.stdout);
    let rows = bounce_rows(&dir.join("job.bounces.csv"));
    let report = read_report(&dir.join("job.report.csv"));
    let full = row_of(&report, "full@slow.test");
    let want_row = |status: &str| {
        (
            "full@slow.test".to_string(),
            full.row.to_string(),
            "soft".to_string(),
            status.to_string(),
            full.message_id.clone(),
        )
    };
    let got = |rows: &[[String; 6]]| -> Vec<(String, String, String, String, String)> {
        rows.iter()
            .filter(|r| r[2] != "unknown")
            .map(|r| {
                (
                    r[0].clone(),
                    r[1].clone(),
                    r[2].clone(),
                    r[3].clone(),
                    r[5].clone(),
                )
            })
            .collect()
    };
    assert_eq!(got(&rows), [want_row("4.2.2")], "{rows:#?}");
    // One soft bounce, under the limit: not suppressed yet.
    assert!(
        emails_in(&suppress).is_empty(),
        "{:?}",
        emails_in(&suppress)
    );

    // The queue lifetime ends: Postfix gives up with a failed 4.2.2.
    let files = pf.wait_for_messages(3, Duration::from_secs(40));
    assert_eq!(files.len(), 3, "{files:?}\n{}", pf.log());
    // What Postfix wrote: one delay warning, one final failure.
    let actions: BTreeSet<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter_map(|t| {
            t.lines()
                .find(|l| l.starts_with("Action: "))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from(["Action: delayed".to_string(), "Action: failed".to_string()])
    );
    let out = mailshot(&dir, &["bounces", "job.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("soft 1"), "{}", out.stdout);
    assert!(
        out.stdout.contains("full@slow.test (soft bounces: 2)"),
        "{}",
        out.stdout
    );
    let rows = bounce_rows(&dir.join("job.bounces.csv"));
    assert_eq!(
        got(&rows),
        [want_row("4.2.2"), want_row("4.2.2")],
        "{rows:#?}"
    );
    let diagnostics: Vec<&str> = rows
        .iter()
        .filter(|r| r[2] == "soft")
        .map(|r| r[4].as_str())
        .collect();
    assert!(
        diagnostics.iter().all(|d| d.contains("450 4.2.2")),
        "{diagnostics:?}"
    );
    assert_eq!(
        emails_in(&suppress),
        BTreeSet::from(["full@slow.test".to_string()])
    );

    // The next run leaves it out; the next hop hears nothing of it.
    let before = far.commands().len();
    write_job(&dir, "again.yaml", pf.port(), verp, &mailbox);
    std::fs::copy(&suppress, dir.join("again.yaml.suppressed.csv")).unwrap();
    let out = mailshot(&dir, &["run", "again.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = read_report(&dir.join("again.report.csv"));
    assert_eq!(row_of(&report, "full@slow.test").status, "suppressed");
    assert_eq!(row_of(&report, "live@example.test").status, "sent");
    pf.wait_for_messages(4, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(far.commands().len(), before, "{:?}", far.commands());
}
