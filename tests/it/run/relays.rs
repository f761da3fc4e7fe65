//! A relay pool (`smtp.relays`): messages spread over the relays, a relay
//! that cannot be used left while the others carry on, limit replies that
//! pause a relay instead of rejecting, `daily_limit` across runs, and the
//! exit codes when every relay is unusable. Judged by what each scripted
//! server (and a private Postfix) received, the report, the JSON events and
//! the trace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::helpers::*;
use crate::support::fault::{FaultHandle, FaultServer};
use crate::support::postfix::Postfix;

/// One relay item of the pool: a plain-text fault server on `port`.
fn relay(name: &str, port: u16, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!("{{ name: {name}, url: \"smtp+plain://127.0.0.1:{port}\"{extra} }}")
}

/// The `smtp:` section for a pool of `relays`, with short timeouts; `extra`
/// adds keys of the enclosing section.
fn pool(relays: &[String], extra: &str) -> String {
    smtp_section(
        &format!("relays: [{}]", relays.join(", ")),
        &[
            ("timeout", "2s"),
            ("retry_delay", "50ms"),
            ("max_attempts", "3"),
        ],
        extra,
    )
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server that answers MAIL with `reply` once it has accepted `n` MAILs
/// (while `on` is set).
fn quota_after(n: usize, reply: &'static str, on: Arc<AtomicBool>) -> FaultHandle {
    let seen = AtomicUsize::new(0);
    FaultServer::builder()
        .mail_hook(move |_| {
            if !on.load(Ordering::SeqCst) {
                return None;
            }
            (seen.fetch_add(1, Ordering::SeqCst) >= n).then(|| reply.to_owned())
        })
        .start()
}

/// Each generated row `1..=n` delivered once over all `servers` together.
fn assert_each_once_over(servers: &[&FaultHandle], n: usize) {
    let mut got: HashMap<String, usize> = HashMap::new();
    for s in servers {
        for (k, v) in deliveries(s) {
            *got.entry(k).or_default() += v;
        }
    }
    for i in 1..=n {
        assert_eq!(got.get(&addr(i)), Some(&1), "{}: {got:?}", addr(i));
    }
    assert_eq!(got.len(), n, "{got:?}");
}

fn outcome_events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "outcome")
        .collect()
}

#[test]
fn messages_are_spread_over_the_relays_and_the_events_and_trace_name_them() {
    let (a, b) = (FaultServer::start(), FaultServer::start());
    let smtp = pool(
        &[relay("alpha", a.port(), ""), relay("beta", b.port(), "")],
        "",
    );
    let job = Job::new(&smtp, 40);
    let out = job.run(&["--json", "--trace", "trace.txt"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once_over(&[&a, &b], 40);
    assert!(!a.messages().is_empty() && !b.messages().is_empty());
    // Each event names the relay whose server really got the message.
    let via_a: Vec<String> = a.messages().into_iter().flat_map(|m| m.rcpts).collect();
    let events = outcome_events(&out.stdout);
    assert_eq!(events.len(), 40);
    for e in &events {
        let email = e["email"].as_str().unwrap().to_owned();
        let want = if via_a.contains(&email) {
            "alpha"
        } else {
            "beta"
        };
        assert_eq!(e["relay"], want, "{e}");
    }
    let trace = job.dir.read("trace.txt");
    assert!(trace.contains(" alpha] C: MAIL FROM"), "{trace}");
    assert!(trace.contains(" beta] C: MAIL FROM"), "{trace}");
    // The journal keeps it too.
    let journal = job.dir.read("job.journal");
    assert!(journal.contains("\"relay\":\"alpha\""), "{journal}");
}

#[test]
fn the_command_line_rate_holds_over_every_relay_together() {
    let (a, b) = (FaultServer::start(), FaultServer::start());
    let smtp = pool(&[relay("a", a.port(), ""), relay("b", b.port(), "")], "");
    let job = Job::new(&smtp, 12);
    let out = job.run(&["--rate", "4/s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut t: Vec<_> = a
        .messages()
        .into_iter()
        .chain(b.messages())
        .map(|m| m.received)
        .collect();
    t.sort();
    assert_eq!(t.len(), 12);
    assert!(!a.messages().is_empty() && !b.messages().is_empty());
    for w in t.windows(5) {
        assert!(
            w[4] - w[0] >= Duration::from_millis(950),
            "{:?}",
            w[4] - w[0]
        );
    }
}

#[test]
fn check_connect_opens_a_session_to_each_relay() {
    let (a, b) = (FaultServer::start(), FaultServer::start());
    let smtp = pool(&[relay("a", a.port(), ""), relay("b", b.port(), "")], "");
    let job = Job::new(&smtp, 1);
    let out = Mailshot::new(job.dir.path())
        .args(["check", "job.yaml", "--connect"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((a.connections(), b.connections()), (1, 1));
    for port in [a.port(), b.port()] {
        assert!(
            out.stderr
                .contains(&format!("127.0.0.1:{port}: session ok")),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn a_relay_that_cannot_be_reached_is_left_while_the_other_carries_the_run() {
    let b = FaultServer::start();
    let smtp = pool(
        // Slow enough for the other relay's tries to run out meanwhile.
        &[
            relay("down", closed_port(), ""),
            relay("up", b.port(), "rate: 5/s"),
        ],
        "",
    );
    let job = Job::new(&smtp, 10);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&b, 10);
    assert!(job.report().iter().all(|r| r.status == "sent"));
    assert!(
        out.stderr
            .contains("relay down is left for this run: could not use 127.0.0.1:"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_relay_whose_tls_fails_is_left_while_the_other_carries_the_run() {
    // `smtp://` demands STARTTLS, which this server does not offer.
    let (plain, b) = (FaultServer::start(), FaultServer::start());
    let no_tls = format!(
        "{{ name: notls, url: \"smtp://127.0.0.1:{}\" }}",
        plain.port()
    );
    let smtp = pool(&[no_tls, relay("good", b.port(), "")], "");
    let job = Job::new(&smtp, 10);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&b, 10);
    assert!(plain.messages().is_empty());
}

#[test]
fn a_relay_that_goes_down_mid_run_hands_the_rest_to_the_other_none_twice() {
    // A slow relay that ends its session after 5 messages, and is stopped
    // (no new connection) while it works on them.
    let a = FaultServer::builder()
        .reply_delay(Duration::from_millis(40))
        .close_after_messages(5, "421 4.3.2 System shutting down")
        .start();
    let b = FaultServer::builder()
        .reply_delay(Duration::from_millis(40))
        .start();
    let smtp = pool(
        &[
            relay("failing", a.port(), ""),
            relay("steady", b.port(), ""),
        ],
        "rate: 20/s",
    );
    let job = Job::new(&smtp, 30);
    let child = job.command(&["--json"]).spawn();
    a.wait_for_messages(2, Duration::from_secs(20));
    drop(a);
    let out = finish(child, RUN_LIMIT);
    let events = outcome_events(&out.stdout);
    assert_eq!(events.len(), 30, "{}", out.stderr);
    // Stopping the relay may cut a message after its final dot: that one
    // is `uncertain` (never resent), the run ends 75; all else is sent.
    let uncertain: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["status"] == "uncertain")
        .collect();
    assert!(uncertain.len() <= 1, "{uncertain:?}");
    assert_eq!(out.code, if uncertain.is_empty() { 0 } else { 75 });
    let sent_via = |relay: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["relay"] == relay && e["status"] == "sent")
            .map(|e| e["email"].as_str().unwrap().to_owned())
            .collect()
    };
    let via_a = sent_via("failing");
    assert!(!via_a.is_empty() && via_a.len() <= 5, "{via_a:?}");
    // Everything else went through the other relay, and nothing twice.
    let on_b = deliveries(&b);
    assert_eq!(on_b.len(), 30 - via_a.len() - uncertain.len(), "{on_b:?}");
    assert!(on_b.values().all(|&n| n == 1), "{on_b:?}");
    let mut via_b = sent_via("steady");
    via_b.sort();
    let mut got: Vec<String> = on_b.into_keys().collect();
    got.sort();
    assert_eq!(via_b, got);
}

#[test]
fn when_no_relay_can_be_reached_the_run_ends_69() {
    let smtp = pool(
        &[
            relay("one", closed_port(), ""),
            relay("two", closed_port(), ""),
        ],
        "",
    );
    let job = Job::new(&smtp, 3);
    let out = job.run(&[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(
        out.stderr.contains("one") && out.stderr.contains("two"),
        "{}",
        out.stderr
    );
}

#[test]
fn when_every_relay_refuses_the_login_the_run_ends_77_and_one_refusal_is_not_enough() {
    let srv = || {
        FaultServer::builder()
            .auth(true)
            .credentials("me", "right")
            .start()
    };
    let (a, b, c) = (srv(), srv(), srv());
    let login = |name: &str, port: u16, user: &str| {
        format!(
            "{{ name: {name}, url: \"smtp+plain://{user}@127.0.0.1:{port}\", \
             password_env: MAILSHOT_TEST_PW, allow_plaintext_auth: true }}"
        )
    };
    // Every relay refuses: 77.
    let smtp = pool(
        &[login("a", a.port(), "me"), login("b", b.port(), "me")],
        "",
    );
    let job = Job::new(&smtp, 3);
    let out = job.command(&[]).env("MAILSHOT_TEST_PW", "wrong").run();
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(a.messages().is_empty() && b.messages().is_empty());
    // One refuses (another user), the other logs in: everything goes there.
    let smtp = pool(
        &[login("x", c.port(), "someone"), login("y", a.port(), "me")],
        "",
    );
    let job = Job::new(&smtp, 5);
    let out = job.command(&[]).env("MAILSHOT_TEST_PW", "right").run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&a, 5);
    assert!(c.messages().is_empty());
}

#[test]
fn a_daily_quota_reply_pauses_that_relay_and_the_other_sends_the_rest_none_rejected() {
    let a = quota_after(
        3,
        "550 5.4.5 Daily user sending quota exceeded.",
        Arc::new(AtomicBool::new(true)),
    );
    let b = FaultServer::start();
    let smtp = pool(
        &[relay("quota", a.port(), ""), relay("spare", b.port(), "")],
        "",
    );
    // Enough rows that the quota relay's fair share goes past its three,
    // however fast the spare relay is.
    let n = 60;
    let job = Job::new(&smtp, n);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(a.messages().len() <= 3, "{}", a.messages().len());
    assert!(
        out.stderr
            .contains("relay quota paused until the day ends: it answered 550 5.4.5"),
        "{}",
        out.stderr
    );
    assert_each_once_over(&[&a, &b], n);
    let rows = job.report();
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
}

#[test]
fn when_every_relay_is_over_its_quota_the_run_ends_75_and_a_rerun_sends_only_the_rest() {
    let on = Arc::new(AtomicBool::new(true));
    let a = quota_after(
        2,
        "550 5.4.5 Daily user sending quota exceeded.",
        on.clone(),
    );
    let b = quota_after(1, "451 4.7.0 Too many messages, slow down", on.clone());
    let smtp = pool(
        &[relay("a", a.port(), ""), relay("b", b.port(), "")],
        "patience: 1s, max_attempts: 50",
    );
    let job = Job::new(&smtp, 10);
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(out.stderr.contains("paused"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(30), "{:?}", out.elapsed);
    let sent = a.messages().len() + b.messages().len();
    assert_eq!(sent, 3, "2 on a, 1 on b");
    let rows = job.report();
    assert!(
        rows.iter().all(|r| r.status != "rejected"),
        "a limit reply never rejects: {rows:?}"
    );
    // The quotas are lifted (another day): a rerun sends only the other 7.
    on.store(false, Ordering::SeqCst);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once_over(&[&a, &b], 10);
}

#[test]
fn a_daily_limit_holds_across_runs_through_a_private_state_file() {
    let a = FaultServer::start();
    let smtp = smtp_plain(a.port(), "daily_limit: 3, patience: 1s");
    let job = Job::new(&smtp, 5);
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(a.messages().len(), 3);
    let state = job.dir.path().join("job.relays.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The same day: nothing more goes out.
    let out = job.run(&[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(a.messages().len(), 3);
}

#[test]
fn a_relay_at_its_daily_limit_leaves_the_rest_to_the_others() {
    let (a, b) = (FaultServer::start(), FaultServer::start());
    let smtp = pool(
        &[
            relay("limited", a.port(), "daily_limit: 3"),
            relay("spare", b.port(), ""),
        ],
        "",
    );
    let job = Job::new(&smtp, 30);
    let out = job.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(a.messages().len(), 3);
    assert_each_once_over(&[&a, &b], 30);
    let state = job.dir.read("job.relays.json");
    assert!(state.contains("\"limited\": 3"), "{state}");
}

#[test]
fn postfix_is_one_of_the_relays() {
    let pf = Postfix::start();
    let quota = quota_after(
        2,
        "550 5.4.5 Daily user sending quota exceeded.",
        Arc::new(AtomicBool::new(true)),
    );
    let postfix = format!(
        "{{ name: postfix, url: \"smtp://127.0.0.1:{}\", ca_file: \"{}\", timeout: 10s }}",
        pf.port(),
        pf.ca_file().display()
    );
    let smtp = pool(&[relay("quota", quota.port(), ""), postfix], "");
    let job = Job::new(&smtp, 8);
    let out = job.run(&["--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, pf.log());
    let via_postfix = outcome_events(&out.stdout)
        .iter()
        .filter(|e| e["relay"] == "postfix")
        .count();
    assert_eq!(via_postfix, 8 - quota.messages().len());
    let files = pf.wait_for_messages(via_postfix, Duration::from_secs(30));
    assert_eq!(files.len(), via_postfix, "{}", pf.log());
    assert!(job.report().iter().all(|r| r.status == "sent"));
}

#[test]
fn check_names_the_line_and_column_of_a_bad_relay_key() {
    let job = Job::new(
        "\n  relays:\n    - url: \"smtp+plain://127.0.0.1:2525\"\n    - host: relay.example.test\n      port: 0\n",
        1,
    );
    let out = Mailshot::new(job.dir.path())
        .args(["check", "job.yaml"])
        .run();
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("job.yaml:5:7"), "{}", out.stderr);
    assert!(
        out.stderr.contains("port must be from 1 to 65535"),
        "{}",
        out.stderr
    );
}

/// A pool relay item that logs in as `user` over plain text.
fn login_relay(name: &str, port: u16, user: &str, extra: &str) -> String {
    format!(
        "{{ name: {name}, url: \"smtp+plain://{user}@127.0.0.1:{port}\", \
         password_env: MAILSHOT_TEST_PW, allow_plaintext_auth: true{extra} }}"
    )
}

/// The AUTH commands `server` received.
fn logins(server: &FaultHandle) -> usize {
    server
        .commands()
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("AUTH"))
        .count()
}

#[test]
fn a_relay_that_refuses_the_login_once_is_tried_again_and_carries_mail() {
    // The first server on the port refuses every login; once it has refused
    // one, a server that accepts it takes its place on the same port.
    let refusing = FaultServer::builder().credentials("me", "right").start();
    let addr = refusing.addr();
    let steady = FaultServer::start();
    let smtp = pool(
        &[
            login_relay("flaky", addr.port(), "me", ", sessions: 1"),
            relay("steady", steady.port(), "rate: 4/s"),
        ],
        "retry_delay: 400ms, max_attempts: 4",
    );
    let job = Job::new(&smtp, 16);
    let run = job.command(&[]).env("MAILSHOT_TEST_PW", "wrong").spawn();
    let t0 = std::time::Instant::now();
    while logins(&refusing) == 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(logins(&refusing), 1, "the first login was not tried");
    drop(refusing);
    let accepting = FaultServer::builder().auth(true).start_on(addr);
    let out = run.finish();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !accepting.messages().is_empty(),
        "the relay was not tried again: {}",
        out.stderr
    );
    assert_each_once_over(&[&accepting, &steady], 16);
    assert!(job.report().iter().all(|r| r.status == "sent"));
    assert!(
        out.stderr.contains("relay flaky paused for"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_relay_that_always_refuses_the_login_is_tried_max_attempts_times_then_left() {
    let refusing = FaultServer::builder().credentials("me", "right").start();
    let steady = FaultServer::start();
    let smtp = pool(
        &[
            login_relay("locked", refusing.port(), "someone", ", sessions: 3"),
            relay("steady", steady.port(), "rate: 5/s"),
        ],
        "retry_delay: 50ms, max_attempts: 3",
    );
    // About two seconds at 5/s: time for many more tries than three, and
    // three sessions that would each try at once.
    let job = Job::new(&smtp, 10);
    let out = job.command(&[]).env("MAILSHOT_TEST_PW", "right").run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&steady, 10);
    assert!(refusing.messages().is_empty());
    let tries = logins(&refusing);
    assert!((2..=3).contains(&tries), "{tries} logins tried");
    assert!(
        out.stderr.contains("relay locked is left for this run"),
        "{}",
        out.stderr
    );
}
