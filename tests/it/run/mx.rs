//! Direct MX delivery: the resolver asked a real DNS server (dnsmasq on
//! loopback, `support::dns`) for MX, implicit MX, null MX, NXDOMAIN,
//! unreachable and internationalized domains.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mailshot::dns::{Candidate, DnsFailure, MxResolver};

use crate::support::dns::{Dns, Zone};

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
