//! The sendmail queue (`queue: DIR`): a message that cannot go out now is
//! kept on disk and `sendmail` exits 0; `mailshot queue flush` delivers it,
//! removing it only once the server accepted it, never sending a recipient
//! the same message twice — also when a flush is killed with SIGKILL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{sendmail, setup};
use crate::support::cmd::{self, Output};
use crate::support::fault::{FaultServer, Message};
use crate::support::{free_port, TestDir};

/// Points the config at `port`, with the queue in `queue/` next to the config.
fn config(dir: &TestDir, port: u16) {
    dir.write(
        "xdg/mailshot/config.yaml",
        format!(
            "smtp:\n  url: \"smtp+plain://127.0.0.1:{port}\"\n  timeout: 5s\n  retry_delay: 50ms\nqueue: queue\n"
        ),
    );
}

fn queue(dir: &TestDir, args: &[&str]) -> Output {
    cmd::mailshot(dir.path(), ["queue"].iter().chain(args)).run()
}

/// The queued lines of `queue list` (not those set aside as uncertain).
fn queued(dir: &TestDir) -> Vec<String> {
    let out = queue(dir, &["list"]);
    out.expect_code(0);
    out.stdout
        .lines()
        .filter(|l| !l.contains("\tuncertain\t"))
        .map(str::to_string)
        .collect()
}

fn message_id(m: &Message) -> String {
    let p = mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap();
    p.message_id().unwrap().to_string()
}

#[test]
fn unreachable_server_queues_and_flush_delivers_once() {
    let dir = setup(0);
    config(&dir, free_port());
    let msg = b"From: cron@host.example\nTo: admin@y.example\nSubject: s\n\nbody\n";
    let out = sendmail(&dir, &["-t", "-i"], msg);
    out.expect_code(0);
    let list = queued(&dir);
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0].contains("to=admin@y.example"), "{list:?}");
    assert!(list[0].contains("attempts=1"), "{list:?}");

    let server = FaultServer::start();
    config(&dir, server.port());
    queue(&dir, &["flush"]).expect_code(0);
    let got = server.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "cron@host.example");
    assert_eq!(got[0].rcpts, ["admin@y.example"]);
    assert!(got[0].data.ends_with(b"\r\n\r\nbody\r\n"));
    assert!(queued(&dir).is_empty());
    // Nothing is left to send twice.
    queue(&dir, &["flush"]).expect_code(0);
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn a_4xx_recipient_stays_queued_and_the_accepted_one_is_not_sent_again() {
    let refuse = Arc::new(AtomicBool::new(true));
    let flag = refuse.clone();
    let server = FaultServer::builder()
        .rcpt_hook(move |addr, _| {
            (addr.starts_with("later") && flag.load(Ordering::SeqCst))
                .then(|| "451 4.2.0 mailbox busy".to_string())
        })
        .start();
    let dir = setup(0);
    config(&dir, server.port());
    let out = sendmail(
        &dir,
        &["ok@y.example", "later@y.example"],
        b"From: a@x.example\n\nb\n",
    );
    out.expect_code(0);
    assert_eq!(server.messages().len(), 1);
    assert_eq!(server.messages()[0].rcpts, ["ok@y.example"]);
    let list = queued(&dir);
    assert_eq!(list.len(), 1);
    assert!(list[0].contains("to=later@y.example\t"), "{list:?}");
    assert!(list[0].contains("451"), "{list:?}");

    // Backoff: a timer's flush --due leaves it alone for now.
    let out = queue(&dir, &["flush", "--due"]);
    out.expect_code(75);
    assert_eq!(server.connections(), 1);

    refuse.store(false, Ordering::SeqCst);
    queue(&dir, &["flush"]).expect_code(0);
    let got = server.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpts, ["later@y.example"]);
    assert_eq!(message_id(&got[0]), message_id(&got[1]));
    assert!(queued(&dir).is_empty());
}

#[test]
fn without_a_queue_list_and_flush_say_so() {
    let dir = setup(free_port());
    let out = queue(&dir, &["list"]);
    out.expect_code(64);
    assert!(out.stderr.contains("queue: DIR"), "{}", out.stderr);
}

#[test]
fn a_flush_killed_after_the_data_and_rerun_sends_each_message_once() {
    let dir = setup(0);
    config(&dir, free_port());
    for n in 1..=3 {
        sendmail(
            &dir,
            &[&format!("r{n}@y.example")],
            format!("From: a@x.example\nSubject: {n}\n\nb{n}\n").as_bytes(),
        )
        .expect_code(0);
    }
    assert_eq!(queued(&dir).len(), 3);
    // The server holds back its reply to the final dot: the flush is killed
    // while the first message's outcome is unknown.
    let server = FaultServer::builder()
        .data_end_delay(Duration::from_secs(5))
        .start();
    config(&dir, server.port());
    let running = cmd::mailshot(dir.path(), ["queue", "flush"]).spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.messages().is_empty() {
        assert!(Instant::now() < deadline, "the flush never sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.signal("KILL");
    let killed = running.finish();
    assert_eq!(killed.code, -1, "killed by the signal");
    assert_eq!(server.messages().len(), 1);

    let out = cmd::mailshot(dir.path(), ["queue", "flush"])
        .limit(Duration::from_secs(60))
        .run();
    out.expect_code(0);
    assert!(out.stderr.contains("uncertain"), "{}", out.stderr);
    let got = server.messages();
    let mut ids: Vec<String> = got.iter().map(message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(got.len(), 3, "each queued message sent once");
    assert_eq!(ids.len(), 3, "no message sent twice");
    assert!(queued(&dir).is_empty());
    let list = queue(&dir, &["list"]);
    assert_eq!(
        list.stdout.matches("\tuncertain\t").count(),
        1,
        "{}",
        list.stdout
    );
}

#[test]
fn the_sample_timer_runs_a_flush_that_delivers() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/sendmail/mailshot-queue.service"),
    )
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/bin/mailshot "))
        .expect("ExecStart runs mailshot");
    let args: Vec<&str> = exec.split_whitespace().collect();
    let dir = setup(0);
    config(&dir, free_port());
    sendmail(&dir, &["a@y.example"], b"From: a@x.example\n\nb\n").expect_code(0);
    // The queued message is not due yet; once it is, the timer's flush sends it.
    let server = FaultServer::start();
    config(&dir, server.port());
    let env = dir.join("xdg/mailshot/queue");
    for e in std::fs::read_dir(&env).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "env") {
            let text = std::fs::read_to_string(&p).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["next_try"] = 0.into();
            std::fs::write(&p, v.to_string()).unwrap();
        }
    }
    cmd::mailshot(dir.path(), &args).run().expect_code(0);
    assert_eq!(server.messages().len(), 1);
    assert!(queued(&dir).is_empty());
}

#[test]
fn an_8bit_message_a_server_cannot_take_is_not_queued_forever() {
    let server = FaultServer::builder().eight_bit(false).start();
    let dir = setup(0);
    config(&dir, server.port());
    let out = sendmail(
        &dir,
        &["a@y.example"],
        "From: a@x.example\n\nGrüße\n".as_bytes(),
    );
    out.expect_code(67);
    assert!(out.stderr.contains("8BITMIME"), "{}", out.stderr);
    assert!(queued(&dir).is_empty(), "{:?}", queued(&dir));
    assert!(server.messages().is_empty());
}
