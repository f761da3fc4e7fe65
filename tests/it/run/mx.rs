//! Direct MX delivery: the job keys (`smtp.mx`, `smtp.resolver`, a fully
//! qualified `helo_name`), and the resolver asked a real DNS server
//! (dnsmasq on loopback, `support::dns`) for MX, implicit MX, null MX,
//! NXDOMAIN, unreachable and internationalized domains.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailshot::dns::{Candidate, DnsFailure, MxResolver};
use mailshot::smtp::net::tls::generate_pki;

use super::helpers::{by_email, finish, signal, smtp_section, Job};
use crate::support::cmd::Output;
use crate::support::dns::{Dns, Zone};
use crate::support::fault::{FaultHandle, FaultServer};

/// `mailshot check` of a job whose `smtp:` is `smtp` (on line 1).
fn check(smtp: &str) -> Output {
    let job = Job::new(smtp, 2);
    crate::support::cmd::Mailshot::new(job.dir.path())
        .args(["check", "job.yaml"])
        .env_remove("XDG_CONFIG_HOME")
        .run()
}

#[track_caller]
fn invalid_at(smtp: &str, position: &str, words: &str) {
    let out = check(smtp);
    out.expect_code(65);
    assert!(
        out.stderr.contains(position) && out.stderr.contains(words),
        "want {position} and {words:?} in:\n{}",
        out.stderr
    );
}

/// An `smtp:` section in block style, one `key: value` a line from line 2.
fn block(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("\n  {l}")).collect()
}

#[test]
fn mx_job_needs_a_fully_qualified_helo_name() {
    invalid_at(
        &block(&["mx: true"]),
        "job.yaml:2:3",
        "needs smtp.helo_name",
    );
    for name in ["localhost", "\"192.0.2.1\"", "mail"] {
        invalid_at(
            &block(&["mx: true", &format!("helo_name: {name}")]),
            "job.yaml:3:3",
            "not a fully qualified domain name",
        );
    }
    check(&block(&["mx: true", "helo_name: mail.example.test"])).expect_code(0);
}

#[test]
fn mx_job_names_no_server_no_login_and_no_implicit_tls() {
    let mx = |line: &str| block(&["mx: true", "helo_name: mail.example.test", line]);
    invalid_at(
        &mx("host: relay.example.test"),
        "job.yaml:4:3",
        "smtp.host names one server",
    );
    invalid_at(&mx("username: me"), "job.yaml:4:3", "without a login");
    invalid_at(&mx("security: tls"), "job.yaml:4:3", "security is starttls");
    invalid_at(
        &mx("resolver: \"dns.example.test:53\""),
        "job.yaml:4:3",
        "is not IP:PORT",
    );
    invalid_at(
        &block(&[
            "url: \"smtp+plain://127.0.0.1:2525\"",
            "resolver: \"127.0.0.1:53\"",
        ]),
        "job.yaml:3:3",
        "only used with mx: true",
    );
    invalid_at(
        &block(&[
            "mx: true",
            "helo_name: mail.example.test",
            "relays:",
            "  - { url: \"smtp+plain://127.0.0.1:2525\" }",
        ]),
        "job.yaml:4:3",
        "use one or the other",
    );
    check(&block(&[
        "mx: true",
        "helo_name: mail.example.test",
        "security: starttls",
        "port: 2525",
        "resolver: \"127.0.0.1:5353\"",
    ]))
    .expect_code(0);
}

#[test]
fn mx_check_connect_says_there_is_no_one_server() {
    let job = Job::new(&block(&["mx: true", "helo_name: mail.example.test"]), 1);
    let out = crate::support::cmd::Mailshot::new(job.dir.path())
        .args(["check", "job.yaml", "--connect"])
        .env_remove("XDG_CONFIG_HOME")
        .run();
    out.expect_code(64);
    assert!(
        out.stderr.contains("each recipient domain"),
        "{}",
        out.stderr
    );
}

fn zone() -> Dns {
    Zone::new()
        .mx("pref.test", 20, "mx-b.test")
        .mx("pref.test", 10, "mx-a.test")
        .host("mx-a.test", "127.0.0.2")
        .host("mx-b.test", "127.0.0.3")
        .host("implicit.test", "127.0.0.4")
        .null_mx("nullmx.test")
        .mx("xn--bcher-kva.test", 10, "mx-b.test")
        .mx("nohost.test", 10, "missing.test")
        .broken("broken.test")
        .start()
}

fn ips(found: &[Candidate]) -> Vec<IpAddr> {
    found.iter().map(|c| c.ip).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn resolver_orders_mx_hosts_by_preference_with_the_port() {
    let dns = zone();
    let resolver = MxResolver::new(Some(dns.addr()), 2525).unwrap();
    let found = resolver.candidates("pref.test").unwrap();
    assert_eq!(ips(&found), [ip("127.0.0.2"), ip("127.0.0.3")]);
    assert_eq!(found[0].host, "mx-a.test");
    assert!(found.iter().all(|c| c.port == 2525));
}

#[test]
fn resolver_uses_the_domain_itself_without_mx() {
    let dns = zone();
    let resolver = MxResolver::new(Some(dns.addr()), 25).unwrap();
    let found = resolver.candidates("implicit.test").unwrap();
    assert_eq!(ips(&found), [ip("127.0.0.4")]);
    assert_eq!(found[0].host, "implicit.test");
}

#[test]
fn resolver_null_mx_and_nxdomain_are_permanent_with_clear_text() {
    let dns = zone();
    let resolver = MxResolver::new(Some(dns.addr()), 25).unwrap();
    match resolver.candidates("nullmx.test") {
        Err(DnsFailure::Permanent(r)) => {
            assert_eq!(r.code, 556);
            assert!(r.text().contains("does not accept mail"), "{}", r.text());
        }
        other => panic!("null MX: {other:?}"),
    }
    match resolver.candidates("nowhere.test") {
        Err(DnsFailure::Permanent(r)) => {
            assert_eq!(r.code, 550);
            assert!(r.text().contains("does not exist"), "{}", r.text());
        }
        other => panic!("NXDOMAIN: {other:?}"),
    }
    match resolver.candidates("[192.0.2.1]") {
        Err(DnsFailure::Permanent(r)) => {
            assert!(r.text().contains("is not a domain name"), "{}", r.text())
        }
        other => panic!("address literal: {other:?}"),
    }
    match resolver.candidates("nohost.test") {
        Err(DnsFailure::Permanent(r)) => {
            assert!(r.text().contains("has an address"), "{}", r.text())
        }
        other => panic!("MX host without address: {other:?}"),
    }
}

#[test]
fn resolver_unanswered_question_is_temporary() {
    let dns = zone();
    let resolver = MxResolver::new(Some(dns.addr()), 25).unwrap();
    let started = Instant::now();
    match resolver.candidates("broken.test") {
        Err(DnsFailure::Temporary(r)) => assert_eq!(r.code, 451, "{}", r.text()),
        other => panic!("broken: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn resolver_asks_for_an_idn_domain_in_punycode() {
    let dns = zone();
    let resolver = MxResolver::new(Some(dns.addr()), 25).unwrap();
    let found = resolver.candidates("bücher.test").unwrap();
    assert_eq!(ips(&found), [ip("127.0.0.3")]);
    assert!(dns.log().contains("xn--bcher-kva.test"), "{}", dns.log());
}

// ---- end to end: `mailshot run` with mx: true --------------------------

/// A port free on every loopback address the test uses as an MX host.
fn mx_port(hosts: &[&str]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((hosts[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        if hosts[1..]
            .iter()
            .all(|h| TcpListener::bind((*h, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {hosts:?}");
}

fn at(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().unwrap(), port)
}

/// The `smtp:` section of an mx job asking `dns`, MX hosts on `port`.
fn mx_smtp(dns: &Dns, port: u16, extra: &str) -> String {
    smtp_section(
        &format!(
            "mx: true, helo_name: mail.sender.test, port: {port}, resolver: \"{}\"",
            dns.addr()
        ),
        &[
            ("timeout", "5s"),
            ("retry_delay", "200ms"),
            ("max_attempts", "3"),
        ],
        extra,
    )
}

fn csv(addresses: &[&str]) -> String {
    let mut csv = String::from("email,name\n");
    for (i, a) in addresses.iter().enumerate() {
        csv.push_str(&format!("{a},Name {}\n", i + 1));
    }
    csv
}

fn received(server: &FaultHandle) -> Vec<String> {
    let mut got: Vec<String> = server
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpts)
        .collect();
    got.sort();
    got
}

#[test]
fn mx_run_follows_preference_and_falls_back_per_domain() {
    // up.test: both hosts answer, the preferred one gets the mail.
    // down.test: nothing listens on its preferred host.
    // busy.test: its preferred host greets with 421.
    let dns = Zone::new()
        .mx("up.test", 10, "a.test")
        .mx("up.test", 20, "b.test")
        .mx("down.test", 10, "dead.test")
        .mx("down.test", 20, "b.test")
        .mx("busy.test", 20, "b.test")
        .mx("busy.test", 10, "busy-mx.test")
        .host("a.test", "127.0.0.2")
        .host("b.test", "127.0.0.3")
        .host("dead.test", "127.0.0.4")
        .host("busy-mx.test", "127.0.0.5")
        .start();
    let port = mx_port(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    let b = FaultServer::builder().start_on(at("127.0.0.3", port));
    let busy = FaultServer::builder()
        .greeting("421 4.3.2 busy, try another host")
        .start_on(at("127.0.0.5", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, ""),
        &csv(&[
            "ann@up.test",
            "bob@down.test",
            "cy@busy.test",
            "dee@up.test",
        ]),
        "",
    );
    let out = job.run(&["--json"]);
    out.expect_code(0);
    assert_eq!(received(&a), ["ann@up.test", "dee@up.test"]);
    // Events name the destination each message went to.
    let relay_of = |email: &str| {
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["email"] == email)
            .map(|e| e["relay"].clone())
    };
    assert_eq!(
        relay_of("bob@down.test").unwrap(),
        "mx:down.test",
        "{}",
        out.stdout
    );
    assert_eq!(received(&b), ["bob@down.test", "cy@busy.test"]);
    assert!(busy.messages().is_empty());
    assert!(
        busy.connections() >= 1,
        "the preferred host was tried first"
    );
    let rows = by_email(&job.report());
    assert!(rows.values().all(|r| r.status == "sent"), "{rows:?}");
    // Each destination has sessions of its own: down.test's and busy.test's
    // mail reached the same host on different connections.
    let conn = |rcpt: &str| {
        b.messages()
            .into_iter()
            .find(|m| m.rcpts.iter().any(|r| r == rcpt))
            .map(|m| m.connection)
            .unwrap()
    };
    assert_ne!(conn("bob@down.test"), conn("cy@busy.test"));
}

#[test]
fn mx_run_rejects_null_mx_and_unknown_domains_without_connecting() {
    let dns = Zone::new()
        .mx("ok.test", 10, "a.test")
        .host("a.test", "127.0.0.2")
        .null_mx("nullmx.test")
        .start();
    let port = mx_port(&["127.0.0.2"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, ""),
        &csv(&["ann@ok.test", "bob@nullmx.test", "cy@nowhere.test"]),
        "",
    );
    let out = job.run(&[]);
    out.expect_code(67);
    assert_eq!(received(&a), ["ann@ok.test"]);
    assert_eq!(a.connections(), 1, "only ok.test's host was connected to");
    let rows = by_email(&job.report());
    let null = &rows["bob@nullmx.test"];
    assert_eq!(
        (null.status.as_str(), null.code.as_str()),
        ("rejected", "556")
    );
    assert!(null.reply.contains("does not accept mail"), "{null:?}");
    let nx = &rows["cy@nowhere.test"];
    assert_eq!((nx.status.as_str(), nx.code.as_str()), ("rejected", "550"));
    assert!(nx.reply.contains("does not exist"), "{nx:?}");
}

#[test]
fn mx_run_retries_greylisting_after_the_retry_delay() {
    let dns = Zone::new()
        .mx("grey.test", 10, "a.test")
        .host("a.test", "127.0.0.2")
        .start();
    let port = mx_port(&["127.0.0.2"]);
    let seen = Mutex::new(HashSet::new());
    let a = FaultServer::builder()
        .rcpt_hook(move |rcpt, _| {
            // First try of each address: greylisted, as postgrey answers.
            seen.lock()
                .unwrap()
                .insert(rcpt.to_string())
                .then(|| "451 4.7.1 Greylisted, please try again later".to_string())
        })
        .start_on(at("127.0.0.2", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, "retry_delay: 1s"),
        &csv(&["ann@grey.test", "bob@grey.test"]),
        "",
    );
    let out = job.run(&[]);
    out.expect_code(0);
    assert_eq!(received(&a), ["ann@grey.test", "bob@grey.test"]);
    // The retry waited for retry_delay (1 s, less at most a quarter of jitter).
    assert!(
        out.elapsed >= Duration::from_millis(750),
        "{:?}",
        out.elapsed
    );
    let rows = by_email(&job.report());
    assert!(
        rows.values().all(|r| r.status == "sent" && r.attempts == 2),
        "{rows:?}"
    );
}

#[test]
fn mx_run_asks_again_when_the_dns_cannot_answer() {
    let dns = Zone::new().broken("broken.test").start();
    let job = Job::with_csv(
        &mx_smtp(&dns, 25, "retry_delay: 100ms, max_attempts: 2"),
        &csv(&["ann@broken.test"]),
        "",
    );
    let out = job.run(&[]);
    out.expect_code(75);
    let rows = by_email(&job.report());
    let row = &rows["ann@broken.test"];
    assert_eq!((row.status.as_str(), row.code.as_str()), ("failed", "451"));
    assert!(row.reply.contains("cannot look up"), "{row:?}");
    let asked = dns.log().matches("broken.test").count();
    assert!(asked >= 2, "asked twice:\n{}", dns.log());
}

#[test]
fn mx_run_delivers_to_an_idn_domain() {
    let dns = Zone::new()
        .mx("xn--bcher-kva.test", 10, "a.test")
        .host("a.test", "127.0.0.2")
        .start();
    let port = mx_port(&["127.0.0.2"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    let job = Job::with_csv(&mx_smtp(&dns, port, ""), &csv(&["ann@bücher.test"]), "");
    job.run(&[]).expect_code(0);
    assert_eq!(a.messages().len(), 1);
    assert!(dns.log().contains("xn--bcher-kva.test"), "{}", dns.log());
}

#[test]
fn mx_run_uses_starttls_when_offered_and_verifies_only_when_asked() {
    let dns = Zone::new()
        .mx("tls.test", 10, "a.test")
        .host("a.test", "127.0.0.2")
        .start();
    let port = mx_port(&["127.0.0.2"]);
    // A certificate from a CA nobody trusts, for another name.
    let a = FaultServer::builder()
        .starttls(Some(generate_pki(&["elsewhere.test"])))
        .start_on(at("127.0.0.2", port));
    let job = Job::with_csv(&mx_smtp(&dns, port, ""), &csv(&["ann@tls.test"]), "");
    job.run(&[]).expect_code(0);
    let got = a.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls, "sent inside TLS");

    let strict = Job::with_csv(
        &mx_smtp(&dns, port, "security: starttls, max_attempts: 1"),
        &csv(&["bob@tls.test"]),
        "",
    );
    let out = strict.run(&[]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        a.messages().len(),
        1,
        "nothing sent over an unverified session"
    );
    assert!(out.stderr.contains("tls.test"), "{}", out.stderr);
}

#[test]
fn mx_run_leaves_an_unreachable_domain_for_a_rerun_and_sends_the_others() {
    let dns = Zone::new()
        .mx("ok.test", 10, "a.test")
        .host("a.test", "127.0.0.2")
        .mx("gone.test", 10, "dead.test")
        .host("dead.test", "127.0.0.4")
        .start();
    let port = mx_port(&["127.0.0.2", "127.0.0.4"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, "retry_delay: 100ms, max_attempts: 2"),
        &csv(&["ann@gone.test", "bob@ok.test"]),
        "",
    );
    let out = job.run(&[]);
    out.expect_code(75);
    assert_eq!(received(&a), ["bob@ok.test"]);
    assert!(out.stderr.contains("gone.test"), "{}", out.stderr);
    let rows = by_email(&job.report());
    assert_eq!(rows["bob@ok.test"].status, "sent");
    assert_ne!(rows["ann@gone.test"].status, "sent");

    // The rerun sends only what is left, once the host is back.
    let back = FaultServer::builder().start_on(at("127.0.0.4", port));
    job.run(&[]).expect_code(0);
    assert_eq!(received(&back), ["ann@gone.test"]);
    assert_eq!(received(&a), ["bob@ok.test"], "nothing sent twice");
}

/// A zone with one.test on 127.0.0.2 and two.test on `two_host`.
fn two_domains(two_host: &str) -> Dns {
    Zone::new()
        .mx("one.test", 10, "a.test")
        .mx("two.test", 10, "b.test")
        .host("a.test", "127.0.0.2")
        .host("b.test", two_host)
        .start()
}

/// Row 1 goes to ann@one.test with a Cc to cy@two.test and a Bcc to
/// bo@one.test; row 2 to dee@one.test alone.
const SPANNING: &str = "cc: \"{% if row == 1 %}cy@two.test{% endif %}\"\n\
                        bcc: \"{% if row == 1 %}bo@one.test{% endif %}\"";

#[test]
fn mx_run_sends_a_row_spanning_domains_to_each_domains_hosts() {
    let dns = two_domains("127.0.0.3");
    let port = mx_port(&["127.0.0.2", "127.0.0.3"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    let b = FaultServer::builder().start_on(at("127.0.0.3", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, ""),
        &csv(&["ann@one.test", "dee@one.test"]),
        SPANNING,
    );
    job.run(&[]).expect_code(0);
    // Each domain's hosts got exactly that domain's recipients.
    let mut to_a: Vec<Vec<String>> = a.messages().into_iter().map(|m| m.rcpts).collect();
    to_a.sort();
    assert_eq!(
        to_a,
        [vec!["ann@one.test", "bo@one.test"], vec!["dee@one.test"]]
    );
    let to_b = b.messages();
    assert_eq!(to_b.len(), 1);
    assert_eq!(to_b[0].rcpts, ["cy@two.test"]);
    // The same message: the headers show To and Cc as written, no Bcc.
    let text = String::from_utf8_lossy(&to_b[0].data).to_string();
    assert!(
        text.contains("ann@one.test>") && text.contains("Cc: cy@two.test"),
        "{text}"
    );
    assert!(!text.contains("bo@one.test"), "{text}");
    let first = a
        .messages()
        .into_iter()
        .find(|m| m.rcpts.len() == 2)
        .unwrap();
    assert_eq!(first.data, to_b[0].data, "one message, two envelopes");
    let rows = by_email(&job.report());
    assert_eq!(rows["ann@one.test"].status, "sent", "{rows:?}");
    assert_eq!(rows["dee@one.test"].status, "sent", "{rows:?}");
}

#[test]
fn mx_run_rejects_a_spanning_row_when_another_domain_refuses_its_recipient() {
    let dns = two_domains("127.0.0.3");
    let port = mx_port(&["127.0.0.2", "127.0.0.3"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    let b = FaultServer::builder()
        .rcpt_hook(|_, _| Some("550 5.1.1 no such user here".into()))
        .start_on(at("127.0.0.3", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, ""),
        &csv(&["ann@one.test", "dee@one.test"]),
        SPANNING,
    );
    job.run(&[]);
    assert_eq!(
        received(&a),
        ["ann@one.test", "bo@one.test", "dee@one.test"],
        "each one.test recipient got the message once"
    );
    assert!(b.messages().is_empty());
    let rows = by_email(&job.report());
    let row = &rows["ann@one.test"];
    assert_eq!(
        (row.status.as_str(), row.code.as_str()),
        ("rejected", "550")
    );
    assert!(
        row.reply.contains("cy@two.test") && row.reply.contains("no such user here"),
        "{row:?}"
    );
    assert_eq!(rows["dee@one.test"].status, "sent");

    // A rerun sends nothing again: the row is decided.
    job.run(&[]);
    assert_eq!(
        received(&a),
        ["ann@one.test", "bo@one.test", "dee@one.test"]
    );
}

#[test]
fn mx_run_leaves_an_unreachable_domains_part_of_a_row_for_the_rerun() {
    let dns = two_domains("127.0.0.4");
    let port = mx_port(&["127.0.0.2", "127.0.0.4"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, "retry_delay: 100ms, max_attempts: 2"),
        &csv(&["ann@one.test", "dee@one.test"]),
        SPANNING,
    );
    let out = job.run(&[]);
    out.expect_code(75);
    assert!(out.stderr.contains("two.test"), "{}", out.stderr);
    assert_eq!(
        received(&a),
        ["ann@one.test", "bo@one.test", "dee@one.test"]
    );
    let rows = by_email(&job.report());
    assert_ne!(rows["ann@one.test"].status, "sent", "{rows:?}");

    // Once two.test's host is back, the rerun sends only to its recipient.
    let back = FaultServer::builder().start_on(at("127.0.0.4", port));
    job.run(&[]).expect_code(0);
    assert_eq!(received(&back), ["cy@two.test"]);
    assert_eq!(
        received(&a),
        ["ann@one.test", "bo@one.test", "dee@one.test"],
        "nothing sent twice"
    );
    let rows = by_email(&job.report());
    assert_eq!(rows["ann@one.test"].status, "sent", "{rows:?}");
}

#[test]
fn mx_run_killed_between_two_domains_sends_only_the_rest_on_the_rerun() {
    let dns = two_domains("127.0.0.3");
    let port = mx_port(&["127.0.0.2", "127.0.0.3"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    // two.test's host holds its first RCPT until released, so mailshot is
    // killed after one.test accepted and before two.test answered.
    let held = Arc::new(AtomicBool::new(true));
    let first = Arc::new(AtomicBool::new(true));
    let (h, f) = (held.clone(), first.clone());
    let b = FaultServer::builder()
        .rcpt_hook(move |_, _| {
            if f.swap(false, Ordering::SeqCst) {
                for _ in 0..300 {
                    if !h.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            None
        })
        .start_on(at("127.0.0.3", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, "timeout: 30s"),
        &csv(&["ann@one.test", "dee@one.test"]),
        SPANNING,
    );
    let child = job.spawn(&[]);
    a.wait_for_messages(2, Duration::from_secs(20));
    // Time to record what one.test answered (it waits for no fsync).
    std::thread::sleep(Duration::from_millis(800));
    assert!(b.messages().is_empty() && !first.load(Ordering::SeqCst));
    signal(&child, "KILL");
    assert_eq!(finish(child, Duration::from_secs(20)).code, -1, "killed");
    held.store(false, Ordering::SeqCst);

    job.run(&[]).expect_code(0);
    assert_eq!(received(&b), ["cy@two.test"]);
    assert_eq!(
        received(&a),
        ["ann@one.test", "bo@one.test", "dee@one.test"],
        "nothing sent twice"
    );
    let rows = by_email(&job.report());
    assert_eq!(rows["ann@one.test"].status, "sent", "{rows:?}");
}

#[test]
fn mx_run_with_verified_starttls_passes_an_unverifiable_host_to_the_next() {
    let dns = Zone::new()
        .mx("strict.test", 10, "a.test")
        .mx("strict.test", 20, "b.test")
        .host("a.test", "127.0.0.2")
        .host("b.test", "127.0.0.3")
        .start();
    let port = mx_port(&["127.0.0.2", "127.0.0.3"]);
    let trusted = generate_pki(&["b.test"]);
    let a = FaultServer::builder()
        .starttls(Some(generate_pki(&["a.test"])))
        .start_on(at("127.0.0.2", port));
    let b = FaultServer::builder()
        .starttls(Some(trusted.clone()))
        .start_on(at("127.0.0.3", port));
    let job = Job::with_csv(
        &mx_smtp(&dns, port, "security: starttls, ca_file: ca.pem"),
        &csv(&["ann@strict.test"]),
        "",
    );
    job.dir.write("ca.pem", &trusted.ca_pem);
    job.run(&[]).expect_code(0);
    assert!(
        a.messages().is_empty(),
        "nothing over an unverified session"
    );
    let got = b.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls);
}

#[test]
fn mx_run_tries_the_next_host_after_a_4xx_to_the_message() {
    let dns = Zone::new()
        .mx("busy.test", 10, "a.test")
        .mx("busy.test", 20, "b.test")
        .host("a.test", "127.0.0.2")
        .host("b.test", "127.0.0.3")
        .start();
    let port = mx_port(&["127.0.0.2", "127.0.0.3"]);
    let a = FaultServer::builder()
        .rcpt_hook(|_, _| Some("450 4.2.1 mailbox busy here, try later".into()))
        .start_on(at("127.0.0.2", port));
    let b = FaultServer::builder().start_on(at("127.0.0.3", port));
    let job = Job::with_csv(&mx_smtp(&dns, port, ""), &csv(&["ann@busy.test"]), "");
    job.run(&[]).expect_code(0);
    assert!(a.messages().is_empty());
    assert_eq!(a.connections(), 1, "the preferred host was tried once");
    assert_eq!(received(&b), ["ann@busy.test"]);
    let rows = by_email(&job.report());
    assert_eq!(rows["ann@busy.test"].attempts, 2);
}

#[test]
fn mx_run_delivers_to_the_domain_itself_without_mx_records() {
    let dns = Zone::new().host("plain.test", "127.0.0.2").start();
    let port = mx_port(&["127.0.0.2"]);
    let a = FaultServer::builder().start_on(at("127.0.0.2", port));
    let job = Job::with_csv(&mx_smtp(&dns, port, ""), &csv(&["ann@plain.test"]), "");
    job.run(&[]).expect_code(0);
    assert_eq!(received(&a), ["ann@plain.test"]);
}
