//! What a run learns for the suppression list from the SMTP session itself:
//! a recipient refused for good because the address does not exist (RFC 3463
//! `5.1.1` bad mailbox, `5.1.2` bad domain, `5.1.3` bad syntax, `5.1.6`
//! moved, `5.1.10` null MX, `5.2.1` disabled) is appended to the job's first
//! `suppress` file, synced before the rest of the transaction is recorded.
//!
//! Only the enhanced code decides: a bare `550` also means "spam" or "policy"
//! at many servers, and a sender refused (`5.1.7`, `5.1.8`, `5.1.0 Sender
//! address rejected`) says nothing about the recipient.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::smtp::reply::Reply;

/// Whether `reply` to RCPT (or to the data) says the address can never receive mail.
pub fn address_is_dead(reply: &Reply) -> bool {
    let Some(e) = reply.enhanced else {
        return false;
    };
    reply.is_permanent()
        && e.class == 5
        && matches!((e.subject, e.detail), (1, 1 | 2 | 3 | 6 | 10) | (2, 1))
}

/// Appends dead addresses to the first `suppress` file, one writer at a time.
#[derive(Debug)]
pub struct Learner {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Learner {
    /// A learner writing to `path` (created when first needed).
    pub fn new(path: PathBuf) -> Learner {
        Learner {
            path,
            lock: Mutex::new(()),
        }
    }

    /// The suppression file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append every recipient whose reply says it is dead, and sync; returns
    /// how many were added.
    pub fn learn(&self, rcpts: &[(&str, &Reply)]) -> io::Result<usize> {
        let entries: Vec<(String, String)> = rcpts
            .iter()
            .filter(|(_, reply)| address_is_dead(reply))
            .map(|(rcpt, reply)| (rcpt.to_string(), reply.text()))
            .collect();
        if entries.is_empty() {
            return Ok(0);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let added = mail_parser::DateTime::from_timestamp(now).to_rfc3339();
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        crate::suppression::append(&self.path, &entries, &added)?;
        Ok(entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `"550 5.1.1 text"` as the reply parser would give it.
    fn reply(line: &str) -> Reply {
        let mut words = line.splitn(3, ' ');
        let code = words.next().unwrap().parse().unwrap();
        let (second, rest) = (words.next().unwrap(), words.next().unwrap_or(""));
        let parts: Vec<&str> = second.split('.').collect();
        let mut r = Reply::new(code, line[4..].to_string());
        if let [class, subject, detail] = parts[..] {
            if let (Ok(class), Ok(subject), Ok(detail)) =
                (class.parse(), subject.parse(), detail.parse())
            {
                r.enhanced = Some(crate::smtp::reply::EnhancedCode {
                    class,
                    subject,
                    detail,
                });
                r.lines = vec![rest.to_string()];
            }
        }
        r
    }

    #[test]
    fn only_codes_that_name_a_dead_recipient_count() {
        for dead in [
            "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown",
            "550 5.1.2 bad destination system",
            "553 5.1.3 bad address syntax",
            "551 5.1.6 mailbox has moved",
            "556 5.1.10 null MX",
            "550 5.2.1 mailbox disabled",
        ] {
            assert!(address_is_dead(&reply(dead)), "{dead}");
        }
        for alive in [
            "550 spam detected",
            "550 5.7.1 message refused as spam",
            "550 5.1.0 <me@example.com>: Sender address rejected",
            "553 5.1.8 sender domain does not exist",
            "552 5.2.2 mailbox full",
            "450 4.1.1 try again later",
            "250 2.1.5 ok",
        ] {
            assert!(!address_is_dead(&reply(alive)), "{alive}");
        }
    }

    #[test]
    fn dead_recipients_are_appended_and_the_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let learner = Learner::new(dir.path().join("suppressed.csv"));
        let gone = reply("550 5.1.1 no such user");
        let full = reply("552 5.2.2 mailbox full");
        let n = learner
            .learn(&[("gone@example.com", &gone), ("full@example.com", &full)])
            .unwrap();
        assert_eq!(n, 1);
        let list = crate::suppression::Suppression::load(&[learner.path().to_path_buf()]).unwrap();
        assert!(list.contains("gone@example.com"));
        assert!(!list.contains("full@example.com"));
    }
}
