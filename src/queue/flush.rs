//! Delivering queue entries: one at a time, each under its own lock (so a
//! flush, a second flush and a fresh `sendmail` never send the same entry
//! twice), removed only after the server accepted it.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::ledger::EntryLedger;
use super::{backoff, now, Entry, Queue};
use crate::compose::message::{Envelope, Outgoing};
use crate::delivery::dispatch::Work;
use crate::delivery::outcome::Status;
use crate::delivery::plan::Plan;
use crate::delivery::worker::deliver;
use crate::error::{Error, Result};
use crate::job::{self, target};
use crate::smtp::net::trace::Trace;

/// What became of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Every recipient accepted it; it left the queue.
    Delivered,
    /// Some recipients are left for a later try (the reason).
    Queued(String),
    /// Refused for good (recipient and reply, each); moved to `failed/`
    /// unless other recipients are still queued.
    Rejected(Vec<(String, String)>),
    /// It may have been delivered (the connection ended after the data);
    /// moved to `uncertain/`, not sent again.
    Uncertain,
    /// Another process holds it (or it is gone): left alone.
    Busy,
}

/// Take entry `id`'s lock without waiting; `None` if another process has it.
fn try_lock(queue: &Queue, id: &str) -> Option<File> {
    let f = File::open(queue.dir().join(format!("{id}.msg"))).ok()?;
    // SAFETY: flock on a descriptor we own.
    let ok = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    ok.then_some(f)
}

fn io_error(queue: &Queue, e: std::io::Error) -> Error {
    Error::Output(format!("queue {}: {e}", queue.dir().display()))
}

/// Deliver entry `id` now.
pub fn deliver_entry(queue: &Queue, id: &str, trace: Option<Trace>) -> Result<Fate> {
    let Some(_lock) = try_lock(queue, id) else {
        return Ok(Fate::Busy);
    };
    // Read the state under the lock: another process may have moved on.
    let Some(Entry { meta, .. }) = queue
        .entries()
        .map_err(|e| io_error(queue, e))?
        .into_iter()
        .find(|e| e.id == id)
    else {
        return Ok(Fate::Busy);
    };
    if queue.has_mark(id, "committing") {
        // A flush ended (killed) after the data had gone: it may have arrived.
        queue
            .move_to(id, "uncertain")
            .map_err(|e| io_error(queue, e))?;
        return Ok(Fate::Uncertain);
    }
    queue.clear_marks(id).map_err(|e| io_error(queue, e))?;
    let data = queue.message(id).map_err(|e| io_error(queue, e))?;
    let account = job::load_account(meta.account.as_deref(), meta.sender.as_deref())?;
    let target = target::for_account(account, meta.smtp.as_deref())?;
    let out = Outgoing {
        row: 1,
        email: meta.rcpts.first().cloned().unwrap_or_default(),
        message_id: meta.message_id.clone(),
        envelope: Envelope {
            mail_from: meta.mail_from.clone(),
            rcpt_to: meta.rcpts.clone(),
        },
        data: Arc::new(data.into()),
        eight_bit: meta.eight_bit,
        smtputf8: meta.smtputf8,
    };
    let mut plan = Plan::open(&target, trace)?;
    plan.set_sessions(1);
    // The queue is the retry: one try now, the next one after the backoff.
    plan.retry.max_attempts = 1;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    tx.send(Work::new(out, 0)).expect("receiver alive");
    drop(tx);
    let ledger = EntryLedger::new(queue, id, meta);
    let end = deliver(&plan, rx, &ledger, Arc::new(AtomicBool::new(false)));
    let state = ledger.state.into_inner().unwrap();
    let mut meta = state.meta.expect("kept");
    if matches!(&state.outcome, Some(o) if o.status == Status::Uncertain) {
        queue
            .move_to(id, "uncertain")
            .map_err(|e| io_error(queue, e))?;
        return Ok(Fate::Uncertain);
    }
    if let Some(o) = state
        .outcome
        .as_ref()
        .filter(|o| o.status == Status::Rejected)
    {
        if state.refused.is_empty() {
            // The message itself was refused for good (not one recipient):
            // e.g. 8-bit content for a server without 8BITMIME, or too big.
            let code = o.code.map(|c| format!("{c} ")).unwrap_or_default();
            let why = format!("{code}{}", o.reply);
            let refused = meta
                .rcpts
                .iter()
                .map(|r| (r.clone(), why.clone()))
                .collect();
            queue
                .move_to(id, "failed")
                .map_err(|e| io_error(queue, e))?;
            return Ok(Fate::Rejected(refused));
        }
    }
    if meta.rcpts.is_empty() {
        if state.refused.is_empty() {
            queue.remove(id).map_err(|e| io_error(queue, e))?;
            return Ok(Fate::Delivered);
        }
        queue
            .move_to(id, "failed")
            .map_err(|e| io_error(queue, e))?;
        return Ok(Fate::Rejected(state.refused));
    }
    let reason = match (&end.fatal, &state.outcome) {
        (Some(err), _) => err.to_string(),
        (None, Some(o)) => {
            let code = o.code.map(|c| format!("{c} ")).unwrap_or_default();
            format!("{code}{}", o.reply)
        }
        (None, None) => "not sent".into(),
    };
    meta.attempts += 1;
    meta.next_try = now() + backoff(meta.attempts).as_secs();
    meta.last_error = reason.clone();
    queue
        .write_meta(id, &meta)
        .map_err(|e| io_error(queue, e))?;
    queue.clear_marks(id).map_err(|e| io_error(queue, e))?;
    if !state.refused.is_empty() {
        return Ok(Fate::Rejected(state.refused));
    }
    Ok(Fate::Queued(reason))
}
