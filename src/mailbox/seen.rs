//! What `mailshot bounces` has already read (`JOB.bounces.state`, beside
//! the journal): IMAP UIDs per mailbox and UIDVALIDITY (RFC 3501 §2.3.1.1),
//! POP3 UIDL values (RFC 1939 §7), and the Message-IDs of the messages
//! read, so that no message is counted twice, across reruns and across the
//! two protocols. One entry per line, appended and synced before the
//! message changes anything else.
//!
//! Lines: `imap SCOPE VALIDITY UID`, `pop3 SCOPE UIDL`, `mid MESSAGE-ID`,
//! where SCOPE names the server, user and folder. A line that does not
//! parse is ignored (an interrupted write leaves at most one).
//!
//! What one visit learnt is a batch: `begin LEN` (the length of
//! `JOB.bounces.csv` before the batch's rows) is written and synced first,
//! then the rows and suppressions, then the batch's keys and `end` in one
//! write. Keys count only once their `end` is on disk. A batch without its
//! `end` was cut short; [`Seen::unfinished`] names the length to take
//! `JOB.bounces.csv` back to, so those messages are read and counted once
//! more, and once only. `abort` closes such a batch.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The set of messages already read.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    path: PathBuf,
    imap: HashMap<(String, u32), HashSet<u32>>,
    pop3: HashSet<(String, String)>,
    mids: HashSet<String>,
    unfinished: Option<u64>,
}

/// One message's identity in its mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKey {
    /// An IMAP message: scope, UIDVALIDITY, UID.
    Imap(String, u32, u32),
    /// A POP3 message: scope, UIDL.
    Pop3(String, String),
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl Seen {
    /// Reads `path`; a missing file is an empty set.
    pub fn load(path: &Path) -> io::Result<Seen> {
        let mut seen = Seen {
            path: path.to_path_buf(),
            ..Seen::default()
        };
        let text = match std::fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(seen),
            Err(e) => return Err(e),
        };
        // The lines of the open batch, applied at its `end`.
        let mut batch: Option<Vec<&str>> = None;
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["begin", len] => {
                    seen.unfinished = len.parse().ok();
                    batch = Some(Vec::new());
                }
                ["end"] => {
                    for l in batch.take().unwrap_or_default() {
                        seen.apply(l);
                    }
                    seen.unfinished = None;
                }
                ["abort"] => {
                    batch = None;
                    seen.unfinished = None;
                }
                _ => match batch.as_mut() {
                    Some(lines) => lines.push(line),
                    None => seen.apply(line),
                },
            }
        }
        Ok(seen)
    }

    fn apply(&mut self, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["imap", scope, validity, uid] => {
                if let (Ok(v), Ok(u)) = (validity.parse(), uid.parse()) {
                    self.imap
                        .entry((scope.to_string(), v))
                        .or_default()
                        .insert(u);
                }
            }
            ["pop3", scope, uidl] => {
                self.pop3.insert((scope.to_string(), uidl.to_string()));
            }
            ["mid", mid] => {
                self.mids.insert(mid.to_string());
            }
            _ => {}
        }
    }

    /// A batch was begun and never ended: the length `JOB.bounces.csv` had
    /// before it.
    pub fn unfinished(&self) -> Option<u64> {
        self.unfinished
    }

    /// Opens a batch: `csv_len` is the length of `JOB.bounces.csv` before
    /// its rows are appended. Synced before it returns.
    pub fn begin(&mut self, csv_len: u64) -> io::Result<()> {
        self.append(&format!("begin {csv_len}\n"))?;
        self.unfinished = Some(csv_len);
        Ok(())
    }

    /// Closes an unfinished batch without counting its keys (once what it
    /// wrote has been taken back).
    pub fn abort(&mut self) -> io::Result<()> {
        if self.unfinished.is_none() {
            return Ok(());
        }
        self.append("abort\n")?;
        self.unfinished = None;
        Ok(())
    }

    fn append(&self, text: &str) -> io::Result<()> {
        let mut f = crate::outputs::options()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name of a mailbox for these records.
    pub fn scope(host: &str, port: u16, user: &str, folder: &str) -> String {
        clean(&format!("{user}@{host}:{port}/{folder}"))
    }

    /// The highest UID read under this UIDVALIDITY (0 if none).
    pub fn max_uid(&self, scope: &str, validity: u32) -> u32 {
        self.imap
            .get(&(scope.to_string(), validity))
            .and_then(|s| s.iter().max().copied())
            .unwrap_or(0)
    }

    /// The message was read before.
    pub fn has(&self, key: &MessageKey) -> bool {
        match key {
            MessageKey::Imap(scope, v, uid) => self
                .imap
                .get(&(scope.clone(), *v))
                .is_some_and(|s| s.contains(uid)),
            MessageKey::Pop3(scope, uidl) => self.pop3.contains(&(scope.clone(), clean(uidl))),
        }
    }

    /// A message with this Message-ID was read before (through any mailbox).
    pub fn has_message_id(&self, mid: &str) -> bool {
        self.mids.contains(&clean(mid))
    }

    /// Records messages as read (and their Message-IDs), appending to the
    /// file and syncing it; this ends the open batch, if any.
    pub fn record(&mut self, keys: &[(MessageKey, Option<String>)]) -> io::Result<()> {
        if keys.is_empty() && self.unfinished.is_none() {
            return Ok(());
        }
        let mut buf = String::new();
        for (key, mid) in keys {
            match key {
                MessageKey::Imap(scope, v, uid) => {
                    buf.push_str(&format!("imap {scope} {v} {uid}\n"));
                    self.imap
                        .entry((scope.clone(), *v))
                        .or_default()
                        .insert(*uid);
                }
                MessageKey::Pop3(scope, uidl) => {
                    buf.push_str(&format!("pop3 {scope} {}\n", clean(uidl)));
                    self.pop3.insert((scope.clone(), clean(uidl)));
                }
            }
            if let Some(mid) = mid.as_deref().map(clean).filter(|m| !m.is_empty()) {
                buf.push_str(&format!("mid {mid}\n"));
                self.mids.insert(mid);
            }
        }
        buf.push_str("end\n");
        self.append(&buf)?;
        self.unfinished = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_recorded_is_known_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.bounces.state");
        let mut seen = Seen::load(&path).unwrap();
        let scope = Seen::scope("h", 993, "u", "INBOX");
        let k1 = MessageKey::Imap(scope.clone(), 7, 3);
        let k2 = MessageKey::Pop3(scope.clone(), "00000001abc".into());
        assert!(!seen.has(&k1));
        seen.record(&[(k1.clone(), Some("<a@b>".into())), (k2.clone(), None)])
            .unwrap();
        let again = Seen::load(&path).unwrap();
        assert!(again.has(&k1) && again.has(&k2));
        assert!(again.has_message_id("<a@b>"));
        assert_eq!(again.max_uid(&scope, 7), 3);
        // Another UIDVALIDITY: the UIDs mean other messages.
        assert!(!again.has(&MessageKey::Imap(scope.clone(), 8, 3)));
        assert_eq!(again.max_uid(&scope, 8), 0);
    }

    #[test]
    fn keys_of_a_batch_without_its_end_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.bounces.state");
        let scope = Seen::scope("h", 995, "u", "");
        let k1 = MessageKey::Pop3(scope.clone(), "one".into());
        let k2 = MessageKey::Pop3(scope.clone(), "two".into());
        let mut seen = Seen::load(&path).unwrap();
        seen.begin(0).unwrap();
        seen.record(&[(k1.clone(), Some("<1@x>".into()))]).unwrap();
        seen.begin(120).unwrap();
        // Cut short: the keys are on disk but their `end` is not.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("pop3 {scope} two\nmid <2@x>\n"));
        std::fs::write(&path, &text).unwrap();
        let mut again = Seen::load(&path).unwrap();
        assert!(again.has(&k1) && again.has_message_id("<1@x>"));
        assert!(!again.has(&k2) && !again.has_message_id("<2@x>"));
        assert_eq!(again.unfinished(), Some(120));
        again.abort().unwrap();
        let after = Seen::load(&path).unwrap();
        assert_eq!(after.unfinished(), None);
        assert!(!after.has(&k2));
    }
}
