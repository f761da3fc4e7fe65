//! Direct MX delivery: the job keys (`smtp.mx`, `smtp.resolver`, a fully
//! qualified `helo_name`), and the resolver asked a real DNS server
//! (dnsmasq on loopback, `support::dns`) for MX, implicit MX, null MX,
//! NXDOMAIN, unreachable and internationalized domains.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mailshot::dns::{Candidate, DnsFailure, MxResolver};

use super::helpers::Job;
use crate::support::cmd::Output;
use crate::support::dns::{Dns, Zone};

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
    check(&block(&[
        "mx: true",
        "helo_name: mail.example.test",
        "security: starttls",
        "port: 2525",
        "resolver: \"127.0.0.1:5353\"",
    ]))
    .expect_code(0);
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
