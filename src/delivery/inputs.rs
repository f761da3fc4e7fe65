//! Run: what a run's messages are made of, fingerprinted per input, and
//! whether an earlier run's journal may be resumed with them.
//!
//! The journal's header keeps the fingerprint of the run that created it: a
//! hash of every input by name — the job file, the CSV, every template that
//! was loaded (top-level, extended, included, imported), the bytes of every
//! attachment and inline image, each `--var`, the DKIM key, and the user
//! config's settings that reach the message or its delivery. A rerun whose
//! inputs differ is refused, naming what changed, because resuming would
//! send the rest of the list something else than the part already sent.
//!
//! Inputs that only some rows use (an included template behind an `if`, a
//! per-row attachment) are compared when both runs used them: a file the
//! earlier run never read cannot have changed for the messages it sent.
//! Attachments are hashed per name over the rows in order; when the earlier
//! run covered fewer rows (`--limit`), the same prefix of rows is compared.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::compose::message::{Draft, FileBytes};

/// The fingerprint as the journal stores it: a JSON document naming each
/// input with its hash. A journal only resumes a job whose inputs match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The serialised form inside [`Fingerprint`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stored {
    /// Format of this document.
    v: u32,
    /// The `--limit` the run was validated with (`None`: every row).
    limit: Option<u64>,
    /// Input key → hex hash.
    inputs: BTreeMap<String, String>,
}

const STORED_VERSION: u32 = 2;

/// Hash of one file, streamed (a big CSV is never read whole).
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Per-name hashes of attachments and inline images over the rows, in order.
#[derive(Default)]
struct PartHashes {
    /// Every row seen.
    all: BTreeMap<String, Sha256>,
    /// Only rows up to the earlier run's `--limit`.
    prefix: BTreeMap<String, Sha256>,
}

/// Collects the inputs of one run.
pub struct InputsBuilder {
    dir: PathBuf,
    limit: Option<u64>,
    /// The earlier run's limit, when it covered fewer rows than this one.
    prefix_limit: Option<u64>,
    entries: BTreeMap<String, String>,
    parts: PartHashes,
    /// The last bytes seen at each attachment position and their hash: a
    /// file every row shares (one `Arc`) is hashed once, not once per row.
    last: Vec<(Arc<FileBytes>, [u8; 32])>,
}

/// The inputs of this run, ready to compare and to store.
pub struct Inputs {
    stored: Stored,
    /// Attachment hashes over the rows an earlier, shorter run covered.
    prefix: Option<(u64, BTreeMap<String, String>)>,
}

impl InputsBuilder {
    /// Start for a job in `dir` validated with `limit`; `earlier` is the
    /// fingerprint found in the journal, if any (to hash the same rows).
    pub fn new(dir: &Path, limit: Option<u64>, earlier: Option<&Fingerprint>) -> Self {
        let earlier_limit = earlier
            .and_then(|f| serde_json::from_str::<Stored>(&f.0).ok())
            .and_then(|s| s.limit);
        let prefix_limit = earlier_limit.filter(|k| limit.is_none_or(|l| l > *k));
        InputsBuilder {
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
            limit,
            prefix_limit,
            entries: BTreeMap::new(),
            parts: PartHashes::default(),
            last: Vec::new(),
        }
    }

    /// A path as the user wrote it, relative to the job's folder when inside it.
    fn shown(&self, path: &Path) -> String {
        let full = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        match full.strip_prefix(&self.dir) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => full.display().to_string(),
        }
    }

    /// Hash the file at `path` as input `kind` (`job`, `csv`, `template`, `dkim`).
    pub fn file(&mut self, kind: &str, path: &Path) -> io::Result<()> {
        let hash = hash_file(path)?;
        let key = format!("{kind}:{}", self.shown(path));
        self.entries.insert(key, hash);
        Ok(())
    }

    /// A `--var NAME=VALUE`.
    pub fn var(&mut self, name: &str, value: &str) {
        self.entries
            .insert(format!("var:{name}"), hash_bytes(value.as_bytes()));
    }

    /// A setting of the user config that shapes what is sent.
    pub fn setting(&mut self, name: &str, value: &str) {
        self.entries
            .insert(format!("config:{name}"), hash_bytes(value.as_bytes()));
    }

    /// The attachments and inline images of one rendered row.
    pub fn draft(&mut self, draft: &Draft) {
        for (i, a) in draft.attachments.iter().enumerate() {
            let digest = match self.last.get(i) {
                Some((data, digest)) if Arc::ptr_eq(data, &a.data) => *digest,
                _ => {
                    let digest: [u8; 32] = Sha256::digest(a.data.as_bytes()).into();
                    if i < self.last.len() {
                        self.last[i] = (Arc::clone(&a.data), digest);
                    } else {
                        self.last.push((Arc::clone(&a.data), digest));
                    }
                    digest
                }
            };
            let kind = if a.content_id.is_some() {
                "inline"
            } else {
                "attachment"
            };
            let key = format!("{kind}:{}", a.name);
            let feed = |h: &mut Sha256| {
                h.update(draft.row.to_le_bytes());
                h.update(digest);
            };
            feed(self.parts.all.entry(key.clone()).or_default());
            if self.prefix_limit.is_some_and(|k| draft.row <= k) {
                feed(self.parts.prefix.entry(key).or_default());
            }
        }
    }

    /// The inputs collected.
    pub fn finish(self) -> Inputs {
        let done = |m: BTreeMap<String, Sha256>| -> BTreeMap<String, String> {
            m.into_iter()
                .map(|(k, h)| (k, hex(&h.finalize())))
                .collect()
        };
        let mut inputs = self.entries;
        inputs.extend(done(self.parts.all));
        Inputs {
            stored: Stored {
                v: STORED_VERSION,
                limit: self.limit,
                inputs,
            },
            prefix: self.prefix_limit.map(|k| (k, done(self.parts.prefix))),
        }
    }
}

/// What comparing an earlier run's fingerprint with this run's found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing the earlier run used changed: resume.
    Same,
    /// These inputs changed (described for the user).
    Changed(Vec<String>),
    /// The earlier fingerprint does not say which input is which (an older
    /// mailshot wrote it), and it differs.
    Unknown,
}

impl Inputs {
    /// The fingerprint to store for a fresh journal.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(serde_json::to_string(&self.stored).expect("a map of strings serialises"))
    }

    /// Compare with the fingerprint an earlier run stored.
    pub fn compare(&self, earlier: &Fingerprint) -> Verdict {
        if earlier.0 == self.fingerprint().0 {
            return Verdict::Same;
        }
        let Ok(old) = serde_json::from_str::<Stored>(&earlier.0) else {
            return Verdict::Unknown;
        };
        // Attachment hashes cover rows; compare the same rows or not at all.
        let parts: Option<&BTreeMap<String, String>> = match (&self.prefix, old.limit) {
            (Some((k, prefix)), Some(old_k)) if *k == old_k => Some(prefix),
            _ if old.limit == self.stored.limit => Some(&self.stored.inputs),
            _ => None,
        };
        let mut changed = Vec::new();
        for (key, old_hash) in &old.inputs {
            let is_part = key.starts_with("attachment:") || key.starts_with("inline:");
            let new_hash = if is_part {
                match parts {
                    Some(p) => p.get(key),
                    None => continue,
                }
            } else {
                self.stored.inputs.get(key)
            };
            match new_hash {
                Some(h) if h == old_hash => {}
                Some(_) => changed.push(describe(key, "changed")),
                // A variable that is gone changes every message; a file
                // that is no longer used shows in the file that used it.
                None if key.starts_with("var:") => changed.push(describe(key, "was removed")),
                None => {}
            }
        }
        for key in self.stored.inputs.keys() {
            if key.starts_with("var:") && !old.inputs.contains_key(key) {
                changed.push(describe(key, "was added"));
            }
        }
        if changed.is_empty() {
            Verdict::Same
        } else {
            Verdict::Changed(changed)
        }
    }
}

/// An input key as the user knows it.
fn describe(key: &str, what: &str) -> String {
    let (kind, name) = key.split_once(':').unwrap_or(("", key));
    let noun = match kind {
        "job" => format!("the job file {name}"),
        "csv" => format!("the recipients file {name}"),
        "template" => format!("the template {name}"),
        "attachment" => format!("the attachment \"{name}\""),
        "inline" => format!("the inline image \"{name}\""),
        "var" => format!("--var {name}"),
        "dkim" => format!("the DKIM key {name}"),
        "config" => format!("{name} in the user config"),
        _ => key.to_string(),
    };
    format!("{noun} {what}")
}

/// The fingerprint in the header of the journal at `path`, if there is a
/// journal with a readable header. Anything else is left to the journal
/// itself to judge when it opens the file.
pub fn stored_fingerprint(path: &Path) -> Option<Fingerprint> {
    let file = File::open(path).ok()?;
    let mut line = Vec::new();
    BufReader::new(file).read_until(b'\n', &mut line).ok()?;
    let json = line.split(|&b| b == b'\t').next()?;
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    if value.get("t")?.as_str()? != "header" {
        return None;
    }
    Some(Fingerprint(value.get("fingerprint")?.as_str()?.to_string()))
}

/// The refusal for a journal whose inputs changed: what changed, what the
/// earlier run got done, and the two ways forward.
pub fn refusal(verdict: &Verdict, settled: u64, total: u64, finished: bool) -> String {
    let what = match verdict {
        Verdict::Changed(list) => list.join("; "),
        _ => "the job file, its CSV or a template changed (this journal was written by an \
              older mailshot, which did not record which)"
            .to_string(),
    };
    if finished || settled >= total {
        format!(
            "the run recorded in this journal finished ({settled} of {total} rows settled); \
             since then {what}. Undo the change to resume with the same message, or rerun \
             with --restart to send the changed job to every recipient (those already sent \
             to get it a second time)"
        )
    } else {
        format!(
            "cannot resume: since the run recorded in this journal ({settled} of {total} rows \
             settled), {what}. Resuming would send the rest of the list a different message \
             than the first part got. Undo the change to resume, or rerun with --restart to \
             start over (recipients already sent to would get it again)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::message::Attachment;

    fn draft(row: u64, name: &str, data: &Arc<FileBytes>) -> Draft {
        Draft {
            row,
            attachments: vec![Attachment {
                name: name.into(),
                content_type: "application/pdf".into(),
                data: Arc::clone(data),
                content_id: None,
            }],
            ..Draft::default()
        }
    }

    fn build(
        dir: &Path,
        limit: Option<u64>,
        earlier: Option<&Fingerprint>,
        f: impl FnOnce(&mut InputsBuilder),
    ) -> Inputs {
        let mut b = InputsBuilder::new(dir, limit, earlier);
        f(&mut b);
        b.finish()
    }

    #[test]
    fn a_changed_file_is_named_and_an_unchanged_one_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("footer.html");
        std::fs::write(&a, "one").unwrap();
        let first = build(dir.path(), None, None, |b| b.file("template", &a).unwrap());
        let fp = first.fingerprint();
        let again = build(dir.path(), None, Some(&fp), |b| {
            b.file("template", &a).unwrap()
        });
        assert_eq!(again.compare(&fp), Verdict::Same);
        std::fs::write(&a, "two").unwrap();
        let changed = build(dir.path(), None, Some(&fp), |b| {
            b.file("template", &a).unwrap()
        });
        assert_eq!(
            changed.compare(&fp),
            Verdict::Changed(vec!["the template footer.html changed".into()])
        );
        let mut b = InputsBuilder::new(dir.path(), None, None);
        assert!(b.file("csv", &dir.path().join("missing")).is_err());
    }

    #[test]
    fn vars_count_when_added_removed_or_changed() {
        let dir = tempfile::tempdir().unwrap();
        let fp = build(dir.path(), None, None, |b| b.var("a", "1")).fingerprint();
        let cases = [
            (vec![("a", "1")], Verdict::Same),
            (
                vec![("a", "2")],
                Verdict::Changed(vec!["--var a changed".into()]),
            ),
            (vec![], Verdict::Changed(vec!["--var a was removed".into()])),
            (
                vec![("a", "1"), ("b", "1")],
                Verdict::Changed(vec!["--var b was added".into()]),
            ),
        ];
        for (vars, want) in cases {
            let now = build(dir.path(), None, Some(&fp), |b| {
                for (k, v) in &vars {
                    b.var(k, v);
                }
            });
            assert_eq!(now.compare(&fp), want, "{vars:?}");
        }
    }

    #[test]
    fn attachments_are_compared_over_the_rows_both_runs_covered() {
        let dir = tempfile::tempdir().unwrap();
        let one = Arc::new(FileBytes::from(b"one".to_vec()));
        let two = Arc::new(FileBytes::from(b"two".to_vec()));
        // The earlier run covered rows 1-2 (--limit 2).
        let fp = build(dir.path(), Some(2), None, |b| {
            b.draft(&draft(1, "a.pdf", &one));
            b.draft(&draft(2, "a.pdf", &one));
        })
        .fingerprint();
        // Every row now: row 3's attachment differs, but the earlier run never sent it.
        let all = |third: &Arc<FileBytes>, first: &Arc<FileBytes>| {
            build(dir.path(), None, Some(&fp), |b| {
                b.draft(&draft(1, "a.pdf", first));
                b.draft(&draft(2, "a.pdf", &one));
                b.draft(&draft(3, "a.pdf", third));
            })
        };
        assert_eq!(all(&two, &one).compare(&fp), Verdict::Same);
        assert_eq!(
            all(&one, &two).compare(&fp),
            Verdict::Changed(vec!["the attachment \"a.pdf\" changed".into()])
        );
    }

    #[test]
    fn an_old_plain_digest_is_unknown_and_the_refusal_fits_what_happened() {
        let dir = tempfile::tempdir().unwrap();
        let now = build(dir.path(), None, None, |b| b.var("a", "1"));
        assert_eq!(now.compare(&Fingerprint("ab".repeat(32))), Verdict::Unknown);
        let v = Verdict::Changed(vec!["--var a changed".into()]);
        let done = refusal(&v, 10, 10, false);
        assert!(
            done.contains("finished") && !done.contains("interrupted"),
            "{done}"
        );
        let part = refusal(&v, 3, 10, false);
        assert!(
            part.contains("3 of 10") && part.contains("--restart"),
            "{part}"
        );
    }

    #[test]
    fn the_header_fingerprint_is_read_from_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        assert_eq!(stored_fingerprint(&path), None);
        std::fs::write(
            &path,
            "{\"t\":\"header\",\"version\":1,\"run_id\":\"r\",\"fingerprint\":\"{\\\"v\\\":2}\",\"created\":0}\t0\n",
        )
        .unwrap();
        assert_eq!(
            stored_fingerprint(&path),
            Some(Fingerprint("{\"v\":2}".into()))
        );
    }
}
