//! `mailshot bounces` end to end: a job runs through a real Postfix that
//! bounces some recipients (550 from the next hop) back to their VERP
//! return paths; a private Dovecot serves that Maildir; `bounces` reads it
//! over IMAPS and over POP3 with STLS, writes `JOB.bounces.csv`, and puts
//! exactly the bounced addresses on the suppression list, which the next
//! run honours. A second visit counts nothing again, a wrong password exits
//! 77 and an untrusted certificate 69, both recording nothing. With
//! `after: delete` or `move:`, what an earlier visit read and left in the
//! mailbox is removed too, and not counted again.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::cmd::{Mailshot, Output};
use crate::support::dovecot::{Dovecot, PASSWORD, USER};
use crate::support::fault::{FaultHandle, FaultServer};
use crate::support::postfix::Postfix;
use crate::support::report::{read_report, row_of};
use crate::support::TestDir;

const LIMIT: Duration = Duration::from_secs(90);
const CSV: &str = "email,name\n\
                   live1@example.test,Live One\n\
                   gone1@dead.test,Gone One\n\
                   live2@example.test,Live Two\n\
                   gone2@dead.test,Gone Two\n";

fn write_job(dir: &TestDir, name: &str, smtp_port: u16, mailbox: &str) {
    dir.write(
        name,
        format!(
            "smtp: {{ url: \"smtp+plain://127.0.0.1:{smtp_port}\", timeout: 10s }}\n\
             from: \"Sender <sender@example.test>\"\n\
             subject: \"Hello {{{{ name }}}}\"\n\
             text: body.txt\n\
             return_path: \"bounces+{{{{ row }}}}@example.test\"\n\
             suppress: suppressed.csv\n\
             bounces: {mailbox}\n\
             recipients: {{ file: recipients.csv }}\n"
        ),
    );
}

fn mailshot(dir: &TestDir, args: &[&str], password: &str) -> Output {
    Mailshot::new(dir.path())
        .args(args)
        .env("BOUNCES_PW", password)
        .env_remove("XDG_CONFIG_HOME")
        .limit(LIMIT)
        .run()
}

fn emails_in(path: &std::path::Path) -> BTreeSet<String> {
    let Ok(mut r) = csv::Reader::from_path(path) else {
        return BTreeSet::new();
    };
    let col = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "email")
        .unwrap();
    r.records()
        .map(|rec| rec.unwrap()[col].to_string())
        .collect()
}

fn bounce_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "email",
            "row",
            "kind",
            "status",
            "diagnostic",
            "message_id",
            "received"
        ]
    );
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn rcpts(far: &FaultHandle) -> usize {
    far.commands()
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("RCPT"))
        .count()
}

fn gone() -> BTreeSet<String> {
    ["gone1@dead.test", "gone2@dead.test"]
        .map(String::from)
        .into()
}

#[test]
fn bounced_recipients_are_read_back_over_imap_and_pop3_and_never_mailed_again() {
    let far = FaultServer::builder()
        .rcpt_hook(|_, _| Some("550 5.1.1 User unknown".into()))
        .start();
    let pf = Postfix::start_with(&format!(
        "transport_maps = inline:{{ dead.test=smtp:[127.0.0.1]:{} }}\n\
         bounce_queue_lifetime = 0\n\
         maximal_queue_lifetime = 0",
        far.port()
    ));
    let dc = Dovecot::start(&pf.maildir());
    let dir = TestDir::new();
    dir.write("recipients.csv", CSV);
    dir.write("body.txt", "Dear {{ name }},\nhello.\n");
    std::fs::copy(dc.ca_file(), dir.join("ca.pem")).unwrap();
    let imaps = format!(
        "{{ url: \"imaps://{USER}@127.0.0.1:{}\", password_env: BOUNCES_PW, ca_file: ca.pem }}",
        dc.ports().imaps
    );
    write_job(&dir, "job.yaml", pf.port(), &imaps);

    let out = mailshot(&dir, &["run", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Two messages for the live rows, two DSNs for the gone ones.
    let files = pf.wait_for_messages(4, Duration::from_secs(30));
    assert_eq!(files.len(), 4, "{files:?}\n{}", pf.log());

    // A dry run classifies and prints, and writes nothing.
    let out = mailshot(&dir, &["bounces", "job.yaml", "--dry-run"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("hard 2"), "{}", out.stdout);
    assert!(out.stdout.contains("gone1@dead.test"), "{}", out.stdout);
    for f in ["suppressed.csv", "job.bounces.csv", "job.bounces.state"] {
        assert!(!dir.join(f).exists(), "the dry run wrote {f}");
    }

    // An untrusted certificate: exit 69, nothing recorded.
    let untrusted = format!(
        "{{ url: \"imaps://{USER}@127.0.0.1:{}\", password_env: BOUNCES_PW }}",
        dc.ports().imaps
    );
    write_job(&dir, "untrusted.yaml", pf.port(), &untrusted);
    let out = mailshot(&dir, &["bounces", "untrusted.yaml"], PASSWORD);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    // A wrong password: exit 77, nothing recorded.
    let out = mailshot(&dir, &["bounces", "job.yaml"], "not-the-password");
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(!out.stderr.contains("not-the-password"), "{}", out.stderr);
    for f in ["suppressed.csv", "job.bounces.csv", "untrusted.bounces.csv"] {
        assert!(!dir.join(f).exists(), "a failed visit wrote {f}");
    }

    // Over IMAPS: the suppression file lists exactly the bounced addresses.
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(emails_in(&dir.join("suppressed.csv")), gone());
    assert!(
        out.stdout.contains("newly suppressed (2)"),
        "{}",
        out.stdout
    );
    let rows = bounce_rows(&dir.join("job.bounces.csv"));
    let report = read_report(&dir.join("job.report.csv"));
    let mut hard: Vec<(String, String, String, String)> = rows
        .iter()
        .filter(|r| r[2] == "hard")
        .map(|r| (r[0].clone(), r[1].clone(), r[3].clone(), r[5].clone()))
        .collect();
    hard.sort();
    let want: Vec<(String, String, String, String)> = ["gone1@dead.test", "gone2@dead.test"]
        .iter()
        .map(|e| {
            let r = row_of(&report, e);
            (
                e.to_string(),
                r.row.to_string(),
                "5.1.1".to_string(),
                r.message_id.clone(),
            )
        })
        .collect();
    assert_eq!(hard, want, "{rows:?}");
    // The messages are kept (after: keep is the default).
    assert_eq!(pf.messages().len(), 4);

    // A second visit adds no rows.
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(bounce_rows(&dir.join("job.bounces.csv")).len(), rows.len());
    assert!(out.stdout.contains("0 new message"), "{}", out.stdout);

    // The same mailbox over POP3 (STLS) for the same job: already counted.
    let pop3 = format!(
        "{{ url: \"pop3://{USER}@127.0.0.1:{}\", password_env: BOUNCES_PW, ca_file: ca.pem }}",
        dc.ports().pop3
    );
    write_job(&dir, "job.yaml", pf.port(), &pop3);
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(bounce_rows(&dir.join("job.bounces.csv")).len(), rows.len());
    assert_eq!(emails_in(&dir.join("suppressed.csv")), gone());

    // A job that has not read the mailbox yet learns the same over POP3.
    let other = TestDir::new();
    other.write("recipients.csv", CSV);
    other.write("body.txt", "Dear {{ name }},\nhello.\n");
    std::fs::copy(dc.ca_file(), other.join("ca.pem")).unwrap();
    std::fs::copy(dir.join("job.report.csv"), other.join("job.report.csv")).unwrap();
    write_job(&other, "job.yaml", pf.port(), &pop3);
    let out = mailshot(&other, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(emails_in(&other.join("suppressed.csv")), gone());
    let pop_rows = bounce_rows(&other.join("job.bounces.csv"));
    assert_eq!(pop_rows.iter().filter(|r| r[2] == "hard").count(), 2);

    // A new run reports the bounced rows `suppressed`; nothing reaches
    // the next hop for them.
    let before = rcpts(&far);
    write_job(&dir, "again.yaml", pf.port(), &imaps);
    let out = mailshot(&dir, &["run", "again.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = read_report(&dir.join("again.report.csv"));
    for e in gone() {
        assert_eq!(row_of(&report, &e).status, "suppressed", "{report:?}");
    }
    for e in ["live1@example.test", "live2@example.test"] {
        assert_eq!(row_of(&report, e).status, "sent", "{report:?}");
    }
    let files = pf.wait_for_messages(6, Duration::from_secs(30));
    assert_eq!(files.len(), 6, "{}", pf.log());
    // Postfix has delivered the live rows; give a stray relay a moment.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rcpts(&far), before, "{:?}", far.commands());
}

/// A bounce mailbox filled with the sample corpus, for the rules tests.
fn corpus_mailbox(dir: &TestDir, folders: &[&str]) -> Dovecot {
    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/bounces/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let delayed = fixture("postfix-delayed.eml");
    let files = [
        // Two soft bounces of one address (two different reports).
        delayed.clone(),
        delayed.replace(
            "<20261207070140.4Q1d7J0kYpz9sRm@mail.example.com>",
            "<second-warning@mail.example.com>",
        ),
        fixture("postfix-hard.eml"),
        // The same report twice (one Message-ID): counted once.
        fixture("postfix-hard.eml"),
        fixture("arf-complaint.eml"),
        fixture("unsubscribe.eml"),
        fixture("out-of-office.eml"),
    ];
    for (i, text) in files.iter().enumerate() {
        dir.write(format!("box/new/{i}.M{i}P1.test"), text);
    }
    for f in folders {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(format!("box/.{f}/{sub}"))).unwrap();
        }
    }
    Dovecot::start(&dir.join("box"))
}

fn rules_job(dir: &TestDir, dc: &Dovecot, mailbox_extra: &str, url: &str) {
    dir.write("recipients.csv", "email,name\na@example.com,A\n");
    dir.write("body.txt", "hello\n");
    std::fs::copy(dc.ca_file(), dir.join("ca.pem")).unwrap();
    dir.write(
        "job.yaml",
        format!(
            "from: \"Sender <sender@example.com>\"\n\
             subject: hello\n\
             text: body.txt\n\
             return_path: \"bounces+{{{{ row }}}}@example.com\"\n\
             list_unsubscribe: \"mailto:unsubscribe@example.com\"\n\
             suppress: lists/suppressed.csv\n\
             bounces: {{ url: \"{url}\", password_env: BOUNCES_PW, ca_file: ca.pem{mailbox_extra} }}\n\
             recipients: {{ file: recipients.csv }}\n"
        ),
    );
}

fn lower(set: BTreeSet<String>) -> BTreeSet<String> {
    set.into_iter().map(|e| e.to_lowercase()).collect()
}

fn files_in(dir: &std::path::Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|s| {
            std::fs::read_dir(dir.join(s))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn hard_bounces_complaints_unsubscribes_and_repeated_soft_bounces_are_suppressed() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &["Processed"]);
    let dir = TestDir::new();
    let url = format!("imaps://{USER}@127.0.0.1:{}", dc.ports().imaps);
    rules_job(
        &dir,
        &dc,
        ", soft_bounce_limit: 2, after: \"move:Processed\"",
        &url,
    );
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want: BTreeSet<String> = [
        "full@example.org",
        "nobody@example.org",
        "reader@example.net",
        "bob@example.org",
    ]
    .map(String::from)
    .into();
    // The out-of-office sender is not suppressed; the suppress file's
    // folder is created with it.
    assert_eq!(lower(emails_in(&dir.join("lists/suppressed.csv"))), want);
    let rows = bounce_rows(&dir.join("job.bounces.csv"));
    let mut kinds: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "auto_reply",
            "complaint",
            "hard",
            "soft",
            "soft",
            "unsubscribe"
        ]
    );
    assert!(out.stdout.contains("soft 2"), "{}", out.stdout);
    assert!(out.stdout.contains("already counted"), "{}", out.stdout);
    // after: move:Processed — the inbox is empty, the folder holds all seven.
    assert_eq!(files_in(&mail.join("box")), 0);
    assert_eq!(files_in(&mail.join("box/.Processed")), 7);
}

#[test]
fn soft_bounces_under_the_limit_are_only_counted_and_pop3_can_delete() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &[]);
    let dir = TestDir::new();
    let url = format!("pop3s://{USER}@127.0.0.1:{}", dc.ports().pop3s);
    rules_job(&dir, &dc, ", after: delete", &url);
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Two soft bounces under the default limit of 3: not suppressed.
    let got = lower(emails_in(&dir.join("lists/suppressed.csv")));
    assert!(!got.contains("full@example.org"), "{got:?}");
    assert!(got.contains("nobody@example.org"), "{got:?}");
    // after: delete — the maildrop is empty once QUIT commits.
    assert_eq!(files_in(&mail.join("box")), 0);
}

#[test]
fn the_default_keeps_every_message() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &[]);
    let dir = TestDir::new();
    let url = format!("pop3s://{USER}@127.0.0.1:{}", dc.ports().pop3s);
    rules_job(&dir, &dc, "", &url);
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files_in(&mail.join("box")), 7);
    assert_eq!(bounce_rows(&dir.join("job.bounces.csv")).len(), 6);
}

#[test]
fn a_job_without_a_suppress_file_is_refused_before_any_connection() {
    let dir = TestDir::new();
    dir.write("recipients.csv", "email\na@example.com\n");
    dir.write("body.txt", "hello\n");
    // Nothing listens on this port: the refusal must come first.
    let port = crate::support::free_port();
    dir.write(
        "job.yaml",
        format!(
            "from: me@example.com\nsubject: hi\ntext: body.txt\n\
             bounces: {{ url: \"imaps://u@127.0.0.1:{port}\", password_env: BOUNCES_PW }}\n\
             recipients: {{ file: recipients.csv }}\n"
        ),
    );
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(out.stderr.contains("suppress"), "{}", out.stderr);
}

/// The state file as a run that stopped after writing the rows (and the
/// suppressions) but before recording the messages as read leaves it: the
/// batch's `begin` line is on disk, its keys and `end` are not.
fn cut_after_last_begin(state: &std::path::Path) {
    let text = std::fs::read_to_string(state).unwrap();
    let at = text.rfind("begin ").expect("a batch in the state file");
    let end = at + text[at..].find('\n').unwrap() + 1;
    std::fs::write(state, &text[..end]).unwrap();
}

#[test]
fn a_run_cut_short_before_the_read_marks_counts_nothing_twice() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &[]);
    let dir = TestDir::new();
    let url = format!("pop3s://{USER}@127.0.0.1:{}", dc.ports().pop3s);
    // The default limit of 3: the corpus's two soft bounces of one address
    // suppress it only if they are counted twice.
    rules_job(&dir, &dc, "", &url);
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let csv = dir.join("job.bounces.csv");
    let suppress = dir.join("lists/suppressed.csv");
    let state = dir.join("job.bounces.state");
    let rows = bounce_rows(&csv);
    assert_eq!(rows.len(), 6, "{rows:?}");
    let suppressed = std::fs::read(&suppress).unwrap();
    let strip = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        // All but `received`, the time of the run.
        let mut v: Vec<Vec<String>> = rows.iter().map(|r| r[..6].to_vec()).collect();
        v.sort();
        v
    };

    // Stopped after the rows and suppressions, before the read marks.
    cut_after_last_begin(&state);
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("7 new message"), "{}", out.stdout);
    assert_eq!(strip(&bounce_rows(&csv)), strip(&rows));
    assert_eq!(std::fs::read(&suppress).unwrap(), suppressed);
    assert!(
        !lower(emails_in(&suppress)).contains("full@example.org"),
        "soft bounces counted twice"
    );

    // Stopped half way through writing the rows.
    cut_after_last_begin(&state);
    let text = std::fs::read_to_string(&csv).unwrap();
    let last = text.trim_end_matches('\n').rfind('\n').unwrap();
    std::fs::write(&csv, &text[..last + 10]).unwrap();
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(strip(&bounce_rows(&csv)), strip(&rows));
    assert_eq!(std::fs::read(&suppress).unwrap(), suppressed);

    // And then the messages are recorded: nothing new.
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("0 new message"), "{}", out.stdout);
    assert_eq!(bounce_rows(&csv).len(), 6);
}

/// Delivers `text` to the Maildir folder `box_dir` as a delivery agent
/// does: written under `tmp/`, then renamed into `new/`.
fn deliver(box_dir: &std::path::Path, name: &str, text: &str) {
    let tmp = box_dir.join("tmp").join(name);
    std::fs::create_dir_all(box_dir.join("tmp")).unwrap();
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, box_dir.join("new").join(name)).unwrap();
}

/// A third soft bounce of the corpus's soft-bounced address, in a report of
/// its own: with the default limit of 3 it suppresses that address.
fn third_soft_bounce() -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/bounces/postfix-delayed.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace(
        "<20261207070140.4Q1d7J0kYpz9sRm@mail.example.com>",
        "<third-warning@mail.example.com>",
    )
}

const LEFT_OVER: &str = "left over from an earlier visit, now removed: 7";

/// A visit with `after: keep` leaves the corpus read and in the mailbox,
/// which is what a delete or move visit cut short between its records and
/// the server committing the removal leaves too. Then one new message
/// arrives and the job asks for `after_value`: `--dry-run` removes nothing;
/// the real visit counts only the new message and removes all eight.
fn leftovers_are_removed(url: &str, after_value: &str, mail: &TestDir, dc: &Dovecot) {
    let dir = TestDir::new();
    rules_job(&dir, dc, "", url);
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("7 new message"), "{}", out.stdout);
    let csv = dir.join("job.bounces.csv");
    let suppress = dir.join("lists/suppressed.csv");
    assert_eq!(bounce_rows(&csv).len(), 6);
    assert_eq!(files_in(&mail.join("box")), 7);
    let suppressed = lower(emails_in(&suppress));
    assert!(!suppressed.contains("full@example.org"), "{suppressed:?}");

    // A second keep visit: nothing new, nothing removed.
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("0 new message"), "{}", out.stdout);
    assert!(!out.stdout.contains("left over"), "{}", out.stdout);
    assert_eq!(files_in(&mail.join("box")), 7);

    deliver(&mail.join("box"), "99.M99P1.test", &third_soft_bounce());
    rules_job(&dir, dc, &format!(", after: \"{after_value}\""), url);
    let out = mailshot(&dir, &["bounces", "job.yaml", "--dry-run"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files_in(&mail.join("box")), 8);
    assert_eq!(bounce_rows(&csv).len(), 6);

    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("1 new message"), "{}", out.stdout);
    assert!(out.stdout.contains(LEFT_OVER), "{}", out.stdout);
    assert_eq!(files_in(&mail.join("box")), 0);
    // Only the new message became a row; its soft bounce is the third.
    assert_eq!(bounce_rows(&csv).len(), 7);
    let now = lower(emails_in(&suppress));
    let mut want = suppressed.clone();
    want.insert("full@example.org".into());
    assert_eq!(now, want);

    // The mailbox is as asked: a further visit finds nothing at all.
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("0 new message"), "{}", out.stdout);
    assert!(!out.stdout.contains("left over"), "{}", out.stdout);
}

#[test]
fn pop3_after_delete_removes_what_an_earlier_visit_read_and_left() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &[]);
    let url = format!("pop3s://{USER}@127.0.0.1:{}", dc.ports().pop3s);
    leftovers_are_removed(&url, "delete", &mail, &dc);
}

#[test]
fn imap_after_delete_removes_what_an_earlier_visit_read_and_left() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &[]);
    let url = format!("imaps://{USER}@127.0.0.1:{}", dc.ports().imaps);
    leftovers_are_removed(&url, "delete", &mail, &dc);
}

#[test]
fn imap_after_move_moves_what_an_earlier_visit_read_and_left() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &["Processed"]);
    let url = format!("imaps://{USER}@127.0.0.1:{}", dc.ports().imaps);
    leftovers_are_removed(&url, "move:Processed", &mail, &dc);
    // Each message once in the folder, none twice.
    assert_eq!(files_in(&mail.join("box/.Processed")), 8);
}

/// The lines of Dovecot's log that record a login, e.g.
/// `pop3-login: Info: Login: user=<bounces>, method=LOGIN, ...`.
fn logins(dc: &Dovecot) -> Vec<String> {
    dc.log()
        .lines()
        .filter(|l| l.contains("-login: ") && l.contains(" Login: user="))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_job_chooses_the_login_mechanism_and_the_server_sees_it() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &[]);
    let imaps = format!("imaps://{USER}@127.0.0.1:{}", dc.ports().imaps);
    let pop3s = format!("pop3s://{USER}@127.0.0.1:{}", dc.ports().pop3s);
    let token = Dovecot::access_token();
    // (url, auth, secret, what the client sends, the method Dovecot logs)
    let cases = [
        (
            &imaps,
            "plain",
            PASSWORD,
            "AUTHENTICATE PLAIN",
            "method=PLAIN",
        ),
        (&imaps, "login", PASSWORD, " LOGIN ***", "method=PLAIN"),
        (
            &imaps,
            "xoauth2",
            &token,
            "AUTHENTICATE XOAUTH2",
            "method=XOAUTH2",
        ),
        (&pop3s, "plain", PASSWORD, "AUTH PLAIN", "method=PLAIN"),
        (&pop3s, "login", PASSWORD, "AUTH LOGIN", "method=LOGIN"),
        (&pop3s, "xoauth2", &token, "AUTH XOAUTH2", "method=XOAUTH2"),
        (&pop3s, "user", PASSWORD, "USER bounces", "method=PLAIN"),
    ];
    for (url, auth, secret, sent, method) in cases {
        let dir = TestDir::new();
        rules_job(&dir, &dc, &format!(", auth: {auth}"), url);
        let before = logins(&dc).len();
        let out = mailshot(
            &dir,
            &["bounces", "job.yaml", "--dry-run", "--trace", "trace.txt"],
            secret,
        );
        assert_eq!(out.code, 0, "{auth} {url}: {}", out.stderr);
        assert!(out.stdout.contains("hard 1"), "{}", out.stdout);
        let trace = std::fs::read_to_string(dir.join("trace.txt")).unwrap();
        assert!(trace.contains(sent), "{auth} {url}: {trace}");
        // The other ways of logging in were not tried.
        for other in ["AUTHENTICATE", "AUTH ", "USER ", " LOGIN "] {
            if !sent.contains(other.trim()) {
                assert!(!trace.contains(other), "{auth} {url}: {trace}");
            }
        }
        // Dovecot's own record of the login (it writes it asynchronously).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut new = Vec::new();
        while std::time::Instant::now() < deadline {
            new = logins(&dc)[before..].to_vec();
            if !new.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(new.len(), 1, "{auth} {url}: {new:?}\n{}", dc.log());
        assert!(new[0].contains(method), "{auth} {url}: {new:?}");
    }
    // Dovecot checks the token: a password, or a token whose signature was
    // not made with its key, is refused.
    let (head, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "A".repeat(43));
    for bad in [PASSWORD, forged.as_str()] {
        let dir = TestDir::new();
        rules_job(&dir, &dc, ", auth: xoauth2", &imaps);
        let out = mailshot(&dir, &["bounces", "job.yaml"], bad);
        assert_eq!(out.code, 77, "{}", out.stderr);
        assert!(!dir.join("job.bounces.csv").exists());
    }
}

#[test]
fn an_unknown_login_mechanism_is_an_invalid_job_with_its_position() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &[]);
    let dir = TestDir::new();
    let url = format!("imaps://{USER}@127.0.0.1:{}", dc.ports().imaps);
    rules_job(&dir, &dc, ", auth: cram-md5", &url);
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("job.yaml:7:"), "{}", out.stderr);
    assert!(out.stderr.contains("cram-md5"), "{}", out.stderr);
    // USER/PASS is POP3's; an IMAP mailbox refuses it before connecting.
    rules_job(&dir, &dc, ", auth: user", &url);
    let out = mailshot(&dir, &["bounces", "job.yaml"], PASSWORD);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("job.yaml:7:"), "{}", out.stderr);
    assert!(out.stderr.contains("POP3"), "{}", out.stderr);
    assert!(logins(&dc).is_empty(), "{:?}", logins(&dc));
}

#[test]
fn the_mailbox_password_comes_from_a_file_or_a_command_as_for_smtp() {
    let mail = TestDir::new();
    let dc = corpus_mailbox(&mail, &[]);
    let url = format!("pop3s://{USER}@127.0.0.1:{}", dc.ports().pop3s);
    for source in ["password_file: pw.txt", "password_command: \"cat pw.txt\""] {
        let dir = TestDir::new();
        rules_job(&dir, &dc, "", &url);
        let job = std::fs::read_to_string(dir.join("job.yaml")).unwrap();
        dir.write("job.yaml", job.replace("password_env: BOUNCES_PW", source));
        let pw = dir.write("pw.txt", format!("{PASSWORD}\n"));
        // Like smtp's, a password file others can read is refused.
        if source.starts_with("password_file") {
            let out = mailshot(&dir, &["bounces", "job.yaml", "--dry-run"], PASSWORD);
            assert_eq!(out.code, 66, "{}", out.stderr);
            assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
        }
        crate::support::chmod(&pw, "600");
        // The environment holds a wrong one: it is not what is used.
        let out = mailshot(&dir, &["bounces", "job.yaml", "--dry-run"], "wrong");
        assert_eq!(out.code, 0, "{source}: {}", out.stderr);
        assert!(out.stdout.contains("hard 1"), "{}", out.stdout);
        std::fs::write(&pw, "wrong\n").unwrap();
        let out = mailshot(&dir, &["bounces", "job.yaml", "--dry-run"], PASSWORD);
        assert_eq!(out.code, 77, "{source}: {}", out.stderr);
    }
}
