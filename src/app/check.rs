//! `mailshot check JOB [--connect]`: every row rendered and validated,
//! nothing sent; with `--connect`, one session opened (RFC 8314 TLS or
//! RFC 3207 STARTTLS, RFC 4954 AUTH) and closed with QUIT.

use crate::cli::CheckArgs;
use crate::compose::message::Draft;
use crate::compose::prepare::prepare;
use crate::delivery::plan::{Plan, Route};
use crate::error::{Error, ExitCode, Result};
use crate::job::target::{self, Target};
use crate::job::validate::sender_rule::SenderCheck;
use crate::smtp::net::session::Session;
use crate::smtp::net::trace::Trace;

/// Jobs with more recipients than this and no List-Unsubscribe get a warning
/// (Gmail and Yahoo require one-click unsubscribe from bulk senders).
const BULK_WARNING: u64 = 300;

/// `mailshot check JOB [--connect]`.
pub fn check(args: &CheckArgs) -> Result<ExitCode> {
    let mut prepared = prepare(&args.job.job, &args.job.vars)?;
    prepared.limit_threads(args.threads);
    let tally = prepared.validate(None, true)?;
    // QQ, 163 and 126 send only as the login: every row's senders, before a run.
    if let Ok(target) = target::resolve(Some(&prepared.job), args.smtp.as_deref()) {
        let mut senders = SenderCheck::new(&prepared.job.path, &target);
        if senders.is_active() {
            prepared.validate_drafts(None, |d| see_senders(&mut senders, d))?;
            senders.finish()?;
        }
    }
    let (messages, dups) = (tally.messages, tally.duplicates);
    eprintln!(
        "{}: {messages} messages render cleanly{}{}",
        args.job.job.display(),
        if dups > 0 {
            format!(", {dups} duplicate rows will be skipped")
        } else {
            String::new()
        },
        if tally.suppressed > 0 {
            format!(
                ", {} suppressed addresses will not be sent to",
                tally.suppressed
            )
        } else {
            String::new()
        }
    );
    if prepared.job.list_unsubscribe.is_none() && messages > BULK_WARNING {
        eprintln!(
            "warning: {messages} recipients and no list_unsubscribe: bulk senders must offer \
             one-click unsubscribe (RFC 8058) or Gmail and Yahoo may reject or junk the mail"
        );
    }
    if let Some(signer) = &prepared.dkim {
        // The one thing a DKIM signer cannot check by itself is DNS.
        eprintln!(
            "dkim: {} signatures; publish this TXT record at {}:\n  {}",
            signer.algorithm(),
            signer.dns_name(),
            signer.dns_record()
        );
    }
    if args.connect {
        let target = target::resolve(Some(&prepared.job), args.smtp.as_deref())?;
        connect(&target, args.trace.as_deref())?;
    }
    Ok(ExitCode::Ok)
}

/// Shows `senders` the From address and envelope sender `draft` renders.
pub(crate) fn see_senders(senders: &mut SenderCheck, draft: &Draft) {
    senders.see(
        draft.row,
        draft.from.as_ref().map(|m| m.addr.as_str()),
        draft.return_path.as_deref(),
    );
}

/// `check --connect`: open one session (TLS, AUTH) to each relay and QUIT.
fn connect(target: &Target, trace: Option<&str>) -> Result<()> {
    let plan = Plan::open(target, super::open_trace(trace)?)?;
    if plan.mx.is_some() {
        return Err(Error::Usage(
            "check --connect opens one server's session; with smtp.mx each recipient \
             domain's MX hosts are looked up when `mailshot run` sends to it"
                .into(),
        ));
    }
    for (i, p) in plan.routes.iter().enumerate() {
        connect_route(p, plan.trace.clone(), i + 1)?;
    }
    Ok(())
}

/// Open one session to `p`'s first endpoint and QUIT.
fn connect_route(p: &Route, trace: Option<Trace>, id: usize) -> Result<()> {
    let mut session =
        Session::open(&p.endpoints[0], p.core.clone(), trace, id).map_err(|f| p.open_error(&f))?;
    let secure = session.client().is_tls();
    let caps = session
        .client()
        .capabilities()
        .map(|c| c.summary())
        .unwrap_or_default();
    session.quit();
    eprintln!(
        "{}: session ok ({}{}){}",
        p.server(),
        if secure { "TLS" } else { "no TLS" },
        if p.core.credentials.is_some() {
            ", authenticated"
        } else {
            ""
        },
        if caps.is_empty() {
            String::new()
        } else {
            format!("; server offers {caps}")
        }
    );
    Ok(())
}
