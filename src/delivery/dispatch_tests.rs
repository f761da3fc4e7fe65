//! Tests of the dispatcher's queues without a network: per-domain queues
//! with no head-of-line blocking, per-domain sessions, and routes made at
//! run time for the domains no route serves.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::daily::DailyCounts;
use super::dispatch::{Dispatcher, Next, Work};
use super::plan::Plan;
use crate::compose::message::{Envelope, Outgoing};
use crate::job::target::Target;
use crate::job::{DomainLimit, Rate, Security, SmtpSettings};

fn work(row: u64, to: &str) -> Work {
    Work::new(
        Outgoing {
            row,
            email: to.to_owned(),
            message_id: format!("<{row}@run>"),
            envelope: Envelope {
                mail_from: "me@x.test".into(),
                rcpt_to: vec![to.to_owned()],
            },
            data: Arc::new(Vec::new()),
            eight_bit: false,
            smtputf8: false,
        },
        0,
    )
}

fn plan(sessions: usize) -> Plan {
    let mut s = SmtpSettings::new("127.0.0.1", 2525, Security::None);
    s.sessions = sessions;
    Plan::open(&Target::Smtp(Box::new(s)), None).expect("no secrets")
}

fn dispatcher(plan: &Plan, works: Vec<Work>) -> Dispatcher {
    let (tx, rx) = mpsc::channel();
    for w in works {
        tx.send(w).unwrap();
    }
    drop(tx);
    Dispatcher::new(
        rx,
        plan,
        DailyCounts::load(None),
        Arc::new(AtomicBool::new(false)),
    )
}

/// What session `key` gets next: the domain of its message, or `None`.
fn next_domain(d: &Dispatcher, key: (usize, usize), held: usize) -> Option<String> {
    match d.next(key, held) {
        Next::Work(w) => Some(w.domain.clone()),
        _ => None,
    }
}

#[test]
fn a_rate_limited_domain_at_the_head_of_the_queue_does_not_hold_up_another() {
    let mut p = plan(1);
    let rate = Rate {
        count: 1,
        per: Duration::from_secs(60),
    };
    p.domains = vec![(
        "slow.test".into(),
        DomainLimit {
            rate: Some(rate),
            sessions: None,
        },
    )];
    let mut works: Vec<Work> = (1..=5)
        .map(|i| work(i, &format!("s{i}@slow.test")))
        .collect();
    works.extend((6..=8).map(|i| work(i, &format!("f{i}@fast.test"))));
    let d = dispatcher(&p, works);
    let got: Vec<Option<String>> = (0..4).map(|_| next_domain(&d, (0, 1), 0)).collect();
    assert_eq!(got[0].as_deref(), Some("slow.test"));
    // The slow domain's one message a minute is used: the fast one's come.
    assert_eq!(
        got[1..].iter().flatten().collect::<Vec<_>>(),
        ["fast.test", "fast.test", "fast.test"]
    );
    assert!(
        next_domain(&d, (0, 1), 0).is_none(),
        "slow.test waits for its rate"
    );
}

#[test]
fn a_domain_with_one_session_is_carried_by_one_session_at_a_time() {
    let mut p = plan(2);
    p.domains = vec![(
        "one.test".into(),
        DomainLimit {
            rate: None,
            sessions: Some(1),
        },
    )];
    let works = (1..=4)
        .map(|i| work(i, &format!("u{i}@one.test")))
        .collect();
    let d = dispatcher(&p, works);
    let mut first = match d.next((0, 1), 0) {
        Next::Work(w) => *w,
        _ => panic!("work expected"),
    };
    assert!(next_domain(&d, (0, 2), 0).is_none(), "session 2 must wait");
    // Once session 1 holds nothing of it, session 2 may carry the domain.
    d.release(&mut first);
    assert_eq!(next_domain(&d, (0, 2), 0).as_deref(), Some("one.test"));
}

#[test]
fn routes_made_at_run_time_serve_one_domain_each() {
    let mut p = plan(1);
    // The configured route serves a domain with no mail: the others need routes.
    p.routes[0].domain = Some("nobody.test".into());
    let template = p.routes[0].clone();
    p.make_route = Some(Arc::new(move |domain: &str| {
        let mut r = template.clone();
        r.domain = Some(domain.to_owned());
        r.name = domain.to_owned();
        Ok(r)
    }));
    let works = vec![
        work(1, "a@a.test"),
        work(2, "b@b.test"),
        work(3, "c@a.test"),
    ];
    let d = dispatcher(&p, works);
    assert!(next_domain(&d, (0, 1), 0).is_none());
    let new = d.unstaffed();
    assert_eq!(new.len(), 2, "one route per domain");
    let names: Vec<String> = new.iter().map(|&r| d.route_name(r)).collect();
    let a = new[names.iter().position(|n| n == "a.test").unwrap()];
    let b = new[names.iter().position(|n| n == "b.test").unwrap()];
    assert_eq!(next_domain(&d, (b, 9), 0).as_deref(), Some("b.test"));
    assert!(
        next_domain(&d, (b, 9), 0).is_none(),
        "b.test's route takes only b.test"
    );
    assert_eq!(next_domain(&d, (a, 8), 0).as_deref(), Some("a.test"));
    assert_eq!(next_domain(&d, (a, 8), 0).as_deref(), Some("a.test"));
}
