//! Pace on loopback: a server that writes the reply to each pipelined
//! command on its own, with Nagle's algorithm on (Haraka does both), holds
//! every reply after the first of a group until the client acknowledges
//! that first one. A client that delays its acknowledgements (as TCP stacks
//! do, about 40 ms) then waits that long once per message, whatever the
//! round-trip time. Here one session sends a run of small messages to a real
//! server on loopback, where each message otherwise takes a millisecond or
//! two; the bound leaves room for a slow machine and still fails by a wide
//! margin when every message waits for a delayed acknowledgement.

use std::time::Duration;

use super::job::{copies_after, PASSWORD, USER};
use super::servers::Server;
use crate::support::cmd::mailshot;
use crate::support::report::read_report;
use crate::support::TestDir;

/// Messages in the run.
const MESSAGES: usize = 300;
/// The whole run (start-up, TLS, AUTH and all messages) must end within
/// this. One delayed acknowledgement per message alone would take
/// `MESSAGES` × 40 ms = 12 s (14 s when measured); without it the run takes
/// under a second, so the bound leaves room for a loaded machine.
const BOUND: Duration = Duration::from_millis(6000);

/// `MESSAGES` one-recipient messages over one STARTTLS session: every row
/// is `sent`, the server stored each message once, and the run ends within
/// [`BOUND`].
pub fn one_session_keeps_pace<S: Server>() {
    let server = S::start(USER, PASSWORD);
    let dir = TestDir::new();
    let mut csv = String::from("email,name\n");
    for i in 1..=MESSAGES {
        csv.push_str(&format!("pace{i}@pace.example.test,Name {i}\n"));
    }
    dir.write("recipients.csv", csv);
    dir.write("body.txt", "Dear {{ name }},\nthis is your note.\n");
    dir.write(
        "job.yaml",
        format!(
            "smtp: {{ url: \"smtp://127.0.0.1:{port}\", ca_file: \"{ca}\", \
             username: \"{USER}\", password_env: INTEROP_PW, timeout: 10s }}\n\
             from: \"Sender <{USER}>\"\n\
             to: \"{{{{ name }}}} <{{{{ email }}}}>\"\n\
             subject: \"Note for {{{{ name }}}}\"\n\
             text: body.txt\n\
             recipients: {{ file: recipients.csv }}\n",
            port = server.starttls_port(),
            ca = server.ca_file().display(),
        ),
    );
    let run = mailshot(
        dir.path(),
        ["run", "job.yaml", "--sessions", "1", "--quiet"],
    )
    .env("INTEROP_PW", PASSWORD)
    .limit(Duration::from_secs(60))
    .run();
    assert_eq!(run.code, 0, "{}: {}", S::NAME, run.stderr);
    let report = read_report(&dir.join("job.report.csv"));
    assert_eq!(report.len(), MESSAGES, "{}", S::NAME);
    assert!(
        report.iter().all(|r| r.status == "sent"),
        "{}: {report:?}",
        S::NAME
    );
    let (_, got) = copies_after(&server, MESSAGES);
    assert_eq!(got.len(), MESSAGES, "{}: {got:?}", S::NAME);
    assert!(got.values().all(|&n| n == 1), "{}: {got:?}", S::NAME);
    eprintln!(
        "{}: {MESSAGES} messages over one session in {:.2} s",
        S::NAME,
        run.elapsed.as_secs_f64()
    );
    assert!(
        run.elapsed < BOUND,
        "{}: {MESSAGES} messages over one session took {:.2} s (bound {:.2} s): \
         each message waits for a delayed acknowledgement",
        S::NAME,
        run.elapsed.as_secs_f64(),
        BOUND.as_secs_f64()
    );
}
