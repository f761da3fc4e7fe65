//! `mailshot send`: one message, mailx-style, body from stdin; Bcc goes in the
//! envelope only.

use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::address::parse_mailbox_list;
use crate::address::Mailbox;
use crate::cli::SendArgs;
use crate::compose::message::{Attachment, Draft};
use crate::compose::mime::{self, MimeOptions};
use crate::compose::prepare::date_now;
use crate::delivery::dispatch::Work;
use crate::delivery::ledger::Ledger;
use crate::delivery::outcome::{Outcome, Status};
use crate::delivery::plan::Plan;
use crate::delivery::worker::deliver;
use crate::error::{Error, ExitCode, Result};
use crate::job::manifest::DEFAULT_MAX_ATTACHMENT_SIZE;
use crate::job::target::{self, Target};

/// Keeps the one outcome in memory; `send` has no journal.
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

fn addresses(values: &[String], flag: &str) -> Result<Vec<Mailbox>> {
    let mut out = Vec::new();
    for v in values {
        out.extend(parse_mailbox_list(v).map_err(|e| Error::Usage(format!("--{flag}: {e}")))?);
    }
    Ok(out)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::no_input(path, &e))
}

/// Build the draft from the arguments and stdin.
fn draft(args: &SendArgs, default_from: Option<&str>) -> Result<Draft> {
    let from = match (&args.from, default_from) {
        (Some(f), _) => f.clone(),
        (None, Some(user)) => user.to_string(),
        (None, None) => {
            return Err(Error::Usage(
                "no sender: pass --from ADDR (or set smtp.username in the config)".into(),
            ))
        }
    };
    let from = addresses(&[from], "from")?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Usage("--from is empty".into()))?;
    if args.subject.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Error::Usage(
            "--subject must be one line (no CR, LF or control characters)".into(),
        ));
    }
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| Error::NoInput {
            path: "<stdin>".into(),
            message: e.to_string(),
        })?;
    let text = String::from_utf8(body).map_err(|_| Error::NoInput {
        path: "<stdin>".into(),
        message: "the message body is not valid UTF-8".into(),
    })?;
    let html = match &args.html {
        Some(p) => Some(
            String::from_utf8(read_file(p)?).map_err(|_| Error::NoInput {
                path: p.clone(),
                message: "not valid UTF-8".into(),
            })?,
        ),
        None => None,
    };
    let mut attachments = Vec::new();
    for p in &args.attach {
        let data = crate::compose::render::read_capped(p, DEFAULT_MAX_ATTACHMENT_SIZE)
            .map_err(|e| Error::no_input(p, &e))?;
        attachments.push(Attachment::from_file(p, None, Arc::new(data.into())));
    }
    let to = addresses(&args.to, "to")?;
    Ok(Draft {
        row: 1,
        email: to.first().map(|m| m.addr.clone()).unwrap_or_default(),
        from: Some(from),
        to,
        cc: addresses(&args.cc, "cc")?,
        bcc: addresses(&args.bcc, "bcc")?,
        subject: args.subject.clone(),
        text: Some(text),
        html,
        attachments,
        ..Default::default()
    })
}

/// Warn about each recipient in the user config's suppression list and,
/// with `skip`, leave it out. Returns whether anyone is left to send to.
fn heed_suppression(draft: &mut Draft, skip: bool) -> Result<bool> {
    let files = crate::job::validate::user_config::load_user_suppress()?;
    if files.is_empty() {
        return Ok(true);
    }
    let list = crate::suppression::Suppression::load(&files)?;
    let mut keep = |m: &Mailbox| {
        if !list.contains(&m.addr) {
            return true;
        }
        if skip {
            eprintln!("warning: {} is in the suppression list; left out", m.addr);
        } else {
            eprintln!(
                "warning: {} is in the suppression list; sending anyway \
                 (--skip-suppressed leaves it out)",
                m.addr
            );
        }
        !skip
    };
    draft.to.retain(&mut keep);
    draft.cc.retain(&mut keep);
    draft.bcc.retain(&mut keep);
    Ok(!(draft.to.is_empty() && draft.cc.is_empty() && draft.bcc.is_empty()))
}

/// `mailshot send`.
pub fn send(args: &SendArgs) -> Result<ExitCode> {
    let target = if args.dry_run {
        target::resolve(None, args.smtp.as_deref()).ok()
    } else {
        Some(target::resolve(None, args.smtp.as_deref())?)
    };
    let default_from = match &target {
        Some(Target::Smtp(s)) => s.username.clone(),
        _ => None,
    };
    let mut draft = draft(args, default_from.as_deref())?;
    if !heed_suppression(&mut draft, args.skip_suppressed)? {
        eprintln!("nothing sent: every recipient is in the suppression list");
        return Ok(ExitCode::Ok);
    }
    let from = draft.from.clone().expect("set above");
    let run_id = format!("{:016x}", fastrand::u64(..));
    let out = mime::compose(
        &draft,
        &MimeOptions {
            date: date_now(),
            message_id: mime::message_id(&run_id, 1, &from),
        },
    );
    let out = match crate::compose::dkim::for_job(crate::job::load_dkim()?.as_ref())? {
        Some(signer) => signer.sign(&out, date_now()),
        None => out,
    };
    if args.dry_run {
        super::preview::write_stdout(&out.data.contiguous())?;
        return Ok(ExitCode::Ok);
    }
    let target = target.expect("resolved above");
    let mut plan = Plan::open(&target, super::open_trace(args.trace.as_deref())?)?;
    plan.set_sessions(1);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    tx.send(Work::new(out, 0)).expect("receiver alive");
    drop(tx);
    let ledger = OneShot::default();
    let end = deliver(&plan, rx, &ledger, Arc::new(AtomicBool::new(false)));
    if let Some(err) = end.fatal {
        return Err(err);
    }
    let outcomes = ledger.0.into_inner().unwrap();
    let Some(o) = outcomes.first() else {
        return Err(Error::TempFail(
            "the message was not sent; try again".into(),
        ));
    };
    let code = o.code.map(|c| format!("{c} ")).unwrap_or_default();
    match o.status {
        Status::Sent => {
            eprintln!("sent: {code}{}", o.reply);
            Ok(ExitCode::Ok)
        }
        Status::Rejected => {
            eprintln!("rejected: {code}{}", o.reply);
            Ok(ExitCode::Rejected)
        }
        other => {
            eprintln!("{other}: {code}{}", o.reply);
            Ok(ExitCode::TempFail)
        }
    }
}
