//! `mailshot sendmail` (also the program run under the name `sendmail`):
//! one message from stdin, submitted through the configured server, with
//! sendmail's exit statuses (75 when it could not go out now, so the caller
//! keeps it and retries).

use std::ffi::OsString;
use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::cli::sendmail::{self as flags, SendmailArgs};
use crate::compose::message::Outgoing;
use crate::compose::prepare::date_now;
use crate::compose::submitted::{self, Submission};
use crate::delivery::dispatch::Work;
use crate::delivery::ledger::Ledger;
use crate::delivery::outcome::{Outcome, Status};
use crate::delivery::plan::Plan;
use crate::delivery::worker::deliver;
use crate::error::{Error, ExitCode, Location, Result};
use crate::job::target::{self, Target};
use crate::queue::flush::{deliver_entry, Fate};
use crate::queue::{now, Meta, Queue};

/// Keeps the one outcome in memory.
#[derive(Default)]
struct OneShot(Mutex<Vec<Outcome>>);

impl Ledger for OneShot {
    fn inflight(&self, _batch: &[(u64, &str, u32)]) -> std::io::Result<()> {
        Ok(())
    }
    fn settled(&self, batch: &[Outcome]) -> std::io::Result<()> {
        self.0.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
}

/// `mailshot sendmail ARGS`, the program name not included.
pub fn sendmail(raw: &[OsString]) -> Result<ExitCode> {
    let args = flags::parse(raw).map_err(Error::Usage)?;
    let cap = crate::job::load_max_message_size()?;
    let data = read_stdin(&args, cap)?;
    let sender = args
        .envelope_from
        .clone()
        .or_else(|| submitted::header_from(&data));
    let account = crate::job::load_account(args.account.as_deref(), sender.as_deref())?;
    let target = target::for_account(account, args.smtp.as_deref())?;
    let configured_from = match crate::job::load_default_from()? {
        Some(f) => Some(
            crate::address::parse_mailbox_list(&f)
                .ok()
                .and_then(|l| l.into_iter().next())
                .ok_or_else(|| {
                    Error::Usage(format!("from: {f:?} in the config is not an address"))
                })?,
        ),
        None => None,
    };
    let default_from = match (&configured_from, &target) {
        (Some(m), _) => Some(m.addr.clone()),
        (None, Target::Smtp(s)) => s.username.clone().filter(|u| u.contains('@')),
        (None, Target::Capture(_)) => None,
    };
    let full_name = args
        .full_name
        .clone()
        .or_else(|| configured_from.and_then(|m| m.name));
    let out = submitted::submit(
        &data,
        &Submission {
            read_recipients: args.read_recipients,
            recipients: args.recipients.clone(),
            envelope_from: args.envelope_from.clone(),
            full_name,
            default_from,
            date: date_now(),
            run_id: format!("{:016x}", fastrand::u64(..)),
        },
    )?;
    // Signed as it goes out, so the signature covers the headers added above.
    let out = match crate::compose::dkim::for_job(crate::job::load_dkim()?.as_ref())? {
        Some(signer) => signer.sign(&out, date_now()),
        None => out,
    };
    let trace = super::open_trace(args.verbose.then_some("-"))?;
    if let Some(queue) = super::queue::configured()? {
        return through_queue(&queue, &args, sender, out, trace);
    }
    let mut plan = Plan::open(&target, trace)?;
    plan.set_sessions(1);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    tx.send(Work::new(out, 0)).expect("receiver alive");
    drop(tx);
    let ledger = OneShot::default();
    let end = deliver(&plan, rx, &ledger, Arc::new(AtomicBool::new(false)));
    if let Some(err) = end.fatal {
        // A server that cannot be reached now is a reason to try later:
        // sendmail callers keep the message when they see 75.
        return match err {
            Error::Unavailable(msg) => Err(Error::TempFail(format!(
                "{msg}; the message was not sent (try again later)"
            ))),
            other => Err(other),
        };
    }
    let outcomes = ledger.0.into_inner().unwrap();
    let Some(o) = outcomes.first() else {
        return Err(Error::TempFail(
            "the message was not sent; try again later".into(),
        ));
    };
    let code = o.code.map(|c| format!("{c} ")).unwrap_or_default();
    match o.status {
        // Silent on success, as sendmail is: cron mails whatever it prints.
        Status::Sent => Ok(ExitCode::Ok),
        Status::Rejected => {
            eprintln!("mailshot: rejected: {code}{}", o.reply);
            Ok(ExitCode::Rejected)
        }
        other => {
            eprintln!("mailshot: {other}: {code}{}", o.reply);
            Ok(ExitCode::TempFail)
        }
    }
}

/// With a queue: store the message durably first, then try it once now.
/// Queued counts as done (exit 0), as for sendmail itself.
fn through_queue(
    queue: &Queue,
    args: &SendmailArgs,
    sender: Option<String>,
    out: Outgoing,
    trace: Option<crate::smtp::net::trace::Trace>,
) -> Result<ExitCode> {
    let t = now();
    let meta = Meta {
        mail_from: out.envelope.mail_from.clone(),
        rcpts: out.envelope.rcpt_to.clone(),
        message_id: out.message_id.clone(),
        eight_bit: out.eight_bit,
        smtputf8: out.smtputf8,
        account: args.account.clone(),
        sender,
        smtp: args.smtp.clone(),
        attempts: 0,
        queued: t,
        next_try: t,
        last_error: String::new(),
    };
    let id = queue
        .enqueue(&out.data.contiguous(), &meta)
        .map_err(|e| crate::outputs::error("queue", queue.dir(), &e))?;
    match deliver_entry(queue, &id, trace) {
        Ok(Fate::Rejected(refused)) => {
            super::queue::report(&id, &Fate::Rejected(refused));
            Ok(ExitCode::Rejected)
        }
        Ok(fate @ Fate::Uncertain) => {
            super::queue::report(&id, &fate);
            Ok(ExitCode::Ok)
        }
        Ok(_) => Ok(ExitCode::Ok),
        Err(e) => {
            eprintln!("mailshot: queued as {id}, not sent now: {e}");
            Ok(ExitCode::Ok)
        }
    }
}

/// The message from stdin, reading at most `cap` bytes and one more: a
/// larger message is refused (EX_DATAERR, 65, as sendmail refuses a message
/// over its MaxMessageSize) without the rest being read.
fn read_stdin(args: &SendmailArgs, cap: u64) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    std::io::stdin()
        .lock()
        .take(cap.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| Error::NoInput {
            path: "<stdin>".into(),
            message: e.to_string(),
        })?;
    if raw.len() as u64 > cap {
        return Err(Error::invalid(
            Location::file("<stdin>"),
            format!(
                "the message is larger than max_message_size ({cap} bytes); \
                 nothing was sent"
            ),
        ));
    }
    Ok(submitted::normalise(&raw, args.ignore_dots))
}
