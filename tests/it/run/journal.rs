//! The journal: exactly once across SIGKILLs (against Postfix),
//! `--resend-uncertain`, `--restart`, changed inputs refused, the lock, a
//! torn last record, and a journal that cannot be written.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::helpers::*;
use crate::support::fault::FaultServer;
use crate::support::postfix::Postfix;
use crate::support::TestDir;

/// Waits until Postfix's Maildir holds at least `n` messages and the count
/// stays put for a second, then returns (To address → Message-IDs).
fn maildir_by_recipient(pf: &Postfix, n: usize) -> HashMap<String, Vec<String>> {
    pf.wait_for_messages(n, Duration::from_secs(60));
    let mut last = pf.messages().len();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let now = pf.messages().len();
        if now == last {
            break;
        }
        last = now;
    }
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    for path in pf.messages() {
        let bytes = std::fs::read(&path).unwrap();
        let msg = mail_parser::MessageParser::default()
            .parse(&bytes)
            .unwrap_or_else(|| panic!("parse {}", path.display()));
        let to = msg
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .expect("a To address")
            .to_ascii_lowercase();
        let id = msg.message_id().expect("a Message-ID").to_owned();
        got.entry(to).or_default().push(id);
    }
    got
}

/// THE kill test: SIGKILL `mailshot run` at random moments, rerun until it
/// finishes, resend the uncertain ones, and count what Postfix delivered.
#[test]
fn sigkill_and_rerun_delivers_exactly_once_to_postfix() {
    let pf = Postfix::start();
    let n = 80;
    let job = Job::new(
        &format!(
            "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 10s, retry_delay: 50ms, max_attempts: 3 }}",
            pf.port()
        ),
        n,
    );
    let seed = fastrand::u64(..);
    eprintln!("kill test seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let args = ["--quiet", "--rate", "30/s", "--sessions", "2"];

    let mut ever_uncertain: HashSet<String> = HashSet::new();
    let mut note_uncertain = |job: &Job| {
        for r in job.report() {
            if r.status == "uncertain" {
                ever_uncertain.insert(r.email.to_ascii_lowercase());
            }
        }
    };
    let mut kills = 0;
    for _ in 0..5 {
        let child = job.spawn(&args);
        std::thread::sleep(Duration::from_millis(rng.u64(50..=400)));
        signal(&child, "KILL");
        let out = finish(child, RUN_LIMIT);
        if out.code == -1 {
            kills += 1;
        } else {
            // It finished before the kill: a normal run, its report is whole.
            note_uncertain(&job);
        }
    }
    assert!(kills >= 1, "no run was actually killed");

    let mut finished = false;
    for _ in 0..5 {
        let out = job.run(&args);
        note_uncertain(&job);
        let rows = job.report();
        assert_eq!(rows.len(), n, "one report row per recipient");
        let only_uncertain_left = rows
            .iter()
            .all(|r| r.status == "sent" || r.status == "uncertain");
        match out.code {
            0 => {
                finished = true;
                break;
            }
            75 if only_uncertain_left => {
                finished = true;
                break;
            }
            75 => continue,
            other => panic!("rerun exited {other}: {}", out.stderr),
        }
    }
    assert!(finished, "reruns never finished");
    if !ever_uncertain.is_empty() {
        let out = job.run(&["--quiet", "--resend-uncertain"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let rows = job.report();
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");

    let delivered = maildir_by_recipient(&pf, n);
    for i in 1..=n {
        let a = addr(i);
        let ids = delivered.get(&a).cloned().unwrap_or_default();
        assert!(!ids.is_empty(), "{a} got nothing (seed {seed})");
        if ids.len() > 1 {
            assert!(
                ever_uncertain.contains(&a),
                "{a} got {} copies but was never reported uncertain (seed {seed})",
                ids.len()
            );
            assert!(
                ids.iter().all(|id| *id == ids[0]),
                "{a}: copies carry different Message-IDs {ids:?} (seed {seed})"
            );
        }
        if !ever_uncertain.contains(&a) {
            assert_eq!(ids.len(), 1, "{a} (seed {seed})");
        }
    }
    assert_eq!(
        delivered.len(),
        n,
        "only our recipients: {:?}",
        delivered.keys()
    );
    let copies: usize = delivered.values().map(Vec::len).sum();
    eprintln!(
        "kill test: {n} recipients, {} reported uncertain at some point, {copies} messages delivered",
        ever_uncertain.len()
    );
}

/// A fault server that answers 451 for `addr(1)` while `fail` is set.
fn flaky_server(fail: Arc<AtomicBool>) -> crate::support::fault::FaultHandle {
    let victim = addr(1);
    FaultServer::builder()
        .rcpt_hook(move |to, _| {
            (to == victim && fail.load(Ordering::SeqCst))
                .then(|| "451 4.3.0 Try again later".to_owned())
        })
        .start()
}

#[test]
fn changed_inputs_are_refused_and_a_torn_record_is_tolerated() {
    let fail = Arc::new(AtomicBool::new(true));
    let server = flaky_server(fail.clone());
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 1"), 3);
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "row 1 is left to retry: {}", out.stderr);
    assert_eq!(server.messages().len(), 2);

    // A changed CSV: refused with advice, nothing sent.
    let csv = job.dir.read("recipients.csv");
    job.dir
        .write("recipients.csv", format!("{csv}{},Name 4\n", addr(4)));
    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("--restart"), "advice: {}", out.stderr);
    assert!(
        out.stderr.contains("job.journal"),
        "names the journal: {}",
        out.stderr
    );
    job.dir.write("recipients.csv", &csv);

    // A changed template: the same.
    let body = job.dir.read("body.txt");
    job.dir.write("body.txt", format!("{body}P.S. new line\n"));
    let out = job.run(&[]);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("--restart"), "advice: {}", out.stderr);
    job.dir.write("body.txt", &body);
    assert_eq!(server.messages().len(), 2, "nothing sent while refused");

    // A torn last record (a crash mid-append): ignored, the run resumes.
    let mut j = std::fs::OpenOptions::new()
        .append(true)
        .open(job.dir.join("job.journal"))
        .unwrap();
    j.write_all(b"{\"type\":\"outcome\",\"row\":1,\"sta")
        .unwrap();
    drop(j);
    fail.store(false, Ordering::SeqCst);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 3);
    let rows = by_email(&job.report());
    assert_eq!(rows[&addr(1)].status, "sent");
    assert_eq!(rows[&addr(1)].attempts, 2, "one attempt per run");
}

#[test]
fn restart_starts_from_scratch() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 3);
    assert_eq!(job.run(&[]).code, 0);
    let first_ids: Vec<String> = job.report().into_iter().map(|r| r.message_id).collect();
    // A plain rerun sends nothing again.
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 3);
    // --restart forgets the journal: everyone again, as a new run.
    let out = job.run(&["--restart"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = deliveries(&server);
    for i in 1..=3 {
        assert_eq!(got[&addr(i)], 2);
    }
    let rows = job.report();
    assert!(
        rows.iter().all(|r| r.status == "sent" && r.attempts == 1),
        "{rows:?}"
    );
    for (old, new) in first_ids.iter().zip(rows.iter().map(|r| &r.message_id)) {
        assert_ne!(
            old, new,
            "a restarted run is a new run with new Message-IDs"
        );
    }
}

#[test]
fn two_runs_of_one_job_cannot_share_the_journal() {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(150))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 10);
    let first = job.spawn(&["--quiet"]);
    assert!(
        !server
            .wait_for_messages(1, Duration::from_secs(30))
            .is_empty(),
        "the first run started sending"
    );
    let second = job.run(&["--quiet"]);
    let first = finish(first, RUN_LIMIT);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_ne!(second.code, 0, "the second run was refused");
    assert_eq!(second.code, 75, "{}", second.stderr);
    assert!(
        second.stderr.contains("job.journal") && second.stderr.contains("another"),
        "says another run holds the journal: {}",
        second.stderr
    );
    assert_each_once(&server, 10);
}

/// Disk full: the job folder is a tiny tmpfs (in a private mount namespace)
/// so the journal hits ENOSPC after a few records. Sending must stop there.
#[test]
fn a_journal_that_cannot_be_written_stops_sending() {
    let probe = std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        panic!("this test needs `unshare -m` (root or CAP_SYS_ADMIN)");
    }
    let server = FaultServer::start();
    let n = 300;
    let outside = TestDir::new();
    outside.write("recipients.csv", csv_rows(n));
    let body = outside.write("body.txt", "Dear {{ name }}\n");
    let job_src = outside.write(
        "job.yaml",
        format!(
            "smtp: {}\nfrom: sender@example.test\nsubject: Hi\ntext: {}\nrecipients: {{ file: {} }}\n",
            smtp_plain(server.port(), "sessions: 1"),
            body.display(),
            outside.join("recipients.csv").display()
        ),
    );
    let mnt = outside.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let report = outside.join("report.csv");
    // 48 KiB: a page each for job.yaml and the lock file, the rest for the
    // journal — room for the first reservations (up to a 128-message window,
    // ~100 octets each) and some outcomes (~400 octets a message in all), so
    // the disk fills mid-run.
    let script = r#"mount -t tmpfs -o size=48k tmpfs "$1" && cp "$2" "$1/job.yaml" && cd "$1" && exec "$3" run job.yaml --report "$4""#;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script, "sh"])
        .arg(&mnt)
        .arg(&job_src)
        .arg(crate::support::cmd::mailshot_bin())
        .arg(&report)
        .stdin(std::process::Stdio::null());
    let out = spawn_command(cmd).finish();
    assert_eq!(out.code, 74, "{}", out.stderr);
    assert!(out.stderr.contains("journal"), "{}", out.stderr);
    let sent = server.messages().len();
    assert!(sent > 0, "some were sent before the disk filled");
    assert!(
        sent < n / 2,
        "sending stopped early, but {sent} of {n} were sent"
    );
    let rows = read_report(&report);
    assert_eq!(rows.len(), n);
    let reported_sent = rows.iter().filter(|r| r.status == "sent").count();
    assert!(reported_sent <= sent);
}
