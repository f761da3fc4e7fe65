//! The order in which a domain's MX hosts are tried (RFC 5321 §5.1), as a
//! pure function: lowest preference first, a random order among hosts of
//! equal preference (so senders spread over them), each host once. A null
//! MX (RFC 7505: one record whose exchange is the root, `MX 0 .`) means the
//! domain takes no mail.

use std::net::IpAddr;

use super::Candidate;

/// One MX record as the DNS answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    /// Lower is tried first.
    pub preference: u16,
    /// The host name (a trailing dot is allowed; `.` or empty is the root).
    pub exchange: String,
}

/// What a domain's MX records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hosts {
    /// A null MX: the domain accepts no mail.
    Null,
    /// The hosts to try, in order (lower case, no trailing dot).
    Ordered(Vec<String>),
}

/// Order `records` for delivery. `rng` picks the order among equal
/// preferences. A root exchange next to real hosts is not a valid null MX
/// (RFC 7505 §3 forbids other records beside it) and is skipped; the real
/// hosts are used.
pub fn order_hosts(records: &[MxRecord], rng: &mut fastrand::Rng) -> Hosts {
    let mut named: Vec<(u16, String)> = records
        .iter()
        .map(|r| {
            let host = r.exchange.trim_end_matches('.').to_ascii_lowercase();
            (r.preference, host)
        })
        .collect();
    if !named.is_empty() && named.iter().all(|(_, h)| h.is_empty()) {
        return Hosts::Null;
    }
    named.retain(|(_, h)| !h.is_empty());
    named.sort();
    // A host listed twice keeps its most preferred place.
    let mut seen = std::collections::HashSet::new();
    named.retain(|(_, h)| seen.insert(h.clone()));
    let mut ordered = Vec::with_capacity(named.len());
    let mut start = 0;
    while start < named.len() {
        let pref = named[start].0;
        let end = start
            + named[start..]
                .iter()
                .take_while(|(p, _)| *p == pref)
                .count();
        let mut group: Vec<String> = named[start..end].iter().map(|(_, h)| h.clone()).collect();
        rng.shuffle(&mut group);
        ordered.extend(group);
        start = end;
    }
    Hosts::Ordered(ordered)
}

/// The most addresses tried for one domain, over all its hosts (Postfix's
/// `smtp_mx_address_limit` is 5; a few more let a domain with IPv4 and IPv6
/// on each host still reach its backup host).
pub const MAX_CANDIDATES: usize = 10;

/// Candidates in try order: each host's addresses in the order given, hosts
/// in `hosts` order, at most [`MAX_CANDIDATES`], each address once.
pub fn candidates(hosts: &[(String, Vec<IpAddr>)], port: u16) -> Vec<Candidate> {
    let mut seen = std::collections::HashSet::new();
    hosts
        .iter()
        .flat_map(|(host, ips)| {
            ips.iter().map(move |ip| Candidate {
                host: host.clone(),
                ip: *ip,
                port,
            })
        })
        .filter(|c| seen.insert(c.ip))
        .take(MAX_CANDIDATES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mx(preference: u16, exchange: &str) -> MxRecord {
        MxRecord {
            preference,
            exchange: exchange.into(),
        }
    }

    fn ordered(h: Hosts) -> Vec<String> {
        match h {
            Hosts::Ordered(v) => v,
            Hosts::Null => panic!("null MX"),
        }
    }

    #[test]
    fn lower_preference_first_whatever_the_answer_order() {
        let records = [
            mx(20, "b.example."),
            mx(5, "c.example."),
            mx(10, "A.Example."),
        ];
        let got = ordered(order_hosts(&records, &mut fastrand::Rng::with_seed(1)));
        assert_eq!(got, ["c.example", "a.example", "b.example"]);
    }

    #[test]
    fn null_mx_alone_means_no_mail() {
        let rng = &mut fastrand::Rng::with_seed(1);
        assert_eq!(order_hosts(&[mx(0, ".")], rng), Hosts::Null);
        assert_eq!(order_hosts(&[mx(0, "")], rng), Hosts::Null);
    }

    #[test]
    fn a_root_exchange_beside_real_hosts_is_skipped() {
        let got = ordered(order_hosts(
            &[mx(0, "."), mx(10, "mx.example.")],
            &mut fastrand::Rng::with_seed(1),
        ));
        assert_eq!(got, ["mx.example"]);
    }

    #[test]
    fn no_records_no_hosts() {
        let got = ordered(order_hosts(&[], &mut fastrand::Rng::with_seed(1)));
        assert!(got.is_empty());
    }

    #[test]
    fn a_host_listed_twice_is_tried_once_at_its_best_place() {
        let records = [
            mx(30, "a.example"),
            mx(10, "b.example"),
            mx(10, "a.example."),
        ];
        let got = ordered(order_hosts(&records, &mut fastrand::Rng::with_seed(3)));
        assert_eq!(got.len(), 2);
        assert!(got.contains(&"a.example".to_string()));
    }

    #[test]
    fn equal_preferences_are_spread_over_all_hosts() {
        let records = [
            mx(10, "a.example"),
            mx(10, "b.example"),
            mx(10, "c.example"),
        ];
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..200 {
            let got = ordered(order_hosts(&records, &mut fastrand::Rng::with_seed(seed)));
            firsts.insert(got[0].clone());
        }
        assert_eq!(
            firsts.len(),
            3,
            "every host comes first sometimes: {firsts:?}"
        );
    }

    #[test]
    fn candidates_keep_host_order_and_drop_repeated_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let hosts = vec![
            ("a".to_string(), vec![ip("127.0.0.3"), ip("::1")]),
            ("b".to_string(), vec![ip("127.0.0.3"), ip("127.0.0.2")]),
        ];
        let got: Vec<(String, IpAddr)> = candidates(&hosts, 2525)
            .into_iter()
            .map(|c| (c.host, c.ip))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), ip("127.0.0.3")),
                ("a".into(), ip("::1")),
                ("b".into(), ip("127.0.0.2"))
            ]
        );
    }

    #[test]
    fn candidates_are_bounded() {
        let hosts: Vec<(String, Vec<IpAddr>)> = (0..30u8)
            .map(|i| (format!("h{i}"), vec![IpAddr::from([127, 0, 0, i + 1])]))
            .collect();
        assert_eq!(candidates(&hosts, 25).len(), MAX_CANDIDATES);
    }

    proptest! {
        #[test]
        fn preference_order_shuffled_only_among_equals(
            prefs in proptest::collection::vec(0u16..4, 0..12),
            seed in any::<u64>(),
        ) {
            let records: Vec<MxRecord> = prefs
                .iter()
                .enumerate()
                .map(|(i, p)| mx(*p, &format!("h{i}.example.")))
                .collect();
            let got = ordered(order_hosts(&records, &mut fastrand::Rng::with_seed(seed)));
            // Every host exactly once.
            let mut sorted_got = got.clone();
            sorted_got.sort();
            let mut expected: Vec<String> =
                (0..prefs.len()).map(|i| format!("h{i}.example")).collect();
            expected.sort();
            prop_assert_eq!(sorted_got, expected);
            // Preferences never go down along the list.
            let pref_of = |h: &str| prefs[h[1..h.find('.').unwrap()].parse::<usize>().unwrap()];
            let order: Vec<u16> = got.iter().map(|h| pref_of(h)).collect();
            prop_assert!(order.windows(2).all(|w| w[0] <= w[1]), "{:?}", order);
        }
    }
}
