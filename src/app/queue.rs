//! `mailshot queue list|flush`: what waits in the sendmail queue, and
//! delivering it (by hand, or every minute from a timer with `--due`).

use crate::cli::QueueCommand;
use crate::error::{Error, ExitCode, Result};
use crate::queue::flush::{deliver_entry, Fate};
use crate::queue::{now, Queue};

/// The configured queue, opened.
pub fn configured() -> Result<Option<Queue>> {
    let Some(dir) = crate::job::load_queue_dir()? else {
        return Ok(None);
    };
    Queue::open(&dir)
        .map(Some)
        .map_err(|e| crate::outputs::error("queue", &dir, &e))
}

/// Print what a delivery did to one entry.
pub fn report(id: &str, fate: &Fate) {
    match fate {
        Fate::Delivered => eprintln!("{id}: delivered"),
        Fate::Queued(why) => eprintln!("{id}: still queued: {why}"),
        Fate::Rejected(refused) => {
            for (rcpt, reply) in refused {
                eprintln!("{id}: rejected for {rcpt}: {reply}");
            }
        }
        Fate::Uncertain => eprintln!(
            "{id}: the connection ended after the message was sent, so it may have \
             arrived; kept in uncertain/ and not sent again"
        ),
        Fate::Busy => {}
    }
}

/// `mailshot queue ...`.
pub fn queue(cmd: &QueueCommand) -> Result<ExitCode> {
    let q = configured()?.ok_or_else(|| {
        Error::Usage("no queue configured: add `queue: DIR` to the config".into())
    })?;
    let io = |e: std::io::Error| Error::Output(format!("queue {}: {e}", q.dir().display()));
    match cmd {
        QueueCommand::List => {
            for e in q.entries().map_err(io)? {
                let m = &e.meta;
                println!(
                    "{}\tattempts={}\tnext_try_in={}s\tfrom={}\tto={}\t{}",
                    e.id,
                    m.attempts,
                    m.next_try.saturating_sub(now()),
                    m.mail_from,
                    m.rcpts.join(","),
                    m.last_error
                );
            }
            for e in q.set_aside("uncertain").map_err(io)? {
                println!(
                    "{}\tuncertain\tfrom={}\tto={}",
                    e.id,
                    e.meta.mail_from,
                    e.meta.rcpts.join(",")
                );
            }
            Ok(ExitCode::Ok)
        }
        QueueCommand::Flush { due, trace } => {
            let mut left = 0;
            let mut rejected = false;
            for e in q.entries().map_err(io)? {
                if *due && e.meta.next_try > now() {
                    left += 1;
                    continue;
                }
                let fate = deliver_entry(&q, &e.id, super::open_trace(trace.as_deref())?)?;
                report(&e.id, &fate);
                match fate {
                    Fate::Queued(_) => left += 1,
                    Fate::Rejected(_) => rejected = true,
                    _ => {}
                }
            }
            Ok(if left > 0 {
                ExitCode::TempFail
            } else if rejected {
                ExitCode::Rejected
            } else {
                ExitCode::Ok
            })
        }
    }
}
