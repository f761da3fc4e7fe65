//! `domains:` limits per recipient domain, judged by when the scripted
//! server received each message: a rate-limited domain is spread out as
//! asked while another domain's mail, queued behind it, finishes long
//! before it (no head-of-line blocking); `sessions` caps the connections
//! carrying one domain's mail at once.

use std::time::{Duration, Instant};

use super::helpers::*;
use crate::support::fault::FaultServer;

/// `n_slow` rows at slow.test first, then `n_fast` at fast.test.
fn two_domains(n_slow: usize, n_fast: usize) -> String {
    let mut csv = String::from("email,name\n");
    for i in 1..=n_slow {
        csv.push_str(&format!("s{i}@slow.test,S{i}\n"));
    }
    for i in 1..=n_fast {
        csv.push_str(&format!("f{i}@fast.test,F{i}\n"));
    }
    csv
}

/// When the server received each message for `domain`, in order.
fn arrivals(server: &crate::support::fault::FaultHandle, domain: &str) -> Vec<Instant> {
    let mut t: Vec<Instant> = server
        .messages()
        .into_iter()
        .filter(|m| m.rcpts[0].ends_with(domain))
        .map(|m| m.received)
        .collect();
    t.sort();
    t
}

#[test]
fn a_rate_limited_domain_is_spread_out_while_another_finishes_long_before_it() {
    let server = FaultServer::start();
    let job = Job::with_csv(
        &smtp_plain(server.port(), "sessions: 2"),
        &two_domains(15, 30),
        "domains: { slow.test: { rate: 5/s } }",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let slow = arrivals(&server, "@slow.test");
    let fast = arrivals(&server, "@fast.test");
    assert_eq!((slow.len(), fast.len()), (15, 30));
    // Never more than 5 slow.test messages in any second.
    for w in slow.windows(6) {
        assert!(
            w[5] - w[0] >= Duration::from_millis(950),
            "6 arrivals within {:?}",
            w[5] - w[0]
        );
    }
    // The fast domain, queued behind the slow one, is not held up by it.
    let (slow_end, fast_end) = (*slow.last().unwrap(), *fast.last().unwrap());
    assert!(
        slow_end > fast_end + Duration::from_millis(1500),
        "fast.test ended {:?} before slow.test",
        slow_end.saturating_duration_since(fast_end)
    );
}

#[test]
fn the_star_entry_limits_each_other_domain_on_its_own() {
    let server = FaultServer::start();
    let job = Job::with_csv(
        &smtp_plain(server.port(), "sessions: 2"),
        &two_domains(6, 6),
        "domains: { \"*\": { rate: 2/s } }",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for d in ["@slow.test", "@fast.test"] {
        let t = arrivals(&server, d);
        assert_eq!(t.len(), 6);
        for w in t.windows(3) {
            assert!(
                w[2] - w[0] >= Duration::from_millis(950),
                "{d}: {:?}",
                w[2] - w[0]
            );
        }
    }
    // Each domain has its own 2/s: together they take about as long as one.
    assert!(out.elapsed < Duration::from_secs(8), "{:?}", out.elapsed);
}

#[test]
fn sessions_cap_the_connections_carrying_one_domain() {
    // Each message takes 150 ms to be answered: two sessions overlap unless
    // the domain is held to one.
    let server = FaultServer::builder()
        .data_end_delay(Duration::from_millis(150))
        .start();
    let job = Job::with_csv(
        &smtp_plain(server.port(), "sessions: 3"),
        &two_domains(8, 0),
        "domains: { slow.test: { sessions: 1 } }",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut by_conn: Vec<(Instant, usize)> = server
        .messages()
        .into_iter()
        .map(|m| (m.received, m.connection))
        .collect();
    by_conn.sort();
    // One session at a time: arrivals at least one answer delay apart.
    for w in by_conn.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= Duration::from_millis(120),
            "two messages {:?} apart",
            w[1].0 - w[0].0
        );
    }
}

#[test]
fn a_slow_domain_does_not_hold_up_others_sharing_its_sessions() {
    // slow.test's messages are answered 100 ms after their final dot (the
    // server reads nothing more on that connection meanwhile); the four
    // fast domains' at once. slow.test is held to one session of the two:
    // a session that pipelines other mail behind a slow.test message makes
    // it wait for that message's answer.
    let server = FaultServer::builder()
        .message_hook(|m| {
            if m.rcpts[0].ends_with("@slow.test") {
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        })
        .start();
    let mut csv = String::from("email,name\n");
    for i in 1..=15 {
        csv.push_str(&format!("s{i}@slow.test,S{i}\n"));
        for d in ["a", "b", "c", "d"] {
            for j in 1..=4 {
                csv.push_str(&format!("f{i}-{j}@{d}.fast.test,F{i}\n"));
            }
        }
    }
    let job = Job::with_csv(
        &smtp_plain(server.port(), "sessions: 2"),
        &csv,
        "domains: { slow.test: { sessions: 1 }, \"*\": { sessions: 2 } }",
    );
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let slow = arrivals(&server, "@slow.test");
    let fast = arrivals(&server, ".fast.test");
    assert_eq!((slow.len(), fast.len()), (15, 240));
    // slow.test alone needs about 1.5 s (15 answers of 100 ms on one
    // session); the others, on sessions of their own, a small part of that.
    let (slow_end, fast_end) = (*slow.last().unwrap(), *fast.last().unwrap());
    assert!(
        slow_end > fast_end + Duration::from_millis(800),
        "the fast domains ended only {:?} before slow.test",
        slow_end.saturating_duration_since(fast_end)
    );
}
