//! Progress: `--json` events, plain lines without escape codes when
//! stderr is not a terminal, `--quiet`, and the real bar in a tmux pane.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::helpers::*;
use crate::support::fault::FaultServer;

#[test]
fn json_one_event_per_outcome_plus_summary() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| (to == "r2@example.test").then(|| "550 5.1.1 No such user".to_owned()))
        .start();
    let csv = format!("{}{},dup\n", csv_rows(4), addr(1));
    let job = Job::with_csv(&smtp_plain(server.port(), ""), &csv, "");
    let out = job.run(&["--json"]);
    assert_eq!(out.code, 67, "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let outcomes: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "outcome").collect();
    let mut rows: Vec<u64> = outcomes
        .iter()
        .map(|e| e["row"].as_u64().unwrap())
        .collect();
    rows.sort();
    assert_eq!(rows, [1, 2, 3, 4, 5], "one outcome per recipient");
    let status = |row: u64| {
        outcomes
            .iter()
            .find(|e| e["row"] == row)
            .map(|e| e["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(status(2), "rejected");
    assert_eq!(status(5), "skipped");
    assert_eq!(status(1), "sent");
    let summary: Vec<_> = events.iter().filter(|e| e["event"] == "summary").collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(
        events.last().unwrap()["event"],
        "summary",
        "the summary comes last"
    );
    assert_eq!(summary[0]["sent"], 3);
    assert_eq!(summary[0]["rejected"], 1);
    assert_eq!(summary[0]["skipped"], 1);
    assert_eq!(summary[0]["exit_code"], 67);
    assert!(!out.stderr.contains('\x1b'));
}

#[test]
fn plain_lines_without_escape_codes_when_not_a_terminal() {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(150))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 40);
    let out = job.run(&["--rate", "10/s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains('\x1b'),
        "escape codes: {:?}",
        out.stderr
    );
    assert!(
        !out.stderr.contains('\r'),
        "carriage returns: {:?}",
        out.stderr
    );
    let status: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("mailshot: ") && l.contains("sent"))
        .collect();
    assert!(status.len() >= 2, "periodic status lines: {}", out.stderr);
    assert!(
        status.iter().any(|l| l.contains("remaining")),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn quiet_prints_no_progress() {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(150))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 1"), 20);
    let out = job.run(&["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        !out.stderr.contains("done"),
        "progress in quiet mode: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("msg/s"), "{}", out.stderr);
    assert_each_once(&server, 20);
}

/// The words of the line that holds the bar, numbers and bar glyphs dropped.
fn bar_words(screen: &str) -> Vec<String> {
    let line = screen
        .lines()
        .find(|l| l.contains("ETA"))
        .unwrap_or_else(|| panic!("no bar line on screen:\n{screen}"));
    line.split(|c: char| !c.is_ascii_alphabetic() && c != '/')
        .map(|w| w.trim_matches('/'))
        .filter(|w| w.chars().any(|c| c.is_ascii_alphabetic()))
        .map(str::to_owned)
        .collect()
}

/// Runs `mailshot run` in a 100x30 tmux pane against a slow server and reads
/// the screen mid-run. Set `MAILSHOT_BLESS=1` to rewrite the fixture.
#[test]
fn progress_bar_in_a_real_terminal() {
    let server = FaultServer::builder()
        .reply_delay(Duration::from_millis(100))
        .start();
    let job = Job::new(&smtp_plain(server.port(), "sessions: 2"), 40);
    let socket = format!("mailshot-it-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("run tmux (apt-get install tmux)")
    };
    let cmd = format!(
        "cd '{}' && '{}' run job.yaml --rate 8/s; sleep 20",
        job.dir.path().display(),
        crate::support::cmd::mailshot_bin().display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "-s",
        "bar",
        &cmd,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    // Past the first burst, with the rest still to go.
    server.wait_for_messages(14, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(400));
    let shot = tmux(&["capture-pane", "-p", "-t", "bar"]);
    let _ = tmux(&["kill-server"]);
    let screen = String::from_utf8_lossy(&shot.stdout).into_owned();
    assert!(shot.status.success());

    let line = screen
        .lines()
        .find(|l| l.contains("ETA"))
        .unwrap_or_else(|| panic!("no bar:\n{screen}"));
    assert!(line.contains("/40"), "done/total: {line}");
    assert!(line.contains("sent ") && line.contains("failed "), "{line}");
    assert!(line.contains("remaining "), "{line}");
    assert!(line.contains("msg/s"), "{line}");
    assert!(line.contains("sessions "), "{line}");
    assert!(line.chars().count() <= 100, "fits the pane");
    assert!(!screen.contains("\x1b"));

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/progress-bar.txt");
    if std::env::var_os("MAILSHOT_BLESS").is_some() {
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        std::fs::write(&fixture, screen.trim_end().to_owned() + "\n").unwrap();
    }
    let kept = std::fs::read_to_string(&fixture).expect("tests/fixtures/progress-bar.txt");
    assert_eq!(
        bar_words(&screen),
        bar_words(&kept),
        "the bar's layout changed:\n{screen}"
    );
}
