//! An adversarial corpus: a generated CSV of hostile values (line breaks of
//! every kind, NUL, encoded words, paths that leave the job folder, a symlink
//! pointing out of it, image syntax naming local files, template syntax,
//! 1 MB values, address punctuation) fed into every templated key of a job.
//!
//! Each job goes through `mailshot check`, `mailshot run --dry-run --out DIR`
//! and a real `mailshot run` to the built-in capture server (no `smtp:`, so
//! it writes `./outbox`, each message headed by the envelope it arrived
//! with). The three must agree on which rows are rejected (exit 65, nothing
//! written or sent). The rows they accept are then run alone, and every
//! message that comes out is parsed with two independent parsers (the
//! `mail-parser` crate and Python's `email` package) to show: no header the
//! job does not define, no recipient the row does not define (in the headers
//! or the SMTP envelope), and nothing of a secret file planted next to the
//! job folder, decoded or not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{emls, mailshot_in};
use crate::support::cmd::Output;
use crate::support::report::read_report;
use crate::support::{self, python, TestDir};

/// The content of the file outside the job folder that no message may carry.
const SECRET: &str = "TOP-SECRET-7f3a9c-outside-the-job";

/// Hostile values, by a short label. `{SECRET}` is replaced by the absolute
/// path of the secret file.
fn payloads(secret: &Path) -> Vec<(&'static str, String)> {
    let s = secret.display().to_string();
    let mb = "A".repeat(1 << 20);
    vec![
        ("cr", "a\rBcc: cr@evil.test".into()),
        ("lf", "a\nBcc: lf@evil.test".into()),
        ("crlf", "a\r\nBcc: crlf@evil.test".into()),
        ("nul", "a\0b@evil.test".into()),
        ("u2028", "a\u{2028}Bcc: ls@evil.test".into()),
        ("u2029", "a\u{2029}Bcc: ps@evil.test".into()),
        ("u0085", "a\u{85}Bcc: nel@evil.test".into()),
        ("vt-ff", "a\x0bb\x0cBcc: ff@evil.test".into()),
        ("ew-q", "=?utf-8?q?a=0D=0ABcc:_x@evil.test?=".into()),
        ("ew-b", "=?utf-8?b?YQ0KQmNjOiBld2JAZXZpbC50ZXN0?=".into()),
        ("dotdot", "../secret.txt".into()),
        ("dotdot-deep", "img/../../secret.txt".into()),
        ("absolute", s.clone()),
        ("symlink", "link.txt".into()),
        ("symlink-dir", "linkdir/secret.txt".into()),
        ("md-image", "![x](../secret.txt)".into()),
        ("md-image-abs", format!("![x]({s})")),
        ("html-img", "<img src=\"../secret.txt\">".into()),
        ("html-img-abs", format!("<img src=\"{s}\">")),
        (
            "html-img-entity",
            "<img src=\"&#x2e;&#x2e;&#x2f;secret.txt\">".into(),
        ),
        ("jinja-expr", "{{ 7 * 7 }}".into()),
        ("jinja-include", "{% include '../secret.txt' %}".into()),
        ("one-mb", mb),
        ("comma", "x@evil.test, y@evil.test".into()),
        ("angle", "<z@evil.test>".into()),
        ("angle-close", "a@example.test>, <w@evil.test".into()),
        ("semicolon", "a;b@evil.test".into()),
        ("group", "grp: g1@evil.test, g2@evil.test;".into()),
        ("quote", "q\"@evil.test".into()),
        ("quoted-at", "\"a@b\"@evil.test".into()),
        ("at-domain", "a@evil.test".into()),
    ]
}

/// A key of the job that a CSV value reaches.
struct Key {
    /// Its name in the job.
    name: &'static str,
    /// The job's YAML for it (the value is the `v` column).
    yaml: &'static str,
    /// A value every row of this key with an ordinary value must accept.
    ordinary: &'static str,
    /// A header this key adds (beyond the ones every message has).
    header: Option<&'static str>,
}

const KEYS: &[Key] = &[
    Key {
        name: "from display name",
        yaml: "from: \"{{ v }} <sender@example.test>\"",
        ordinary: "Ann",
        header: None,
    },
    Key {
        name: "to",
        yaml: "to: \"{{ v }} <{{ email }}>\"",
        ordinary: "Ann",
        header: None,
    },
    Key {
        name: "to (partial address)",
        yaml: "to: \"{{ v }}@example.test\"",
        ordinary: "ann",
        header: None,
    },
    Key {
        name: "cc",
        yaml: "cc: \"{{ v }} <cc+{{ id }}@example.test>\"",
        ordinary: "Ann",
        header: Some("cc"),
    },
    Key {
        name: "bcc (partial address)",
        yaml: "bcc: \"archive+{{ v }}@example.test\"",
        ordinary: "ann",
        header: None,
    },
    Key {
        name: "reply_to",
        yaml: "reply_to: \"{{ v }} <reply@example.test>\"",
        ordinary: "Ann",
        header: Some("reply-to"),
    },
    Key {
        name: "subject",
        yaml: "subject: \"Hi {{ v }}\"",
        ordinary: "Ann",
        header: None,
    },
    Key {
        name: "headers",
        yaml: "headers:\n  X-Note: \"{{ v }}\"",
        ordinary: "Ann",
        header: Some("x-note"),
    },
    Key {
        name: "list_unsubscribe",
        yaml: "list_unsubscribe: \"https://example.test/u?v={{ v }}\"",
        ordinary: "ann",
        header: Some("list-unsubscribe"),
    },
    Key {
        name: "attachment path",
        yaml: "attachments:\n  - path: \"{{ v }}\"",
        ordinary: "inside.txt",
        header: None,
    },
    Key {
        name: "attachment name",
        yaml: "attachments:\n  - path: inside.txt\n    name: \"{{ v }}\"",
        ordinary: "notes.txt",
        header: None,
    },
    Key {
        name: "html body",
        yaml: "html: page.html",
        ordinary: "Ann",
        header: None,
    },
    Key {
        name: "markdown body",
        yaml: "markdown: letter.md",
        ordinary: "Ann",
        header: None,
    },
];

/// Headers every message may carry, whatever the key (the capture server
/// adds the first two: the envelope it received).
const ALWAYS: &[&str] = &[
    "return-path",
    "x-mailshot-rcpt",
    "date",
    "message-id",
    "mime-version",
    "from",
    "to",
    "subject",
    "content-type",
    "content-transfer-encoding",
];

/// Headers a MIME part may carry.
const PART_HEADERS: &[&str] = &[
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "content-id",
    "content-description",
    "mime-version",
];

/// A job folder `ROOT/job` beside `ROOT/secret.txt`, with a symlink to the
/// secret and one to the folder holding it, an ordinary attachment and an
/// image inside the job.
struct Corpus {
    root: TestDir,
}

impl Corpus {
    fn new() -> Corpus {
        let root = TestDir::new();
        root.write("secret.txt", SECRET);
        root.write("job/inside.txt", "an ordinary attachment\n");
        root.write("job/img/ok.png", b"\x89PNG\r\n\x1a\nok");
        root.write("job/page.html", "<p>Hi {{ v }}</p>\n");
        root.write("job/letter.md", "Hi {{ v }}\n");
        root.write("job/body.txt", "Hello\n");
        std::os::unix::fs::symlink("../secret.txt", root.join("job/link.txt")).unwrap();
        std::os::unix::fs::symlink("..", root.join("job/linkdir")).unwrap();
        Corpus { root }
    }

    fn job_dir(&self) -> PathBuf {
        self.root.join("job")
    }

    fn secret(&self) -> PathBuf {
        self.root.join("secret.txt")
    }

    /// Writes the job for `key` and a CSV of `rows` (id, value).
    fn write(&self, key: &Key, rows: &[(usize, &str)]) {
        let text = if key.yaml.starts_with("html:") || key.yaml.starts_with("markdown:") {
            ""
        } else {
            "text: body.txt\n"
        };
        let from = if key.yaml.starts_with("from:") {
            ""
        } else {
            "from: \"Sender <sender@example.test>\"\n"
        };
        let subject = if key.yaml.starts_with("subject:") {
            ""
        } else {
            "subject: Hello\n"
        };
        self.root.write(
            "job/job.yaml",
            format!(
                "{from}{subject}{text}{}\nrecipients: {{ file: r.csv }}\n",
                key.yaml
            ),
        );
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["email", "id", "v"]).unwrap();
        for (id, v) in rows {
            w.write_record([format!("r{id}@example.test").as_str(), &id.to_string(), v])
                .unwrap();
        }
        self.root.write("job/r.csv", w.into_inner().unwrap());
        // Each phase starts without what an earlier one left.
        for leftover in ["out", "outbox"] {
            let _ = std::fs::remove_dir_all(self.job_dir().join(leftover));
        }
        for leftover in [
            "job.journal",
            "job.journal.seal",
            "job.report.csv",
            "job.report.html",
        ] {
            let _ = std::fs::remove_file(self.job_dir().join(leftover));
        }
    }

    fn mailshot(&self, args: &[&str]) -> Output {
        mailshot_in(&self.job_dir(), args)
    }

    /// The messages the capture server stored: their paths and bytes.
    fn outbox(&self) -> (Vec<PathBuf>, Vec<Vec<u8>>) {
        let dir = self.job_dir().join("outbox");
        if !dir.exists() {
            return (Vec::new(), Vec::new());
        }
        let paths = support::files_with_suffix(&dir, ".eml");
        let msgs = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        (paths, msgs)
    }
}

/// The rows an error output names (`(row N, ...`).
fn rows_named(stderr: &str) -> BTreeSet<u64> {
    let mut rows = BTreeSet::new();
    for (i, _) in stderr.match_indices("row ") {
        let digits: String = stderr[i + 4..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            rows.insert(n);
        }
    }
    rows
}

/// What Python's `email` package reads in each message: JSON, one a line.
const PY_PARSE: &str = r#"
import sys, json, email, email.policy, email.utils
from email.header import decode_header, make_header
secret = sys.argv[1].encode()
for path in sys.argv[2:]:
    raw = open(path, 'rb').read()
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    def addrs(name):
        values = [str(v) for v in msg.get_all(name, [])]
        return [a for _, a in email.utils.getaddresses(values)]
    part_headers, found = [], secret in raw
    for part in msg.walk():
        if part is not msg:
            part_headers += [k.lower() for k in part.keys()]
        payload = part.get_payload(decode=True)
        if payload and secret in payload:
            found = True
    subject = msg.get('subject')
    decoded_subject = str(make_header(decode_header(subject))) if subject is not None else None
    print(json.dumps({
        'headers': [k.lower() for k in msg.keys()],
        'part_headers': part_headers,
        'from': addrs('from'), 'to': addrs('to'), 'cc': addrs('cc'),
        'bcc': addrs('bcc'), 'reply-to': addrs('reply-to'), 'sender': addrs('sender'),
        'subject': decoded_subject,
        'secret': found,
    }))
"#;

/// One message as both parsers see it.
#[derive(Debug)]
struct Seen {
    /// Top-level header names (lower case), by both parsers.
    headers: BTreeSet<String>,
    /// Header names of the MIME parts.
    part_headers: BTreeSet<String>,
    /// Addresses in From, To, Cc, Bcc, Reply-To, Sender (both parsers).
    header_addrs: BTreeMap<String, BTreeSet<String>>,
    /// Python's view of the To addresses (a list: duplicates count).
    py_to: Vec<String>,
    /// The SMTP envelope (captured messages only), as the server received it.
    envelope: Option<Vec<String>>,
    /// The envelope sender (captured messages only).
    return_path: Option<String>,
    /// The decoded subject, by both parsers.
    subjects: Vec<String>,
    /// Whether the secret appears, decoded or raw.
    secret: bool,
    /// The longest line, without its CRLF.
    longest_line: usize,
}

fn seen(paths: &[PathBuf], messages: &[Vec<u8>]) -> Vec<Seen> {
    let mut args: Vec<String> = vec![SECRET.into()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = python(PY_PARSE, &args);
    assert!(ok, "python email: {err}");
    let py: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(py.len(), messages.len());
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    messages
        .iter()
        .zip(&py)
        .map(|(raw, p)| {
            let msg = mail_parser::MessageParser::default()
                .parse(raw)
                .expect("mail-parser parses every message");
            let mut headers: BTreeSet<String> = strings(&p["headers"]).into_iter().collect();
            headers.extend(
                msg.headers()
                    .iter()
                    .map(|h| h.name.as_str().to_ascii_lowercase()),
            );
            let mut part_headers: BTreeSet<String> =
                strings(&p["part_headers"]).into_iter().collect();
            let mut secret = p["secret"].as_bool().unwrap();
            for (i, part) in msg.parts.iter().enumerate() {
                if i > 0 {
                    part_headers.extend(
                        part.headers
                            .iter()
                            .map(|h| h.name.as_str().to_ascii_lowercase()),
                    );
                }
                if contains(part.contents(), SECRET.as_bytes()) {
                    secret = true;
                }
            }
            let mut header_addrs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for name in ["from", "to", "cc", "bcc", "reply-to", "sender"] {
                let set = header_addrs.entry(name.into()).or_default();
                set.extend(
                    strings(&p[name])
                        .into_iter()
                        .map(|a| a.to_ascii_lowercase()),
                );
                let list = match name {
                    "from" => msg.from(),
                    "to" => msg.to(),
                    "cc" => msg.cc(),
                    "bcc" => msg.bcc(),
                    "reply-to" => msg.reply_to(),
                    _ => msg.sender(),
                };
                if let Some(list) = list {
                    for a in list.iter() {
                        set.insert(a.address().unwrap_or("").to_ascii_lowercase());
                    }
                }
                set.retain(|a| !a.is_empty());
            }
            let mut subjects: Vec<String> = p["subject"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect();
            subjects.extend(msg.subject().map(str::to_owned));
            Seen {
                headers,
                part_headers,
                header_addrs,
                py_to: strings(&p["to"]),
                longest_line: raw
                    .split(|&b| b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
                    .max()
                    .unwrap_or(0),
                envelope: envelope(raw),
                return_path: header_line(raw, "Return-Path: ").map(str::to_owned),
                subjects,
                secret,
            }
        })
        .collect()
}

/// `local@example.test` with the local part an atom or one quoted string:
/// whatever a value put into it, the domain is the template's.
fn at_example(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
    domain.eq_ignore_ascii_case("example.test")
        && (quoted || !local.contains(['"', '@', ',', '<', '>', ';', ':', ' ']))
}

/// The envelope recipients the capture server recorded (`X-Mailshot-Rcpt`:
/// the RCPT TO paths joined by `, `; a comma inside a quoted local part
/// does not split).
fn envelope(raw: &[u8]) -> Option<Vec<String>> {
    let line = header_line(raw, "X-Mailshot-Rcpt: ")?;
    let (mut out, mut cur, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    Some(out)
}

/// The rest of the first header line starting with `prefix`.
fn header_line<'a>(raw: &'a [u8], prefix: &str) -> Option<&'a str> {
    raw.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
        .find_map(|l| std::str::from_utf8(l).ok()?.strip_prefix(prefix))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Who row `id` may address under `key`, per header (and the envelope).
fn allowed(key: &Key, id: usize) -> BTreeMap<&'static str, BTreeSet<String>> {
    let email = format!("r{id}@example.test");
    let mut m: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    m.insert("from", ["sender@example.test".to_string()].into());
    m.insert("to", [email.clone()].into());
    m.insert("cc", BTreeSet::new());
    m.insert("bcc", BTreeSet::new());
    m.insert("reply-to", BTreeSet::new());
    m.insert("sender", BTreeSet::new());
    match key.name {
        "cc" => {
            m.insert("cc", [format!("cc+{id}@example.test")].into());
        }
        "reply_to" => {
            m.insert("reply-to", ["reply@example.test".to_string()].into());
        }
        _ => {}
    }
    m
}

/// Checks one accepted message of row `id` under `key`; returns the problems.
fn judge(key: &Key, id: usize, value: &str, s: &Seen) -> Vec<String> {
    let mut problems = Vec::new();
    let mut defined: BTreeSet<&str> = ALWAYS.iter().copied().collect();
    defined.extend(key.header);
    if key.name == "list_unsubscribe" {
        defined.insert("list-unsubscribe-post");
    }
    for h in &s.headers {
        if !defined.contains(h.as_str()) {
            problems.push(format!("header {h:?} the job does not define"));
        }
    }
    for h in &s.part_headers {
        if !PART_HEADERS.contains(&h.as_str()) {
            problems.push(format!("part header {h:?}"));
        }
    }
    let allowed = allowed(key, id);
    let partial_to = key.name == "to (partial address)";
    for (name, got) in &s.header_addrs {
        if partial_to && name == "to" {
            // One address, made from the template: its domain is the template's.
            if s.py_to.len() != 1 || !got.iter().all(|a| at_example(a)) {
                problems.push(format!("to: {got:?} is not one address @example.test"));
            }
            continue;
        }
        for a in got {
            if !allowed[name.as_str()].contains(a) {
                problems.push(format!("{name}: recipient {a:?} the row does not define"));
            }
        }
    }
    if s.header_addrs["bcc"].len() + usize::from(s.headers.contains("bcc")) > 0 {
        problems.push("a Bcc header is shown".into());
    }
    if s.return_path
        .as_ref()
        .is_some_and(|p| p != "<sender@example.test>")
    {
        problems.push(format!("envelope sender {:?}", s.return_path));
    }
    if let Some(envelope) = &s.envelope {
        // To and Cc as the job defines them, then what a partial template made.
        let mut defined: Vec<String> = Vec::new();
        if !partial_to {
            defined.extend(allowed["to"].iter().cloned());
        }
        defined.extend(allowed["cc"].iter().cloned());
        let made: Vec<&String> = envelope
            .iter()
            .filter(|a| !defined.contains(&a.to_ascii_lowercase()))
            .collect();
        let ok = match (key.name, id) {
            // An ordinary value makes the obvious address.
            ("to (partial address)", 1) => made == ["ann@example.test"],
            ("bcc (partial address)", 1) => made == ["archive+ann@example.test"],
            ("to (partial address)", _) => made.len() == 1 && at_example(made[0]),
            ("bcc (partial address)", _) => {
                made.len() == 1 && made[0].starts_with("archive+") && at_example(made[0])
            }
            _ => made.is_empty(),
        };
        if !ok || envelope.len() != defined.len() + made.len() {
            problems.push(format!(
                "envelope {envelope:?}: recipients the row does not define"
            ));
        }
    }
    if s.longest_line > 998 {
        problems.push(format!(
            "a line of {} octets (RFC 5322 allows 998)",
            s.longest_line
        ));
    }
    if s.secret {
        problems.push("the secret file's content is in the message".into());
    }
    if key.name == "subject" {
        // A value is shown as it is: never decoded, never evaluated.
        let want = format!("Hi {value}");
        for got in &s.subjects {
            if value.len() < 1000 && !value.contains(['\r', '\n', '\0']) && got != &want {
                problems.push(format!("subject reads {got:?}, not the value {want:?}"));
            }
        }
    }
    problems
}

/// Runs the corpus through one key in a folder of its own; the problems found.
fn corpus_for_key(key: &Key) -> Vec<String> {
    let corpus = Corpus::new();
    let all = payloads(&corpus.secret());
    let mut failures: Vec<String> = Vec::new();
    // Row 1 is ordinary; then every hostile value.
    let mut rows: Vec<(usize, &str)> = vec![(1, key.ordinary)];
    rows.extend(
        all.iter()
            .enumerate()
            .map(|(i, (_, v))| (i + 2, v.as_str())),
    );
    let label = |id: usize| -> &str {
        match id {
            1 => "ordinary",
            _ => all.get(id.wrapping_sub(2)).map_or("?", |p| p.0),
        }
    };

    // 1. The whole corpus: check, dry-run and run agree on what is rejected.
    corpus.write(key, &rows);
    let check = corpus.mailshot(&["check", "job.yaml"]);
    let dry = corpus.mailshot(&["run", "job.yaml", "--dry-run", "--out", "out"]);
    let dry_written = emls(&corpus.job_dir().join("out")).len();
    let run = corpus.mailshot(&["run", "job.yaml", "--quiet"]);
    let sent = corpus.outbox().1.len();
    let rejected = rows_named(&check.stderr);
    let name = key.name;
    if check.code != if rejected.is_empty() { 0 } else { 65 } {
        failures.push(format!(
            "{name}: check exits {:?}: {}",
            check.code, check.stderr
        ));
    }
    for (what, r) in [("dry-run", &dry), ("run", &run)] {
        if r.code != check.code {
            failures.push(format!(
                "{name}: {what} exits {:?}, check {:?}: {}",
                r.code, check.code, r.stderr
            ));
        }
        if rows_named(&r.stderr) != rejected {
            failures.push(format!(
                "{name}: {what} rejects rows {:?}, check {:?}",
                rows_named(&r.stderr),
                rejected
            ));
        }
    }
    if !rejected.is_empty() && (dry_written > 0 || sent > 0) {
        failures.push(format!(
            "{name}: rows were rejected yet {dry_written} written and {sent} sent"
        ));
    }
    if rejected.contains(&1) {
        failures.push(format!(
            "{name}: the ordinary value {:?} is rejected",
            key.ordinary
        ));
    }

    // 2. What is accepted, alone: every message parsed and judged.
    let accepted: Vec<(usize, &str)> = rows
        .iter()
        .copied()
        .filter(|(id, _)| !rejected.contains(&(*id as u64)))
        .collect();
    corpus.write(key, &accepted);
    let dry = corpus.mailshot(&["run", "job.yaml", "--dry-run", "--out", "out"]);
    let run = corpus.mailshot(&["run", "job.yaml", "--quiet"]);
    for (what, r) in [("dry-run", &dry), ("run", &run)] {
        if r.code != 0 {
            failures.push(format!(
                "{name}: {what} of the accepted rows exits {:?}: {}",
                r.code, r.stderr
            ));
        }
    }
    // What the server refused, by the corpus's labels.
    let report = corpus.job_dir().join("job.report.csv");
    if report.exists() {
        for rec in read_report(&report) {
            if rec.status != "sent" {
                let row = usize::try_from(rec.row).unwrap_or(0);
                let id = accepted.get(row.wrapping_sub(1)).map_or(0, |r| r.0);
                failures.push(format!(
                    "{name} / {} (run): {} {}",
                    label(id),
                    rec.status,
                    rec.reply
                ));
            }
        }
    }
    let by_row = emls(&corpus.job_dir().join("out"));
    let dry_paths: Vec<PathBuf> = support::files_with_suffix(&corpus.job_dir().join("out"), ".eml");
    let dry_msgs: Vec<Vec<u8>> = dry_paths
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let (out_paths, out_msgs) = corpus.outbox();
    if by_row.len() != accepted.len() || out_msgs.len() != accepted.len() {
        failures.push(format!(
            "{name}: {} accepted rows, {} written, {} sent",
            accepted.len(),
            by_row.len(),
            out_msgs.len()
        ));
    }
    for (paths, msgs, what) in [
        (&dry_paths, &dry_msgs, "dry-run"),
        (&out_paths, &out_msgs, "run"),
    ] {
        if msgs.is_empty() {
            continue;
        }
        for (raw, s) in msgs.iter().zip(seen(paths, msgs)) {
            // The Message-ID carries the row number (of the accepted rows' CSV).
            let row_no = message_row(raw);
            let Some(&(id, value)) = accepted.get(row_no - 1) else {
                failures.push(format!("{name}: {what}: a message for no row"));
                continue;
            };
            for p in judge(key, id, value, &s) {
                failures.push(format!("{name} / {} ({what}): {p}", label(id)));
            }
        }
    }
    failures
}

#[test]
fn hostile_values_in_every_key_add_no_header_no_recipient_and_no_local_file() {
    let started = Instant::now();
    // Keys in parallel (a few at a time): each is independent.
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(key) = KEYS.get(i) else { break };
                let found = corpus_for_key(key);
                failures.lock().unwrap().extend(found);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!("corpus took {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.chars().take(400).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the corpus must stay quick: {:?}",
        started.elapsed()
    );
}

/// The CSV row a message belongs to: the number before the `@` in its
/// Message-ID (`<RUN.ROW@domain>`).
fn message_row(raw: &[u8]) -> usize {
    let msg = mail_parser::MessageParser::default().parse(raw).unwrap();
    let id = msg.message_id().expect("a Message-ID");
    let local = id.split('@').next().unwrap();
    local
        .rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row number in Message-ID {id:?}"))
}
