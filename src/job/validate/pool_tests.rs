//! `smtp.relays` and `domains:`: what a relay inherits from the enclosing
//! section, and each problem reported at its own item.

use std::time::Duration;

use super::*;
use crate::job::{PasswordSource, Rate, Security};

fn job(extra: &str) -> Result<Job> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body.txt"), "Hi").unwrap();
    std::fs::write(dir.path().join("list.csv"), "email\na@example.com\n").unwrap();
    let path = dir.path().join("job.yaml");
    std::fs::write(
        &path,
        format!(
            "from: Me <me@example.com>\nsubject: Hello\ntext: body.txt\n\
             recipients:\n  file: list.csv\n{extra}\n"
        ),
    )
    .unwrap();
    load(&path, &[])
}

#[test]
fn relays_inherit_what_they_leave_unset_but_never_half_a_server_or_an_account() {
    let j = job("smtp:\n  username: me@example.com\n  password_env: PW\n  sessions: 3\n  \
                 rate: 10/s\n  patience: 2m\n  relays:\n    \
                 - host: a.example.com\n    \
                 - url: smtps://other%40example.com@b.example.com\n      \
                 password_env: OTHER\n      sessions: 1\n      daily_limit: 500\n      name: backup")
    .unwrap();
    let s = j.smtp.unwrap();
    assert_eq!(s.patience, Duration::from_secs(120));
    let [a, b] = &s.relays[..] else {
        panic!("{:?}", s.relays)
    };
    assert_eq!(
        (a.host.as_str(), a.port, a.security),
        ("a.example.com", 587, Security::StartTls)
    );
    assert_eq!(a.username.as_deref(), Some("me@example.com"));
    assert_eq!(a.password, PasswordSource::Env("PW".into()));
    assert_eq!((a.sessions, a.daily_limit), (3, None));
    assert_eq!(a.relay_name(), "a.example.com:587");
    let per = Duration::from_secs(1);
    assert_eq!(a.rate, Some(Rate { count: 10, per }));
    assert_eq!(b.username.as_deref(), Some("other@example.com"));
    assert_eq!(b.password, PasswordSource::Env("OTHER".into()));
    assert_eq!((b.sessions, b.daily_limit), (1, Some(500)));
    assert_eq!(b.relay_name(), "backup");
    assert_eq!(b.rate, a.rate);
}

#[test]
fn a_problem_in_one_relay_is_reported_at_that_item() {
    let err = job(
        "smtp:\n  relays:\n    - host: a.example.com\n    - host: b.example.com\n      \
                   daily_limit: 0\n    - name: x\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("job.yaml:10:7: daily_limit must be at least 1"),
        "{err}"
    );
    assert!(
        err.contains("job.yaml:11:7: the smtp section needs `url`"),
        "{err}"
    );
}

#[test]
fn two_relays_may_not_share_a_name_and_an_empty_pool_is_refused() {
    let err = job("smtp:\n  relays:\n    - host: a.example.com\n    - host: a.example.com\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("two relays are named \"a.example.com:587\""),
        "{err}"
    );
    let err = job("smtp:\n  relays: []\n").unwrap_err().to_string();
    assert!(
        err.contains("relays must list at least one server"),
        "{err}"
    );
}

#[test]
fn domains_take_a_rate_and_sessions_per_domain_and_star() {
    let j =
        job("domains:\n  QQ.com: { rate: 30/min, sessions: 1 }\n  \"*\": { rate: 50/s }").unwrap();
    assert_eq!(j.domains.len(), 2);
    assert_eq!(j.domains[0].0, "qq.com");
    assert_eq!(j.domains[0].1.sessions, Some(1));
    assert_eq!(j.domains[1].0, "*");
    let err = job("domains:\n  localhost: { rate: 1/s }\n  example.com: {}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"localhost\" is not a domain"), "{err}");
    assert!(err.contains("give a rate, sessions or both"), "{err}");
}
