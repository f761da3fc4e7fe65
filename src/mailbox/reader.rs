//! One visit to the bounce mailbox: log in over IMAP or POP3 (through
//! [`super::net`]), fetch the messages not read before, hand them to the
//! caller, who records them durably, then keep, delete or move what was
//! recorded, and log out.
//!
//! IMAP reads `folder` with `UID SEARCH` above the highest UID remembered
//! for its UIDVALIDITY and `UID FETCH BODY.PEEK[]` (nothing is marked
//! `\Seen`); POP3 lists `UIDL` and `RETR`s the unknown ones. Deletions over
//! POP3 take effect at QUIT (RFC 1939 §6), after the caller's records.
//!
//! With `after: delete` or `move:`, messages read and recorded by an
//! earlier visit that are still there (that visit stopped before the server
//! committed the removal) are removed too, without being handed over again:
//! IMAP then searches every UID of the folder, not only those above the
//! highest one read.

use super::net::{Connection, NetFailure};
use super::seen::{MessageKey, Seen};
use super::{imap, pop3};
use crate::error::{Error, Result};
use crate::job::bounces::{After, BounceSettings, MailboxAuth, Protocol};
use crate::job::Security;
use crate::smtp::client::{Credentials, TlsMode};
use crate::smtp::net::session::Endpoint;
use crate::smtp::net::tls;
use crate::smtp::net::trace::Trace;

/// A message fetched from the mailbox.
#[derive(Debug, Clone)]
pub struct Received {
    /// Where it was read.
    pub key: MessageKey,
    /// The raw RFC 5322 message.
    pub data: Vec<u8>,
}

/// What the visit did besides fetching.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Visit {
    /// Messages fetched.
    pub fetched: usize,
    /// Messages deleted or moved after they were recorded.
    pub removed: usize,
    /// Messages recorded by an earlier visit, still in the mailbox, and
    /// deleted or moved now.
    pub leftovers: usize,
}

/// Fetches the unread messages of the mailbox, passes them to `record`,
/// and applies `after` to the keys `record` returns.
pub fn visit(
    settings: &BounceSettings,
    secret: &str,
    seen: &Seen,
    after: &After,
    trace: Option<Trace>,
    record: impl FnOnce(Vec<Received>) -> Result<Vec<MessageKey>>,
) -> Result<Visit> {
    let endpoint = Endpoint {
        host: settings.host.clone(),
        address: None,
        port: settings.port,
        implicit_tls: settings.security == Security::Tls,
        tls: match settings.security {
            Security::None => tls::plain_text_config()?,
            _ => tls::client_config(settings.ca_file.as_deref())?,
        },
        connect_timeout: settings.timeout,
    };
    let mode = match settings.security {
        Security::Tls => TlsMode::Implicit,
        Security::StartTls => TlsMode::StartTls,
        Security::None => TlsMode::None,
    };
    let credentials = Credentials {
        username: settings.username.clone(),
        secret: secret.to_string(),
        mechanism: settings.auth.and_then(|a| a.mechanism()),
    };
    let plain = settings.security == Security::None;
    match settings.protocol {
        Protocol::Imap => {
            let mut config = imap::client::SessionConfig::new(mode, credentials);
            config.timeout = settings.timeout;
            config.allow_plaintext_auth = plain;
            let core = imap::client::Client::new(config);
            let conn = Connection::open(&endpoint, core, trace).map_err(|e| net(settings, e))?;
            imap_visit(conn, settings, seen, after, record)
        }
        Protocol::Pop3 => {
            let mut config = pop3::client::SessionConfig::new(mode, credentials);
            config.timeout = settings.timeout;
            config.allow_plaintext_auth = plain;
            config.user_pass = settings.auth == Some(MailboxAuth::User);
            let core = pop3::client::Client::new(config);
            let conn = Connection::open(&endpoint, core, trace).map_err(|e| net(settings, e))?;
            pop3_visit(conn, settings, seen, after, record)
        }
    }
}

fn net(settings: &BounceSettings, e: NetFailure) -> Error {
    Error::Unavailable(format!("mailbox {}:{}: {e}", settings.host, settings.port))
}

fn imap_closed(settings: &BounceSettings, reason: imap::client::CloseReason) -> Error {
    use imap::client::{CloseReason, SessionError};
    let text = format!(
        "mailbox {}:{}: {}",
        settings.host,
        settings.port,
        match &reason {
            CloseReason::Logout => "the IMAP session ended early".to_string(),
            CloseReason::Error(e) => e.to_string(),
        }
    );
    match reason {
        CloseReason::Error(SessionError::AuthFailed(_)) => Error::Auth(text),
        CloseReason::Error(SessionError::ConnectionLost) => Error::TempFail(text),
        _ => Error::Unavailable(text),
    }
}

fn pop3_closed(settings: &BounceSettings, reason: pop3::client::CloseReason) -> Error {
    use pop3::client::{CloseReason, SessionError};
    let text = format!(
        "mailbox {}:{}: {}",
        settings.host,
        settings.port,
        match &reason {
            CloseReason::Quit => "the POP3 session ended early".to_string(),
            CloseReason::Error(e) => e.to_string(),
        }
    );
    match reason {
        CloseReason::Error(e) if e.is_temporary() => Error::TempFail(text),
        CloseReason::Error(SessionError::AuthFailed(_)) => Error::Auth(text),
        _ => Error::Unavailable(text),
    }
}

fn refused(settings: &BounceSettings, command: &str, text: &str) -> Error {
    Error::Unavailable(format!(
        "mailbox {}:{}: the server refused {command}: {text}",
        settings.host, settings.port
    ))
}

fn imap_visit(
    mut conn: Connection<imap::client::Client>,
    settings: &BounceSettings,
    seen: &Seen,
    after: &After,
    record: impl FnOnce(Vec<Received>) -> Result<Vec<MessageKey>>,
) -> Result<Visit> {
    use imap::client::Event;
    let next = |conn: &mut Connection<imap::client::Client>| -> Result<Event> {
        match conn.next_event().map_err(|e| net(settings, e))? {
            Event::Closed(reason) => Err(imap_closed(settings, reason)),
            Event::Refused { command, text } => Err(refused(settings, &command, &text)),
            ev => Ok(ev),
        }
    };
    next(&mut conn)?; // Ready
    conn.core().select(&settings.folder);
    let selected = match next(&mut conn)? {
        Event::Selected(s) => s,
        other => return Err(unexpected(&other)),
    };
    let validity = selected.uid_validity.unwrap_or(0);
    let scope = Seen::scope(
        &settings.host,
        settings.port,
        &settings.username,
        &settings.folder,
    );
    let clean_up = *after != After::Keep;
    let mut uids = Vec::new();
    if selected.exists > 0 {
        // Removing leftovers needs the UIDs below the highest one read too.
        let from = if clean_up {
            0
        } else {
            seen.max_uid(&scope, validity)
        };
        conn.core().search_after(from);
        match next(&mut conn)? {
            Event::Uids(u) => uids = u,
            other => return Err(unexpected(&other)),
        }
    }
    let (leftovers, uids): (Vec<u32>, Vec<u32>) = uids
        .into_iter()
        .partition(|&u| seen.has(&MessageKey::Imap(scope.clone(), validity, u)));
    let mut received = Vec::with_capacity(uids.len());
    if !uids.is_empty() {
        conn.core().fetch(&uids);
        loop {
            match next(&mut conn)? {
                Event::Message { uid, data } => received.push(Received {
                    key: MessageKey::Imap(scope.clone(), validity, uid),
                    data,
                }),
                Event::Fetched => break,
                other => return Err(unexpected(&other)),
            }
        }
    }
    let mut visit = Visit {
        fetched: received.len(),
        ..Visit::default()
    };
    let done = record(received)?;
    let done: Vec<u32> = done
        .iter()
        .filter_map(|k| match k {
            MessageKey::Imap(_, _, uid) => Some(*uid),
            MessageKey::Pop3(..) => None,
        })
        .collect();
    if clean_up && !(done.is_empty() && leftovers.is_empty()) {
        let mut all = done.clone();
        all.extend(&leftovers);
        all.sort_unstable();
        all.dedup();
        match after {
            After::Move(folder) => conn.core().move_to(&all, folder),
            _ => conn.core().delete(&all),
        }
        match next(&mut conn)? {
            Event::Moved(_) | Event::Deleted(_) => {
                visit.removed = done.len();
                visit.leftovers = leftovers.len();
            }
            other => return Err(unexpected(&other)),
        }
    }
    conn.core().logout();
    let _ = conn.next_event();
    conn.close();
    Ok(visit)
}

fn pop3_visit(
    mut conn: Connection<pop3::client::Client>,
    settings: &BounceSettings,
    seen: &Seen,
    after: &After,
    record: impl FnOnce(Vec<Received>) -> Result<Vec<MessageKey>>,
) -> Result<Visit> {
    use pop3::client::{CloseReason, Event};
    let next = |conn: &mut Connection<pop3::client::Client>| -> Result<Event> {
        match conn.next_event().map_err(|e| net(settings, e))? {
            Event::Closed(reason) => Err(pop3_closed(settings, reason)),
            Event::Refused { command, text } => Err(refused(settings, &command, &text)),
            ev => Ok(ev),
        }
    };
    next(&mut conn)?; // Ready
    conn.core().uidl();
    let list = match next(&mut conn)? {
        Event::Uidl(list) => list,
        other => return Err(unexpected(&other)),
    };
    let scope = Seen::scope(&settings.host, settings.port, &settings.username, "");
    let mut received = Vec::new();
    let mut numbers = Vec::new();
    let mut leftovers = Vec::new();
    for (msg, uidl) in list {
        let key = MessageKey::Pop3(scope.clone(), uidl);
        if seen.has(&key) {
            if *after == After::Delete {
                leftovers.push(msg);
            }
            continue;
        }
        conn.core().retr(msg);
        match next(&mut conn)? {
            Event::Message { data, .. } => {
                numbers.push((key.clone(), msg));
                received.push(Received { key, data });
            }
            other => return Err(unexpected(&other)),
        }
    }
    let mut visit = Visit {
        fetched: received.len(),
        ..Visit::default()
    };
    let done = record(received)?;
    if *after == After::Delete {
        for (key, msg) in &numbers {
            if done.contains(key) {
                conn.core().dele(*msg);
                next(&mut conn)?;
                visit.removed += 1;
            }
        }
        for msg in leftovers {
            conn.core().dele(msg);
            next(&mut conn)?;
            visit.leftovers += 1;
        }
    }
    conn.core().quit();
    match conn.next_event() {
        Ok(Event::Closed(CloseReason::Quit)) => {}
        Ok(Event::Closed(reason)) if visit.removed + visit.leftovers > 0 => {
            return Err(pop3_closed(settings, reason));
        }
        _ => {}
    }
    conn.close();
    Ok(visit)
}

fn unexpected(ev: &impl std::fmt::Debug) -> Error {
    Error::Software(format!("unexpected mailbox event {ev:?}"))
}
