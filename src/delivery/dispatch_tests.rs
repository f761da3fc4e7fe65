//! Tests of the dispatcher's queues without a network: per-domain queues
//! with no head-of-line blocking, per-domain sessions, and patience.

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
            data: Arc::default(),
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
fn a_session_takes_no_more_than_its_share_of_a_capped_domain() {
    // One session could hold the whole run's share; the domain's two
    // sessions must still split its mail, or the second has none to carry.
    let mut p = plan(1);
    p.domains = vec![(
        "two.test".into(),
        DomainLimit {
            rate: None,
            sessions: Some(2),
        },
    )];
    let works = (1..=10)
        .map(|i| work(i, &format!("u{i}@two.test")))
        .collect();
    let d = dispatcher(&p, works);
    let mut held = 0;
    while next_domain(&d, (0, 1), held).is_some() {
        held += 1;
        assert!(held <= 10);
    }
    assert_eq!(held, 5, "the first session took {held} of 10");
    assert_eq!(next_domain(&d, (0, 2), 0).as_deref(), Some("two.test"));
}

#[test]
fn a_route_refused_each_time_it_wakes_ends_the_run_after_the_patience() {
    let mut p = plan(1);
    p.patience = Duration::from_millis(300);
    let d = dispatcher(&p, vec![work(1, "a@a.test")]);
    let start = std::time::Instant::now();
    let ended = loop {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the run never ended"
        );
        // Paused (a limit reply), then awake: it takes the message and is
        // refused again, without anything being accepted.
        d.pause(0, Duration::from_millis(50), "it answered 550".into());
        if matches!(d.next((0, 1), 0), Next::Done) {
            break start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(60));
        match d.next((0, 1), 0) {
            Next::Work(w) => d.requeue(*w, Duration::ZERO),
            Next::Done => break start.elapsed(),
            Next::Wait(_) => {}
        }
    };
    assert!(ended >= Duration::from_millis(300), "{ended:?}");
    let end = d.end();
    let err = end.fatal.expect("the run failed").to_string();
    assert!(
        err.contains("paused for longer than smtp.patience"),
        "{err}"
    );
    assert_eq!(end.unsent, 1);
}
