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
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["imap", scope, validity, uid] => {
                    if let (Ok(v), Ok(u)) = (validity.parse(), uid.parse()) {
                        seen.imap
                            .entry((scope.to_string(), v))
                            .or_default()
                            .insert(u);
                    }
                }
                ["pop3", scope, uidl] => {
                    seen.pop3.insert((scope.to_string(), uidl.to_string()));
                }
                ["mid", mid] => {
                    seen.mids.insert(mid.to_string());
                }
                _ => {}
            }
        }
        Ok(seen)
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
    /// file and syncing it.
    pub fn record(&mut self, keys: &[(MessageKey, Option<String>)]) -> io::Result<()> {
        if keys.is_empty() {
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
        let mut f = crate::outputs::options()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(buf.as_bytes())?;
        f.sync_all()
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
}
