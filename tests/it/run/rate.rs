//! Rate limits, judged by the server's arrival times.
//!
//! The burst rule (see `src/delivery/limiter.rs`): the limit is a
//! sliding window — up to N messages may leave at once at the start, and after
//! that a message leaves only when fewer than N left in the last window
//! (plus a 100 ms margin). So no window of the stated length, anywhere in the
//! run, holds more than N arrivals; the first burst is N, not more.
//!
//! Not run here: a per-minute limit end to end (it needs more than a minute of
//! wall clock); the limiter's unit tests cover `/min` with a simulated clock,
//! and the QQ sample below shows the setting loads.

use std::time::Duration;

use super::helpers::*;
use crate::support::fault::FaultServer;

/// The most arrivals within any window of length `per`.
fn busiest_window(mut times: Vec<std::time::Instant>, per: Duration) -> usize {
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&t| t < times[i] + per)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn rate_20_per_second_across_two_sessions() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), ""), 100);
    let out = job.run(&["--rate", "20/s", "--sessions", "2", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 100);
    let times: Vec<_> = server.messages().iter().map(|m| m.received).collect();
    let busiest = busiest_window(times.clone(), Duration::from_secs(1));
    assert!(busiest <= 20, "{busiest} arrivals within one second");
    // The limit is used, not just respected: the first burst is the full 20.
    assert_eq!(
        busiest, 20,
        "the first window may hold 20 (the documented burst)"
    );
    assert_eq!(server.connections(), 2, "both sessions were used");
}

#[test]
fn smtp_rate_in_the_job_file_is_respected() {
    let server = FaultServer::start();
    let job = Job::new(&smtp_plain(server.port(), "rate: 10/s"), 25);
    let out = job.run(&["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 25);
    let times: Vec<_> = server.messages().iter().map(|m| m.received).collect();
    let busiest = busiest_window(times, Duration::from_secs(1));
    assert!(busiest <= 10, "{busiest} arrivals within one second");
}

#[test]
fn qq_sample_job_is_safe_and_loads() {
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/qq-newsletter/job.yaml");
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&sample).expect("sample job")).unwrap();
    let smtp = &yaml["smtp"];
    assert_eq!(smtp["provider"].as_str(), Some("qq"));
    assert_eq!(smtp["sessions"].as_u64(), Some(1));
    let rate = smtp["rate"].as_str().expect("a rate");
    let (count, per) = rate.split_once('/').expect("N/unit");
    assert!(
        per == "min" || per == "h",
        "a per-minute or per-hour rate: {rate}"
    );
    let per_min: f64 = count.parse::<f64>().unwrap() / if per == "h" { 60.0 } else { 1.0 };
    assert!(per_min <= 20.0, "at most 20 a minute for QQ/163: {rate}");
    let text = std::fs::read_to_string(&sample).unwrap();
    assert!(
        text.contains("163") && text.contains("day"),
        "the sample explains the daily caps"
    );

    // `check` loads and renders it without touching the network.
    let cwd = crate::support::TestDir::new();
    let out = crate::support::cmd::mailshot(cwd.path(), ["check"])
        .arg(&sample)
        .run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}
